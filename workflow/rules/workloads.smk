rule workload_energy:
    input:
        measurements=aggregate_for("table_workload_energy"),
        traces=expand(f"{SUMMARIES}/traces/{{trace}}.json", trace=TRACES),
        architectures=expand(
            f"{SUMMARIES}/models/{{model}}.json", model=ESTIMATES["models"]
        ),
    output:
        bins=report(
            output_path("table_workload_energy_bins"),
            caption="../report/table_workload_energy_bins.rst",
            category=REPORT_CATEGORIES["table_workload_energy_bins"],
        ),
        totals=report(
            output_path("table_workload_energy"),
            caption="../report/table_workload_energy.rst",
            category=REPORT_CATEGORIES["table_workload_energy"],
        ),
    log:
        f"logs/tables/{HARDWARE}/workload_energy.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        engines=workload_engines,
        architectures=lambda wildcards, input: " ".join(
            f"--architecture {name}={path}"
            for name, path in zip(ESTIMATES["models"], input.architectures)
        ),
        gpu=IDEAL_GPU,
        missing=ESTIMATES["missing_bins"],
        input_bins=INPUT_BINS,
        output_bins=OUTPUT_BINS,
    shell:
        "{params.cli} workload-energy --measurements {input.measurements} "
        "--traces {input.traces} --input-bins {params.input_bins} "
        "--output-bins {params.output_bins} --engines {params.engines} "
        "{params.architectures} --gpu {params.gpu} "
        "--missing-bins {params.missing} --bins-out {output.bins} "
        "--totals-out {output.totals} > {log} 2>&1"


rule workload_table:
    input:
        output_path("table_workload_energy"),
    output:
        report(
            output_path("table4"),
            caption="../report/table4.rst",
            category=REPORT_CATEGORIES["table4"],
        ),
    log:
        f"logs/tables/{HARDWARE}/table4.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
    shell:
        "{params.cli} workload-table --totals {input} --out {output} > {log} 2>&1"


rule workload_figure:
    input:
        output_path("table_workload_energy_bins"),
    output:
        figure=report(
            output_path("fig1"),
            caption="../report/fig1.rst",
            category=REPORT_CATEGORIES["fig1"],
        ),
        caption=caption_path("fig1"),
    log:
        f"logs/figures/{HARDWARE}/fig1.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        engines=workload_engines,
        dpi=FIG_DPI,
        provenance=caption_args_of("fig1"),
    shell:
        "({params.cli} workload-figure --bins {input} --engines {params.engines} "
        "--out {output.figure} --dpi {params.dpi} && {params.cli} caption --rows {input} "
        "{params.provenance} --out {output.caption}) > {log} 2>&1"
