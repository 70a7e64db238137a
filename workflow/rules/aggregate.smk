rule aggregate:
    input:
        measurement_tables,
    output:
        parquet="results/aggregate/{hardware}/measurements.parquet",
        csv="results/aggregate/{hardware}/measurements.csv",
    log:
        "logs/aggregate/{hardware}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
    shell:
        "{params.cli} aggregate {input} --hardware {wildcards.hardware} --out {output.parquet} "
        "--csv {output.csv} > {log} 2>&1"


rule claims_table:
    input:
        measurements=aggregate_for("claims"),
        workload=claims_workload_bins,
    output:
        csv=report(
            output_path("claims"),
            caption="../report/claims.rst",
            category=REPORT_CATEGORIES["claims"],
        ),
        markdown=f"results/claims/{HARDWARE}.md",
        rst=f"results/claims/{HARDWARE}.rst",
    log:
        f"logs/claims/{HARDWARE}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        hardware=HARDWARE,
        workload=claims_workload_arg,
    shell:
        "{params.cli} claims --measurements {input.measurements} {params.workload} "
        "--hardware {params.hardware} --out {output.csv} --markdown {output.markdown} "
        "--rst {output.rst} "
        "> {log} 2>&1"
