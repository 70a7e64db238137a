"""Turn the validated configuration into measurement jobs.

A job is one engine: (model, engine options, GPU count) with every point that any enabled
experiment family asks of it, so that a model is loaded once and points shared by several
families are measured once.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from llm_energy.backends import BACKENDS
from llm_energy.errors import ConfigError
from llm_energy.families import families
from llm_energy.inputs.prompts import TASK_STREAMS
from llm_energy.measure.job import (
    JOB_ONLY_FIELDS,
    EngineSpec,
    JobPlan,
    MeterSpec,
    ModelSpec,
    PointSpec,
    ProtocolSpec,
)


def group_id(model: str, engine: str) -> str:
    return f"{model}__{engine}"


def resolve_meter(name: str, device: str) -> str:
    """'auto' is NVML's counter on a GPU and CodeCarbon's (estimating) tracker on the CPU."""
    if name != "auto":
        return name
    return "nvml" if device.startswith("cuda") else "codecarbon"


def _check_engine(config: dict[str, Any], family: str, engine: str) -> None:
    """Engines that no family can measure fail at planning, before any job starts."""
    e = config["engines"][engine]
    if e["backend"] not in BACKENDS:
        raise ConfigError(
            f"config: experiments.{family}.engines names '{engine}', whose backend "
            f"'{e['backend']}' this release does not provide (known: {', '.join(BACKENDS)})"
        )
    if e["backend"] == "vllm" and e.get("torch_compile"):
        raise ConfigError(f"config: engines.{engine}: torch_compile is a transformers option")


def trace_inputs(plan: JobPlan) -> list[str]:
    """Traces that the job reads: those its request-stream points draw lengths from, and
    those its families read to choose their points (``JobPlan.selections``)."""
    streams = {p.stream.trace for p in plan.points if p.stream is not None}
    for options in plan.selections.values():
        streams |= set(options.get("traces", ()))
    return sorted(streams - set(TASK_STREAMS))


def task_inputs(plan: JobPlan) -> list[str]:
    """Classical tasks whose examples' lengths the request-stream points of a job serve."""
    streams = {p.stream.trace for p in plan.points if p.stream is not None}
    return sorted(streams & set(TASK_STREAMS))


def pg19_token_budget(jobs: dict[str, JobPlan]) -> tuple[int, int]:
    """How many PG-19 tokens the jobs' pg19 points cut their batches from: as many as gives
    every row of each batch text of its own, and the fewest that still gives every row a
    window of its own start ((0, 0) when no point uses PG-19)."""
    points = [p for job in jobs.values() for p in job.points if p.prompts == "pg19"]
    most = max((p.batch_size * p.input_tokens for p in points), default=0)
    least = max((p.input_tokens + p.batch_size - 1 for p in points), default=0)
    return most, least


def _family_protocol(config: dict[str, Any], exp: dict[str, Any]) -> ProtocolSpec | None:
    """The family's own measurement windows over the job's protocol, or None for the job's.
    The order of the job's trials and its control point's window (:data:`JOB_ONLY_FIELDS`)
    are its own protocol's alone: a point's protocol keeps those fields at their defaults."""
    if not exp.get("protocol"):
        return None
    fields = dataclasses.fields(ProtocolSpec)
    job_only = {f.name: f.default for f in fields if f.name in JOB_ONLY_FIELDS}
    return ProtocolSpec(**{**config["protocol"], **exp["protocol"], **job_only})


def _add(bucket: dict[tuple, PointSpec], point: PointSpec) -> None:
    """Add a point to a job's points; a point that another family already asked for is
    measured once and serves both (its tags are joined)."""
    old = bucket.get(point.key)
    if old is not None:
        tags = tuple(sorted(set(old.experiments) | set(point.experiments)))
        point = dataclasses.replace(point, experiments=tags)
    bucket[point.key] = point


def plan_study(config: dict[str, Any]) -> dict[str, JobPlan]:
    """All measurement jobs of a validated config, keyed by group id. Reads no file: what
    depends on data (the bins a trace occupies, say) is chosen by the job when it starts."""
    config = copy.deepcopy(config)
    points: dict[tuple[str, str], dict[tuple, PointSpec]] = {}
    options: dict[str, dict[str, Any]] = {}
    for name, family in families().items():
        exp = config["experiments"].get(name, {})
        if not exp.get("enabled", False) or not family.measures:
            continue
        protocol = _family_protocol(config, exp)
        jobs = family.jobs(exp, config)
        for _, engine in jobs:
            _check_engine(config, name, engine)
        family_points = [
            dataclasses.replace(p, protocol=protocol) for p in family.points(exp, config)
        ]
        for job in jobs:
            bucket = points.setdefault(job, {})
            for p in family.job_points(exp, config, job, family_points):
                _add(bucket, p)
        options[name] = family.job_options(exp, config)
    return {
        group_id(model, engine): _job(config, model, engine, tuple(bucket.values()), options)
        for (model, engine), bucket in sorted(points.items())
    }


def _job(
    config: dict[str, Any],
    model: str,
    engine: str,
    points: tuple[PointSpec, ...],
    options: dict[str, dict[str, Any]],
) -> JobPlan:
    """One job's plan; each family's job options (searched and timed tags, run-time
    selections) apply to the jobs that hold points of its tags."""
    tags = {t for p in points for t in p.experiments}
    mine = [o for name, o in options.items() if tags & set(families()[name].tags)]
    m = config["models"][model]
    e = dict(config["engines"][engine])
    engine_spec = EngineSpec(name=engine, **e)
    meter = config["meter"]
    return JobPlan(
        group=group_id(model, engine),
        hardware=config["hardware"],
        device=config["device"],
        dtype=config["dtype"],
        model=ModelSpec(name=model, **m),
        engine=engine_spec,
        draft_model=ModelSpec(name=e["draft"], **config["models"][e["draft"]])
        if e.get("draft")
        else None,
        meter=MeterSpec(
            primary=resolve_meter(meter["primary"], config["device"]),
            cross_check=tuple(meter["cross_check"]),
            codecarbon=dict(meter["codecarbon"]),
        ),
        protocol=ProtocolSpec(**config["protocol"]),
        points=tuple(sorted(points, key=lambda p: p.key)),
        mirror={"models": config["mirror"]["models"]},
        largest_feasible_only=tuple(t for o in mine for t in o.get("largest_feasible_only", ())),
        ffn_time_share=tuple(t for o in mine for t in o.get("ffn_time_share", ())),
        selections={
            name: {**o["selections"][name]} for o in mine for name in o.get("selections", {})
        },
        # Engines with CUDA graphs launch a decoding step as one graph, so a neighbour on the
        # host's other cores does not stretch their windows; eager engines measure alone.
        host_shared=config["side_by_side"] == "cuda_graphs" and engine_spec.launches_graphs,
        server_options={k: v for o in mine for k, v in o.get("server_options", {}).items()},
    )
