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
