import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

# The package does the work. It is importable from the checkout itself, so that jobs run the
# code of this commit in any environment (a venv, a conda env of envs/, a cluster node).
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
# Inside a conda env of envs/ the env's interpreter runs the jobs; otherwise Snakemake's own.
USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if USES_CONDA else sys.executable


def cli_command(python):
    return f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} {python} -m llm_energy"


CLI = cli_command(PYTHON)

from llm_energy.config import load_schema, validate
from llm_energy.plan import pg19_tokens, plan_study, task_inputs, trace_inputs
from llm_energy.workload_energy import ideal_gpu_key

config = validate(
    config, load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
)
# A build from the shipped measurements measures nothing, so its plan needs no trace.
JOBS = plan_study(config, read_traces=not config["shipped_measurements"])
HARDWARE = config["hardware"]
# PG-19 tokens that the jobs' pg19 prompts are cut from: wanted, and needed at least.
PG19_TOKENS, PG19_MIN_TOKENS = pg19_tokens(JOBS)


wildcard_constraints:
    hardware=r"[A-Za-z0-9._-]+",
    group=r"[A-Za-z0-9._-]+",


def job_plan_json(wildcards):
    return JOBS[wildcards.group].to_json()


def shipped_tables(hardware):
    """The job tables shipped with the pipeline for one hardware label."""
    return sorted(
        Path(workflow.basedir, "resources/measurements", hardware).glob("*.parquet")
    )


def measurement_tables(wildcards=None):
    """The job tables to aggregate: measured by this run, or shipped with the pipeline."""
    if config["shipped_measurements"]:
        shipped = shipped_tables(HARDWARE)
        if not shipped:
            raise WorkflowError(
                f"shipped_measurements: no tables in resources/measurements/{HARDWARE}/"
            )
        return [str(p) for p in shipped]
    return expand(
        "results/measurements/{hardware}/{group}.parquet",
        hardware=HARDWARE,
        group=sorted(JOBS),
    )


def seed_command(wildcards):
    """With resume_from_shipped, the command that seeds the job's journal from the shipped
    tables before it measures (an empty string otherwise)."""
    if not config["resume_from_shipped"]:
        return ""
    tables = shipped_tables(wildcards.hardware)
    if not tables:
        return ""
    return (
        f"{CLI} seed-journal --plan results/plans/{wildcards.hardware}/{wildcards.group}.json "
        f"--journal results/journal/{wildcards.hardware}/{wildcards.group} "
        + " ".join(shlex.quote(str(t)) for t in tables)
        + f" > logs/measure/{wildcards.hardware}/{wildcards.group}.seed.log 2>&1 && "
    )


def backend_of(wildcards):
    return JOBS[wildcards.group].engine.backend


def measure_conda_env(wildcards):
    """Each backend has its own environment: vLLM pins its own torch."""
    return str(Path(workflow.basedir) / "envs" / f"{backend_of(wildcards)}.yaml")


def measure_cli(wildcards):
    """The CLI under the interpreter of the job's backend (config `interpreters`)."""
    if USES_CONDA:
        return CLI
    return cli_command(config["interpreters"][backend_of(wildcards)] or sys.executable)


def measure_traces(wildcards):
    """Prepared traces that the job's request-stream points draw their lengths from."""
    return [
        f"results/data/traces/{t}.parquet" for t in trace_inputs(JOBS[wildcards.group])
    ]


def measure_task_lengths(wildcards):
    """Request lengths of the classical tasks that the job's task points serve."""
    return [
        f"results/data/task_lengths/{t}.parquet"
        for t in task_inputs(JOBS[wildcards.group])
    ]


def measure_pg19(wildcards):
    """The PG-19 token ids, when the job has points with PG-19 prompts."""
    if any(p.prompts == "pg19" for p in JOBS[wildcards.group].points):
        return ["results/data/pg19/llama3_tokens.parquet"]
    return []


def gpus_for(wildcards):
    plan = JOBS[wildcards.group]
    return plan.engine.tensor_parallel_size if plan.device.startswith("cuda") else 0


def shipped_tags():
    """(backend, experiment tag) of the shipped rows of this hardware label, or None when
    the pipeline measures: with shipped_measurements, only what the rows can draw is built.
    """
    if not config["shipped_measurements"]:
        return None
    from llm_energy.aggregate import shipped_experiments

    return shipped_experiments(measurement_tables(), HARDWARE)


SHIPPED = shipped_tags()


def _tagged(backend, test):
    """Whether a job of ``backend`` (any when None) plans a point with a tag passing ``test``,
    and, when figures are drawn from shipped rows, such a row is shipped."""
    planned = any(
        (backend is None or job.engine.backend == backend)
        and any(test(t) for p in job.points for t in p.experiments)
        for job in JOBS.values()
    )
    if not planned or SHIPPED is None:
        return planned
    return any((backend is None or b == backend) and test(t) for b, t in SHIPPED)


def has_experiment(tag):
    return _tagged(None, lambda t: t == tag)


def has_task_points(backend=None):
    return _tagged(backend, lambda t: t == "classical_tasks")


def has_backend_sweep(backend):
    return _tagged(backend, lambda t: "_sweep" in t)


FIG_FORMAT = config["figures"]["format"]
FIG_DPI = config["figures"]["dpi"]


def final_targets():
    targets = []
    if config["experiments"]["workload_traces"]["enabled"]:
        targets += [
            "results/tables/traces/trace_lengths.csv",
            "results/tables/traces/trace_bins.csv",
        ]
        if "azure_conversation" in config["experiments"]["workload_traces"]["traces"]:
            targets.append(
                f"results/figures/traces/fig7_azure_conversation_cdf.{FIG_FORMAT}"
            )
    if config["experiments"]["classical_tasks"]["enabled"]:
        targets.append("results/tables/tasks/table3_token_stats.csv")
    if JOBS:
        targets.append(f"results/aggregate/{HARDWARE}/measurements.parquet")
    if has_experiment("input_sweep") or has_experiment("output_sweep"):
        targets.append(f"results/tables/{HARDWARE}/controlled_sweeps.csv")
        for backend, figs in (
            ("transformers", ["fig10_controlled_sweeps_pytorch"]),
            (
                "vllm",
                [
                    "fig2_controlled_sweeps_vllm",
                    "fig11_controlled_sweeps_vllm_all_lengths",
                ],
            ),
        ):
            if has_backend_sweep(backend):
                targets += [
                    f"results/figures/{HARDWARE}/{f}.{FIG_FORMAT}" for f in figs
                ]
    for tags, table, stem in (
        (("decoding", "speculative"), "decoding", "fig3_decoding_strategies"),
        (("architectures",), "architectures", "fig4_architectures"),
    ):
        if any(has_experiment(t) for t in tags):
            targets += [
                f"results/figures/{HARDWARE}/{stem}.{FIG_FORMAT}",
                f"results/tables/{HARDWARE}/{table}.csv",
            ]
    if has_experiment("engine_optimisations"):
        targets += [
            f"results/figures/{HARDWARE}/fig5_engine_optimisations.{FIG_FORMAT}",
            f"results/tables/{HARDWARE}/engine_optimisations.csv",
        ]
    if has_experiment("tensor_parallel"):
        targets += [
            f"results/figures/{HARDWARE}/fig6_tensor_parallel.{FIG_FORMAT}",
            f"results/tables/{HARDWARE}/tensor_parallel.csv",
        ]
    if has_experiment("trace_replay"):
        targets.append(f"results/tables/{HARDWARE}/trace_replay.csv")
    if has_experiment("online_serving"):
        targets += [
            f"results/figures/{HARDWARE}/fig9_online_serving.{FIG_FORMAT}",
            f"results/tables/{HARDWARE}/online_serving.csv",
        ]
    if has_task_points():
        targets += [
            f"results/figures/{HARDWARE}/fig8_classical_tasks.{FIG_FORMAT}",
            f"results/tables/{HARDWARE}/classical_tasks.csv",
        ]
        if has_task_points("vllm"):
            targets += [
                f"results/figures/{HARDWARE}/fig12_classical_tasks_vllm.{FIG_FORMAT}",
                f"results/tables/{HARDWARE}/classical_tasks_vllm.csv",
            ]
    if has_experiment("workload_estimates"):
        targets += [
            f"results/tables/{HARDWARE}/table4_energy_over_ideal.csv",
            f"results/figures/{HARDWARE}/fig1_workload_energy.{FIG_FORMAT}",
        ]
    return targets


# Small aggregates of the raw inputs (traces, model configs, task texts) that the trace
# tables, Fig 7, Table 3 and the workload estimate read: see the summary stage in data.smk.
SUMMARIES = "results/data/summaries"


def summary_targets():
    """The summaries this configuration reads: of its traces, of the models of its workload
    estimate and Table 3 (what resources/summaries/ ships for config/h100.yaml)."""
    experiments = config["experiments"]
    targets = []
    if (
        experiments["workload_traces"]["enabled"]
        or experiments["workload_estimates"]["enabled"]
    ):
        traces = experiments["workload_traces"]["traces"]
        targets += [f"{SUMMARIES}/traces/{t}.json" for t in traces]
    if experiments["workload_estimates"]["enabled"]:
        models = experiments["workload_estimates"]["models"]
        targets += [f"{SUMMARIES}/models/{m}.json" for m in models]
    if experiments["classical_tasks"]["enabled"]:
        targets.append(f"{SUMMARIES}/tasks/table3_token_stats.csv")
    return targets


def shipped_summary(wildcards):
    """The shipped copy of a summary, once it is known to fit this configuration: a trace's
    bin counts for the configured bins, a model's hub id, Table 3's tasks, samples and seed.
    """
    from llm_energy.errors import LlmEnergyError
    from llm_energy.summaries import (
        REBUILD,
        SHIPPED_DIR,
        check_architecture_summary,
        check_task_table,
        check_trace_summary,
    )

    rel = f"{SHIPPED_DIR}/{wildcards.kind}/{wildcards.file}"
    path = Path(workflow.basedir, rel)
    if not path.is_file():
        raise WorkflowError(f"shipped_measurements: {rel} is not shipped; {REBUILD}")
    stem = Path(wildcards.file).stem
    traces = config["experiments"]["workload_traces"]
    tasks = config["experiments"]["classical_tasks"]
    try:
        if wildcards.kind == "traces":
            check_trace_summary(path, stem, traces["input_bins"], traces["output_bins"])
        elif wildcards.kind == "models":
            if stem not in config["models"]:
                raise WorkflowError(
                    f"{rel}: no model '{stem}' in the configuration's models"
                )
            check_architecture_summary(path, config["models"][stem]["hub_id"])
        else:
            seed = config["protocol"]["seed"]
            check_task_table(path, tasks["tasks"], tasks["samples"], seed)
    except LlmEnergyError as exc:
        raise WorkflowError(f"shipped_measurements: {exc}") from None
    return str(path)


def model_config_input(wildcards):
    """The model's local config.json when the configuration names one."""
    model = config["models"][wildcards.model]
    return [model["config"]] if model["config"] else []


def model_config_arg(wildcards):
    """--config PATH when the configuration names a local config.json for the model."""
    model = config["models"][wildcards.model]
    return f"--config {shlex.quote(model['config'])}" if model["config"] else ""


# The offline workload energy model (Table 4, Fig 1).
ESTIMATES = config["experiments"]["workload_estimates"]
IDEAL_GPU = ideal_gpu_key(config) if ESTIMATES["enabled"] else ""


def workload_engines(wildcards=None):
    if not ESTIMATES["enabled"]:
        raise WorkflowError(
            "Table 4 and Fig 1 need experiments.workload_estimates.enabled: true"
        )
    return " ".join(shlex.quote(e) for e in ESTIMATES["engines"])
