# Every figure and table drawn from the measurements table: one rule for figures, one for
# tables; what each draws, its file, category and caption come from its entry in the
# families' outputs (llm_energy/families/) and workflow/report/{name}.rst.


wildcard_constraints:
    figure="|".join(DRAWN["figure"]) or "(?!)",
    table="|".join(t.replace(".", r"\.") for t in DRAWN["table"]) or "(?!)",


rule figure:
    input:
        drawn_rows,
    output:
        figure=report(
            f"results/figures/{{hardware}}/{{figure}}.{FIG_FORMAT}",
            caption="../report/output.rst",
            category=output_category,
            labels=output_labels,
        ),
        caption="results/captions/{hardware}/{figure}.rst",
    log:
        "logs/figures/{hardware}/{figure}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name=drawn_name,
        caption=output_caption,
        provenance=caption_args,
    shell:
        "({params.cli} figure {params.name} --measurements {input} --out {output.figure} "
        "--dpi {params.dpi} && {params.cli} caption --rows {input} --output {params.name} "
        "{params.provenance} --out {output.caption}) > {log} 2>&1"


rule table:
    input:
        drawn_rows,
    output:
        table=report(
            "results/tables/{hardware}/{table}",
            caption="../report/output.rst",
            category=output_category,
            labels=output_labels,
        ),
        caption="results/captions/{hardware}/{table}.rst",
    log:
        "logs/tables/{hardware}/{table}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        name=drawn_name,
        caption=output_caption,
        provenance=caption_args,
    shell:
        "({params.cli} table {params.name} --measurements {input} --out {output.table} && "
        "{params.cli} caption --rows {input} --output {params.name} {params.provenance} "
        "--out {output.caption}) > {log} 2>&1"


# Every figure and table is a target by its name: the paper's (fig1 ... fig12, table1 ...
# table5) and the pipeline's own (table_decoding, ...).
for name in OUTPUTS:

    rule:
        name:
            name
        input:
            output_input(name),
        localrule: True
