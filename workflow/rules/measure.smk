rule plan_job:
    output:
        "results/plans/{hardware}/{group}.json",
    params:
        plan=job_plan,
    localrule: True
    run:
        Path(output[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(output[0]).write_text(params.plan.to_json())


rule measure:
    input:
        "results/plans/{hardware}/{group}.json",
    output:
        "results/measurements/{hardware}/{group}.parquet",
    log:
        "logs/measure/{hardware}/{group}.log",
    params:
        journal="results/journal/{hardware}/{group}",
    resources:
        gpu=gpus_for,
        runtime=240,
        mem_mb=32000,
    threads: 2
    conda:
        "../../envs/transformers.yaml"
    shell:
        "{CLI} measure --plan {input} --out {output} --journal {params.journal} "
        "> {log} 2>&1"
