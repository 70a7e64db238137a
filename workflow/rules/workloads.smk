rule workload_energy:
    input:
        measurements=aggregate_for("workload_energy"),
        traces=expand(f"{SUMMARIES}/traces/{{trace}}.json", trace=TRACES),
        architectures=expand(
            f"{SUMMARIES}/models/{{model}}.json", model=ESTIMATES["models"]
        ),
    output:
        bins=report(
            f"results/tables/{HARDWARE}/workload_energy_bins.csv",
            caption="../report/workload_energy_bins.rst",
            category="Workload energy",
        ),
        totals=report(
            f"results/tables/{HARDWARE}/workload_energy.csv",
            caption="../report/workload_energy.rst",
            category="Workload energy",
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


rule table4:
    input:
        f"results/tables/{HARDWARE}/workload_energy.csv",
    output:
        report(
            f"results/tables/{HARDWARE}/table4_energy_over_ideal.csv",
            caption="../report/table4.rst",
            category="Workload energy",
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


rule fig1:
    input:
        f"results/tables/{HARDWARE}/workload_energy_bins.csv",
    output:
        report(
            f"results/figures/{HARDWARE}/fig1_workload_energy.{FIG_FORMAT}",
            caption="../report/fig1.rst",
            category="Workload energy",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig1.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        engines=workload_engines,
        dpi=FIG_DPI,
    shell:
        "{params.cli} workload-figure --bins {input} --engines {params.engines} "
        "--out {output} --dpi {params.dpi} > {log} 2>&1"
