import functools
import shlex
import time
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

from llm_energy.analysis.aggregate import (
    configs_enabling,
    configs_shipping,
    shipped_experiments,
)
from llm_energy.analysis.workload_estimate import ideal_gpu_key
from llm_energy.backends import environment
from llm_energy.config import validate
from llm_energy.inputs.model_configs import missing_configs
from llm_energy.families import families, outputs, report_categories
from llm_energy.measure.plan import (
    pg19_token_budget,
    plan_study,
    task_inputs,
    trace_inputs,
)

config = validate(config)
# Planning reads no file: what depends on data is chosen by the jobs when they start.
JOBS = plan_study(config)
# A model's local config.json is checked before any job starts.
if not config["shipped_measurements"]:
    for problem in missing_configs(JOBS.values()):
        raise WorkflowError(f"config: {problem}")
HARDWARE = config["hardware"]
# PG-19 tokens that the jobs' pg19 prompts are cut from: wanted, and needed at least.
PG19_TOKENS, PG19_MIN_TOKENS = pg19_token_budget(JOBS)


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


def time_model_option(wildcards):
    """Where the hardware ships job tables, the option that has the job fit the plan's estimate
    of each point's first trial to them, for its deadline (an empty string otherwise).
    """
    folder = Path(workflow.basedir, "resources/measurements", wildcards.hardware)
    if not shipped_tables(wildcards.hardware):
        return ""
    return f"--time-model-rows {shlex.quote(str(folder))} "


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
        f"--wide-rows {config['resume_wide_rows']} "
        + " ".join(shlex.quote(str(t)) for t in tables)
        + f" > logs/measure/{wildcards.hardware}/{wildcards.group}.seed.log 2>&1 && "
    )


def environment_of(wildcards):
    """The environment of the job's backend (a vLLM server's jobs run in vLLM's)."""
    return environment(JOBS[wildcards.group].engine.backend)


def measure_conda_env(wildcards):
    """Each backend has its own environment: vLLM pins its own torch."""
    return str(Path(workflow.basedir) / "envs" / f"{environment_of(wildcards)}.yaml")


def measure_cli(wildcards):
    """The CLI under the interpreter of the job's backend (config `interpreters`)."""
    if USES_CONDA:
        return CLI
    return cli_command(
        config["interpreters"][environment_of(wildcards)] or sys.executable
    )


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


def attempt_number(wildcards, attempt):
    """Which attempt at the job this is (retries): the measure command stops a retry at once
    when the attempt before failed on its input."""
    return attempt


def gpus_for(wildcards):
    plan = JOBS[wildcards.group]
    return plan.engine.tensor_parallel_size if plan.device.startswith("cuda") else 0


def shipped_tags():
    """(backend, experiment tag) of the shipped rows of this hardware label, or None when
    the pipeline measures: with shipped_measurements, only what the rows can draw is built.
    """
    if not config["shipped_measurements"]:
        return None
    return shipped_experiments(measurement_tables(), HARDWARE)


SHIPPED = shipped_tags()


# (backend, experiment tag) of every point this configuration plans.
PLANNED = {
    (job.engine.backend, t)
    for job in JOBS.values()
    for p in job.points
    for t in p.experiments
}


# Every figure and table, by target name (the families' outputs: llm_energy/families/), and
# the report category of each, in the paper's order.
OUTPUTS = outputs()
REPORT_CATEGORIES = report_categories()
FIG_FORMAT = config["figures"]["format"]
FIG_DPI = config["figures"]["dpi"]
AGGREGATE = f"results/aggregate/{HARDWARE}/measurements.parquet"


def output_path(name):
    """The file that output ``name`` is written to."""
    o = OUTPUTS[name]
    if o.draw is None:
        path = o.file.format(hardware=HARDWARE)
    elif o.kind == "figure":
        path = f"results/figures/{HARDWARE}/{o.file}"
    else:
        path = f"results/tables/{HARDWARE}/{o.file}"
    return f"{path}.{FIG_FORMAT}" if o.kind == "figure" else path


def _family_of(name):
    return next(f for f in families().values() if OUTPUTS[name] in f.outputs)


def available(name):
    """Whether this configuration makes output ``name``: for an output drawn from measured
    rows, whether it plans such rows and, when figures are drawn from shipped rows, such rows
    are shipped; for one made from other inputs, whether its family is enabled."""
    o = OUTPUTS[name]
    if o.source is not None:
        return Path(workflow.basedir, o.source.format(hardware=HARDWARE)).is_file()
    if o.rows is None:
        family = _family_of(name)
        exp = config["experiments"][family.name]
        return exp["enabled"] and family.makes(name, exp)
    return o.rows.found_in(PLANNED) and (SHIPPED is None or o.rows.found_in(SHIPPED))


def unavailable(name):
    """One message saying why this configuration does not make output ``name``, and which
    configuration's shipped tables do."""
    o = OUTPUTS[name]
    base = Path(workflow.basedir)
    if o.source is not None:
        return f"{name} is drawn from {o.source.format(hardware=HARDWARE)}, which is not shipped"
    if o.rows is None:
        family = _family_of(name).name
        others = configs_enabling(
            family, base / "config", base / "resources/measurements", HARDWARE
        )
        hint = (
            f"; {', '.join(others)} {'does' if len(others) == 1 else 'do'}: snakemake {name} "
            f"--configfile {others[0]} "
            "--config shipped_measurements=true"
            if others
            else ""
        )
        return (
            f"{name} is made by experiments.{family}, which this configuration (hardware "
            f"{HARDWARE}) does not enable, or whose settings here leave {name} out{hint}"
        )
    if o.rows.found_in(PLANNED):
        where = f"resources/measurements/{HARDWARE}/ ships none"
    else:
        where = f"this configuration (hardware {HARDWARE}) measures none"
    others = configs_shipping(
        o.rows, base / "config", base / "resources/measurements", HARDWARE
    )
    hint = ""
    if others:
        hint = (
            f"; the shipped tables of {', '.join(others)} have them: snakemake {name} "
            f"--configfile {others[0]} --config shipped_measurements=true"
        )
    return f"{name} draws {o.rows}, and {where}{hint}"


def output_input(name):
    """The input function of the target of output ``name``: the output's file, or one
    error saying why this configuration does not make it."""

    def target(wildcards):
        if not available(name):
            raise WorkflowError(unavailable(name))
        return output_path(name)

    return target


def aggregate_for(name):
    """The measurements table that output ``name`` draws, or one error saying why this
    configuration has none of its rows."""

    def measurements(wildcards):
        if not available(name):
            raise WorkflowError(unavailable(name))
        source = OUTPUTS[name].source
        return source.format(hardware=HARDWARE) if source else AGGREGATE

    return measurements


DRAWN = {
    kind: {
        OUTPUTS[n].file: n
        for n in OUTPUTS
        if OUTPUTS[n].draw is not None and OUTPUTS[n].kind == kind
    }
    for kind in ("figure", "table")
}


def drawn_name(wildcards):
    """The target name of the drawn figure or table whose file the wildcards name."""
    if "figure" in wildcards.keys():
        return DRAWN["figure"][wildcards.figure]
    return DRAWN["table"][wildcards.table]


def drawn_rows(wildcards):
    return aggregate_for(drawn_name(wildcards))(wildcards)


def output_caption(wildcards):
    """The output's caption (``workflow/report/{name}.rst``), for the report."""
    name = drawn_name(wildcards)
    path = Path(workflow.basedir, "workflow/report", f"{name}.rst")
    return path.read_text() if path.is_file() else OUTPUTS[name].title


def output_category(wildcards):
    return REPORT_CATEGORIES[drawn_name(wildcards)]


def provenance_args(name):
    """What the caption command needs to name the rows of output ``name``: the hardware
    label, the configuration, and the job tables that the measurements table joins (or the
    output's own source)."""
    source = OUTPUTS[name].source
    tables = [source.format(hardware=HARDWARE)] if source else measurement_tables()
    configs = " ".join(shlex.quote(str(c)) for c in workflow.configfiles)
    return (
        f"--hardware {HARDWARE} --configfiles {configs} "
        + ("--shipped " if config["shipped_measurements"] else "")
        + "--tables "
        + " ".join(shlex.quote(t) for t in tables)
    )


def caption_args(wildcards):
    return provenance_args(drawn_name(wildcards))


def caption_args_of(name):
    """The caption command's arguments for output ``name``, made by a rule of its own."""

    def args(wildcards):
        return provenance_args(name)

    return args


def caption_path(name):
    """Where the caption command writes the rows' paragraph of output ``name``'s caption."""
    return f"results/captions/{HARDWARE}/{name}.rst"


def output_labels(wildcards):
    o = OUTPUTS[drawn_name(wildcards)]
    return {"output": o.name, "what": o.title, "hardware": wildcards.hardware}


def final_targets():
    """Every output this configuration makes, and the measurements table."""
    targets = [output_path(n) for n in OUTPUTS if available(n)]
    if JOBS:
        targets.append(AGGREGATE)
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
    from llm_energy.analysis.summaries import (
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


def claims_workload_bins(wildcards):
    """Claim 8 reads the workload estimate's bins where the configuration makes them."""
    if available("table_workload_energy_bins"):
        return [output_path("table_workload_energy_bins")]
    return []


def claims_workload_arg(wildcards, input):
    return f"--workload-bins {input.workload}" if input.workload else ""


# When this run started: the measurement jobs whose benchmark files are newer ran in it.
RUN_STARTED = time.time()


# Computed once, before the run: the estimate printed before it, the time limit each job asks
# for, and what the lines after the run compare the jobs with.
@functools.cache
def _estimate():
    """Each job's GPU time, fitted to the shipped rows, for the trials its journal (and, with
    resume_from_shipped, the shipped rows it is seeded with) leaves to measure, at most
    LLM_ENERGY_TRIALS_AT_MOST a point where the environment sets it; a request
    stream with no measured time per request by its requests' lengths where an earlier run
    prepared them."""
    from llm_energy.analysis.gpu_hours import plan_estimate
    from llm_energy.inputs.prompts import TraceLengths
    from llm_energy.measure.resume import read_tables, trials_left
    from llm_energy.measure.trials import trials_at_most

    base = Path(workflow.basedir, "resources/measurements")
    tables = {d.name: sorted(d.glob("*.parquet")) for d in base.iterdir() if d.is_dir()}
    seeds = (
        read_tables(shipped_tables(HARDWARE)) if config["resume_from_shipped"] else []
    )
    left = {
        group: trials_left(
            plan,
            Path(f"results/journal/{HARDWARE}/{group}"),
            seeds,
            config["resume_wide_rows"] == "measure_again",
        )
        for group, plan in JOBS.items()
    }
    lengths = TraceLengths(
        Path("results/data/traces"), Path("results/data/task_lengths")
    )
    # LLM_ENERGY_TRIALS_AT_MOST, which every job reads too, caps each point's trials.
    return plan_estimate(JOBS, tables, HARDWARE, left, lengths, trials_at_most())


def measure_runtime(wildcards, attempt):
    """The job's time limit in minutes (Slurm's ``runtime``): its expected time from the
    estimate printed before the run, with a margin, and more at each attempt
    (:func:`~llm_energy.analysis.gpu_hours.runtime_minutes`); a profile's
    ``set-resources`` of ``measure:runtime`` asks for a fixed limit instead."""
    from llm_energy.analysis.gpu_hours import runtime_minutes

    table = _estimate().set_index("group")
    if wildcards.group not in table.index:
        return runtime_minutes(float("nan"), 1, attempt)
    job = table.loc[wildcards.group]
    return runtime_minutes(
        float(job["expected_gpu_hours"]),
        int(job["gpus"]),
        attempt,
        float(job["longest_trial_min"]),
    )


def print_estimate():
    """Before measuring: each job's GPU time, estimated from the shipped rows."""
    from llm_energy.analysis.gpu_hours import describe

    if not JOBS or config["shipped_measurements"]:
        return
    print(
        f"{len(JOBS)} measurement jobs planned for hardware {HARDWARE}:\n"
        + describe(_estimate()),
        file=sys.stderr,
    )


def print_against_estimate():
    """After a run: the wall time of each measurement job that ran (its benchmark file)
    beside the estimate printed before it."""
    import pandas as pd

    from llm_energy.analysis.gpu_hours import against_actual, describe_against_actual

    if not JOBS or config["shipped_measurements"]:
        return
    actual = {}
    for group in JOBS:
        tsv = Path(f"results/benchmarks/measure/{HARDWARE}/{group}.tsv")
        if tsv.exists() and tsv.stat().st_mtime >= RUN_STARTED:
            actual[group] = float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
    if actual:
        print(
            describe_against_actual(against_actual(_estimate(), actual)),
            file=sys.stderr,
        )
