TRACE_CONFIG = config["experiments"]["workload_traces"]
TRACES = TRACE_CONFIG["traces"]
INPUT_BINS = " ".join(str(b) for b in TRACE_CONFIG["input_bins"])
OUTPUT_BINS = " ".join(str(b) for b in TRACE_CONFIG["output_bins"])


wildcard_constraints:
    trace=r"burstgpt|azure_conversation|azure_code",


rule prepare_trace:
    output:
        "results/data/traces/{trace}.parquet",
    log:
        "logs/data/traces/{trace}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        mirror=config["mirror"]["data"] or "",
        cache="results/data/downloads",
    shell:
        "{params.cli} prepare-trace {wildcards.trace} --out {output} --cache {params.cache} "
        "--mirror '{params.mirror}' > {log} 2>&1"


rule trace_tables:
    input:
        expand(f"{SUMMARIES}/traces/{{trace}}.json", trace=TRACES),
    output:
        table1=report(
            output_path("table1"),
            caption="../report/table1.rst",
            category=REPORT_CATEGORIES["table1"],
        ),
        table2=report(
            output_path("table2"),
            caption="../report/table2.rst",
            category=REPORT_CATEGORIES["table2"],
        ),
        lengths=report(
            output_path("table_trace_lengths"),
            caption="../report/table_trace_lengths.rst",
            category=REPORT_CATEGORIES["table_trace_lengths"],
        ),
        bins=report(
            output_path("table_trace_bins"),
            caption="../report/table_trace_bins.rst",
            category=REPORT_CATEGORIES["table_trace_bins"],
        ),
    log:
        "logs/tables/traces/trace_tables.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        input_bins=INPUT_BINS,
        output_bins=OUTPUT_BINS,
    shell:
        "{params.cli} trace-tables {input} --lengths {output.lengths} --bins {output.bins} "
        "--table1 {output.table1} --table2 {output.table2} "
        "--input-bins {params.input_bins} --output-bins {params.output_bins} > {log} 2>&1"


rule trace_figure:
    input:
        f"{SUMMARIES}/traces/azure_conversation.json",
    output:
        report(
            output_path("fig7"),
            caption="../report/fig7.rst",
            category=REPORT_CATEGORIES["fig7"],
        ),
    log:
        "logs/figures/traces/fig7.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        input_bins=INPUT_BINS,
        output_bins=OUTPUT_BINS,
        dpi=FIG_DPI,
    shell:
        "{params.cli} trace-figure --trace {input} --out {output} --dpi {params.dpi} "
        "--input-bins {params.input_bins} --output-bins {params.output_bins} > {log} 2>&1"


TASK_CONFIG = config["experiments"]["classical_tasks"]
# Output length of examples whose reference target the data source lacks (else an error).
TASK_FALLBACK = TASK_CONFIG["fallback_output_tokens"]
TASK_FALLBACK_ARG = f"--fallback-output-tokens {TASK_FALLBACK}" if TASK_FALLBACK else ""


wildcard_constraints:
    task=r"classification|translation|summarization|generation",


rule prepare_task:
    output:
        "results/data/tasks/{task}.parquet",
    log:
        "logs/data/tasks/{task}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        mirror=config["mirror"]["data"] or "",
        samples=TASK_CONFIG["samples"],
        seed=config["protocol"]["seed"],
    shell:
        "{params.cli} prepare-task {wildcards.task} --out {output} --samples {params.samples} "
        "--seed {params.seed} --mirror '{params.mirror}' > {log} 2>&1"


# Table 3 is its own summary: the table of the task summary, which the summary stage below
# computes from the texts or copies from resources/summaries/.
rule task_table:
    input:
        f"{SUMMARIES}/tasks/table3_token_stats.csv",
    output:
        report(
            output_path("table3"),
            caption="../report/table3.rst",
            category=REPORT_CATEGORIES["table3"],
        ),
    log:
        "logs/tables/tasks/table3.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
    shell:
        "{params.cli} table3 {input} --out {output} > {log} 2>&1"


rule task_lengths:
    input:
        "results/data/tasks/{task}.parquet",
    output:
        "results/data/task_lengths/{task}.parquet",
    log:
        "logs/data/task_lengths/{task}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        mirror=config["mirror"]["data"] or "",
        fallback=TASK_FALLBACK_ARG,
    shell:
        "{params.cli} task-lengths {input} --out {output} --mirror '{params.mirror}' "
        "{params.fallback} > {log} 2>&1"


rule prepare_pg19:
    output:
        "results/data/pg19/llama3_tokens.parquet",
    log:
        "logs/data/pg19/llama3_tokens.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        mirror=config["mirror"]["data"] or "",
        tokens=PG19_TOKENS,
        min_tokens=PG19_MIN_TOKENS,
    shell:
        "{params.cli} prepare-pg19 --out {output} --tokens {params.tokens} "
        "--min-tokens {params.min_tokens} --mirror '{params.mirror}' > {log} 2>&1"


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    kind=r"traces|models|tasks",
    file=r"[A-Za-z0-9._-]+",


# Every summary the configuration reads (to ship them: see resources/summaries/README.md).
rule summaries:
    input:
        summary_targets(),


# The summary stage: small aggregates of the raw inputs (traces, model configs, task texts),
# all that the trace tables, Fig 7, Table 3 and the workload estimate read of them. Computed
# from the raw inputs, or, with shipped_measurements, copied from resources/summaries/ once
# shipped_summary (common.smk) has checked that they fit this configuration.
if config["shipped_measurements"]:

    rule shipped_summary:
        input:
            shipped_summary,
        output:
            f"{SUMMARIES}/{{kind}}/{{file}}",
        log:
            "logs/data/summaries/{kind}/{file}.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        shell:
            "cp -v {input} {output} > {log} 2>&1"

else:

    rule trace_summary:
        input:
            "results/data/traces/{trace}.parquet",
        output:
            f"{SUMMARIES}/traces/{{trace}}.json",
        log:
            "logs/data/summaries/traces/{trace}.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            cli=CLI,
            input_bins=INPUT_BINS,
            output_bins=OUTPUT_BINS,
        shell:
            "{params.cli} trace-summary {input} --out {output} "
            "--input-bins {params.input_bins} --output-bins {params.output_bins} > {log} 2>&1"

    rule model_summary:
        input:
            model_config_input,
        output:
            f"{SUMMARIES}/models/{{model}}.json",
        log:
            "logs/data/summaries/models/{model}.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            cli=CLI,
            hub_id=lambda wildcards: config["models"][wildcards.model]["hub_id"],
            config=model_config_arg,
            mirror=config["mirror"]["models"] or "",
        shell:
            "{params.cli} model-summary {wildcards.model} --hub-id {params.hub_id} "
            "{params.config} --models-mirror '{params.mirror}' --out {output} > {log} 2>&1"

    rule task_summary:
        input:
            expand("results/data/tasks/{task}.parquet", task=TASK_CONFIG["tasks"]),
        output:
            f"{SUMMARIES}/tasks/table3_token_stats.csv",
        log:
            "logs/data/summaries/tasks/table3_token_stats.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            cli=CLI,
            mirror=config["mirror"]["data"] or "",
        shell:
            "{params.cli} task-table {input} --out {output} --mirror '{params.mirror}' "
            "> {log} 2>&1"
