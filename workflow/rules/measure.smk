rule plan_job:
    output:
        "results/plans/{hardware}/{group}.json",
    log:
        "logs/plans/{hardware}/{group}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        plan=job_plan_json,
    script:
        "../scripts/write_plan.py"


rule measure:
    input:
        "results/plans/{hardware}/{group}.json",
    output:
        "results/measurements/{hardware}/{group}.parquet",
    log:
        "logs/measure/{hardware}/{group}.log",
    conda:
        "../../envs/transformers.yaml"
    threads: 2
    resources:
        gpu=gpus_for,
        runtime=240,
        mem_mb=32000,
    params:
        cli=CLI,
        journal="results/journal/{hardware}/{group}",
    shell:
        "{params.cli} measure --plan {input} --out {output} --journal {params.journal} "
        "> {log} 2>&1"
