rule fig10:
    input:
        f"results/aggregate/{HARDWARE}/measurements.parquet",
    output:
        report(
            f"results/figures/{HARDWARE}/fig10_controlled_sweeps_pytorch.{FIG_FORMAT}",
            caption="../report/fig10.rst",
            category="Controlled sweeps",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig10.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        dpi=FIG_DPI,
    shell:
        "{params.cli} figure fig10 --measurements {input} --out {output} --dpi {params.dpi} > {log} 2>&1"


rule table_controlled_sweeps:
    input:
        f"results/aggregate/{HARDWARE}/measurements.parquet",
    output:
        report(
            f"results/tables/{HARDWARE}/controlled_sweeps.csv",
            caption="../report/table_controlled_sweeps.rst",
            category="Controlled sweeps",
        ),
    log:
        f"logs/tables/{HARDWARE}/controlled_sweeps.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
    shell:
        "{params.cli} table controlled_sweeps --measurements {input} --out {output} > {log} 2>&1"
