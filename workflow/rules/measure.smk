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
        plan="results/plans/{hardware}/{group}.json",
        traces=measure_traces,
        tasks=measure_task_lengths,
        pg19=measure_pg19,
    output:
        "results/measurements/{hardware}/{group}.parquet",
    log:
        "logs/measure/{hardware}/{group}.log",
    benchmark:
        "results/benchmarks/measure/{hardware}/{group}.tsv"
    conda:
        measure_conda_env
    threads: 2
    resources:
        gpu=gpus_for,
        attempt=attempt_number,
        runtime=measure_runtime,
        mem_mb=32000,
    params:
        cli=measure_cli,
        journal="results/journal/{hardware}/{group}",
        seed=seed_command,
        time_model=time_model_option,
    # Snakemake clears a job's log before it runs the job again: the journal keeps a copy of
    # each attempt's log, whatever its outcome, and the job exits with the attempt's status.
    shell:
        "{params.seed}"
        "{params.cli} measure --plan {input.plan} --out {output} --journal {params.journal} "
        "--traces results/data/traces --task-lengths results/data/task_lengths "
        "--pg19 results/data/pg19/llama3_tokens.parquet --attempt {resources.attempt} "
        "{params.time_model}"
        "> {log} 2>&1 || status=$?; "
        "if [ -f {log} ]; then mkdir -p {params.journal} && "
        "cp {log} {params.journal}/attempt-{resources.attempt}.log; fi; "
        "exit ${{status:-0}}"
