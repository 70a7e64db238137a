"""Turn the validated configuration into measurement jobs.

A job is one engine: (model, engine options, GPU count) with every point that any enabled
experiment family asks of it, so that a model is loaded once and points shared by several
families are measured once.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.inputs.prompts import TASK_STREAMS
from llm_energy.measure.job import (
    DecodingSpec,
    EngineSpec,
    JobPlan,
    MeterSpec,
    ModelSpec,
    PointSpec,
    ProtocolSpec,
    StreamSpec,
)

# Families that the measurement jobs of this release cover, and the tag their rows carry.
SWEEP_FAMILIES = (
    "controlled_sweeps",
    "decoding_strategies",
    "architectures",
    "engine_optimisations",
    "online_serving",
    "workload_estimates",
    "trace_replay",
    "classical_tasks",
)
# Families whose rules prepare and analyse data without measurement jobs of their own.
DATA_FAMILIES = ("workload_traces",)
GREEDY = DecodingSpec()


def group_id(model: str, engine: str) -> str:
    return f"{model}__{engine}"


def _points(
    family: str, exp: dict[str, Any], config: dict[str, Any], read_traces: bool = True
) -> Iterator[PointSpec]:
    batch_sizes = exp["batch_sizes"]
    if family == "controlled_sweeps":
        for tag, sweep, varied, fixed in (
            ("input_sweep", exp["input_sweep"], "input_tokens", "output_tokens"),
            ("output_sweep", exp["output_sweep"], "output_tokens", "input_tokens"),
        ):
            for b in batch_sizes:
                for f in sweep[fixed]:
                    for v in sweep[varied]:
                        shape = {varied: v, fixed: f}
                        yield PointSpec(
                            b,
                            shape["input_tokens"],
                            shape["output_tokens"],
                            GREEDY,
                            (tag,),
                            prompts=exp["prompts"],
                        )
    elif family == "online_serving":
        for b in batch_sizes:
            for serving in ("offline", "online"):
                stream = StreamSpec(exp["trace"], exp["requests"], serving)
                yield PointSpec(
                    b,
                    exp["input_tokens"],
                    exp["max_output_tokens"],
                    GREEDY,
                    ("online_serving",),
                    stream,
                )
    elif family == "classical_tasks":
        # Each task's examples served offline in static batches, with their own lengths.
        requests = _task_requests(exp)
        for task in exp["tasks"]:
            for b in batch_sizes:
                yield PointSpec(
                    b,
                    exp["max_input_tokens"],
                    exp["max_output_tokens"],
                    GREEDY,
                    ("classical_tasks",),
                    StreamSpec(task, requests, "offline", vary_input=True),
                )
    elif family == "workload_estimates":
        for i, o in _workload_bins(exp, config, read_traces):
            for b in batch_sizes:
                yield PointSpec(b, i, o, GREEDY, ("workload_estimates",))
    elif family == "trace_replay":
        traces = config["experiments"]["workload_traces"]
        ib, ob = tuple(sorted(traces["input_bins"])), tuple(sorted(traces["output_bins"]))
        stream = StreamSpec(exp["trace"], exp["requests"], "offline", True, ib, ob)
        replays = [
            PointSpec(b, ib[-1], ob[-1], GREEDY, ("trace_replay",), stream) for b in batch_sizes
        ]
        shapes = [(i, o) for i in ib for o in ob]
        if exp.get("sampled_bins_only", False) and read_traces:
            # The sample does not depend on the batch size: one draw serves every replay.
            shapes = _sampled_bins(replays[0], stream, config, exp)
        for replay in replays:
            yield replay
            for i, o in shapes:
                yield PointSpec(replay.batch_size, i, o, GREEDY, ("trace_replay",))
    elif family == "decoding_strategies":
        for name in exp["strategies"]:
            d = DecodingSpec(name=name, **config["decoding"][name])
            for b in batch_sizes:
                yield PointSpec(b, exp["input_tokens"], exp["output_tokens"], d, ("decoding",))
    else:
        tag = "architectures" if family == "architectures" else "engine_optimisations"
        for b in batch_sizes:
            yield PointSpec(b, exp["input_tokens"], exp["output_tokens"], GREEDY, (tag,))


def _task_requests(exp: dict[str, Any]) -> int:
    requests = exp["requests"] if exp["requests"] is not None else exp["samples"]
    if requests > exp["samples"]:
        raise ConfigError(
            f"config: experiments.classical_tasks.requests ({requests}) is more than the "
            f"examples sampled per task (samples: {exp['samples']})"
        )
    return requests


def _workload_bins(
    exp: dict[str, Any], config: dict[str, Any], read_traces: bool = True
) -> list[tuple[int, int]]:
    """(input bin, output bin) shapes of the workload estimate: every bin of the traces' grid,
    or with ``occupied_bins_only`` those that hold requests of the configured traces."""
    traces = config["experiments"]["workload_traces"]
    grid = [(i, o) for i in traces["input_bins"] for o in traces["output_bins"]]
    if not exp.get("occupied_bins_only", False) or not read_traces:
        return grid
    from llm_energy.analysis.workload_estimate import occupied_bins

    occupied = occupied_bins(
        traces["traces"], traces["input_bins"], traces["output_bins"], config["mirror"]["data"]
    )
    return [shape for shape in grid if shape in occupied]


def _sampled_bins(
    replay: PointSpec, stream: StreamSpec, config: dict[str, Any], exp: dict[str, Any]
) -> list[tuple[int, int]]:
    """(input bin, output bin) shapes that the replay's sample of requests falls in: the same
    seeded draw as the measurement's, from the trace read at planning."""
    from llm_energy.analysis.workload_estimate import DOWNLOAD_CACHE
    from llm_energy.inputs.prompts import bin_groups, draw_lengths, servable
    from llm_energy.inputs.traces import load_trace, trace_path

    path = trace_path(stream.trace, config["mirror"]["data"], DOWNLOAD_CACHE)
    trace = servable(load_trace(stream.trace, path))
    seed = (_family_protocol(config, exp) or ProtocolSpec(**config["protocol"])).seed
    lengths, _ = draw_lengths(trace, replay, seed)
    return list(bin_groups(lengths, stream.input_bins, stream.output_bins))


def resolve_meter(name: str, device: str) -> str:
    """'auto' is NVML's counter on a GPU and CodeCarbon's (estimating) tracker on the CPU."""
    if name != "auto":
        return name
    return "nvml" if device.startswith("cuda") else "codecarbon"


def _backend_available(backend: str) -> bool:
    from llm_energy.backends import BACKENDS

    return backend in BACKENDS


def _check_engine(config: dict[str, Any], family: str, exp: dict[str, Any], engine: str) -> None:
    """Combinations an engine cannot measure fail at planning, before any job starts."""
    e = config["engines"][engine]
    where = f"config: experiments.{family}.engines: '{engine}'"
    if e["backend"] == "vllm":
        if e.get("torch_compile"):
            raise ConfigError(f"config: engines.{engine}: torch_compile is a transformers option")
        for name in exp.get("strategies", ()):
            if config["decoding"][name]["strategy"] == "beam":
                raise ConfigError(
                    f"{where} is a vLLM engine, and vLLM's beam search needs a tokenizer, which "
                    f"random-weight models run without; measure decoding '{name}' on a "
                    "transformers engine"
                )
    elif family == "online_serving":
        raise ConfigError(f"{where} has no continuous batching; online serving needs a vLLM engine")


def trace_inputs(plan: JobPlan) -> list[str]:
    """Traces that the request-stream points of a job draw lengths from."""
    streams = {p.stream.trace for p in plan.points if p.stream is not None}
    return sorted(streams - set(TASK_STREAMS))


def task_inputs(plan: JobPlan) -> list[str]:
    """Classical tasks whose examples' lengths the request-stream points of a job serve."""
    streams = {p.stream.trace for p in plan.points if p.stream is not None}
    return sorted(streams & set(TASK_STREAMS))


def pg19_tokens(jobs: dict[str, JobPlan]) -> tuple[int, int]:
    """PG-19 tokens that the jobs' pg19 points cut their batches from: as many as gives every
    row of each batch text of its own, and the fewest that still gives every row a window of
    its own start ((0, 0) when no point uses PG-19)."""
    points = [p for job in jobs.values() for p in job.points if p.prompts == "pg19"]
    most = max((p.batch_size * p.input_tokens for p in points), default=0)
    least = max((p.input_tokens + p.batch_size - 1 for p in points), default=0)
    return most, least


def speculative_engine(engine: str, draft: str, tokens: int, forced: bool = False) -> str:
    return f"{engine}-spec-{draft}-k{tokens}" + ("-forced" if forced else "")


def _speculative_jobs(config: dict[str, Any], exp: dict[str, Any]) -> list[tuple[str, str]]:
    """(target, engine) of each pair on each engine, with and without its draft; registers
    the speculative engines under config['engines']."""
    jobs = []
    for pair in exp["pairs"]:
        for engine in exp["engines"]:
            base = config["engines"][engine]
            if base["backend"] != "vllm":
                raise ConfigError(
                    f"config: experiments.speculative_decoding.engines: '{engine}' is not a vLLM "
                    "engine; transformers' assisted generation serves batch 1 only, so the "
                    "study's batch sweep runs on vLLM"
                )
            k = pair["speculative_tokens"]
            if pair.get("pad_draft_vocabulary"):
                _check_random_weights(config, pair, "pad_draft_vocabulary", "draft")
            jobs.append((pair["target"], engine))
            for acceptance in exp["acceptance"]:
                forced = acceptance == "forced"
                if forced:
                    _check_random_weights(config, pair, "acceptance: 'forced'", "target", "draft")
                name = speculative_engine(engine, pair["draft"], k, forced)
                config["engines"][name] = {
                    **base,
                    "draft": pair["draft"],
                    "speculative_tokens": k,
                    "forced_acceptance": forced,
                    "pad_draft_vocabulary": bool(pair.get("pad_draft_vocabulary")),
                }
                jobs.append((pair["target"], name))
    return jobs


def _check_random_weights(
    config: dict[str, Any], pair: dict[str, Any], option: str, *roles: str
) -> None:
    """Forcing acceptance overwrites output weights and padding the draft's vocabulary adds
    rows to them: only random weights may be changed so."""
    for role in roles:
        model = pair[role]
        if config["models"][model]["weights"] != "random":
            raise ConfigError(
                f"config: experiments.speculative_decoding: {option} changes the {role}'s "
                f"weights, and the {role} '{model}' has pretrained weights; measure it with "
                "acceptance: [measured] and a draft of the target's vocabulary"
            )


def _family_protocol(config: dict[str, Any], exp: dict[str, Any]) -> ProtocolSpec | None:
    """The family's own measurement windows over the job's protocol, or None for the job's."""
    if not exp.get("protocol"):
        return None
    return ProtocolSpec(**{**config["protocol"], **exp["protocol"]})


def _add(bucket: dict[tuple, PointSpec], point: PointSpec) -> None:
    """Add a point to a job's points; a point that another family already asked for is
    measured once and serves both (its tags are joined)."""
    old = bucket.get(point.key)
    if old is not None:
        tags = tuple(sorted(set(old.experiments) | set(point.experiments)))
        point = dataclasses.replace(point, experiments=tags)
    bucket[point.key] = point


def parallel_engine(engine: str, size: int) -> str:
    return engine if size == 1 else f"{engine}-tp{size}"


def _parallel_jobs(config: dict[str, Any], exp: dict[str, Any]) -> list[tuple[str, str]]:
    """(model, engine) of each model on each engine at each tensor-parallel size; registers the
    engines of more than one GPU under config['engines']."""
    jobs = []
    for engine in exp["engines"]:
        base = config["engines"][engine]
        if base.get("tensor_parallel_size", 1) != 1:
            raise ConfigError(
                f"config: experiments.tensor_parallel.engines: '{engine}' already spans "
                f"{base['tensor_parallel_size']} GPUs; name a one-GPU engine and list the sizes "
                "under experiments.tensor_parallel.sizes"
            )
        for size in exp["sizes"]:
            name = parallel_engine(engine, size)
            if size > 1:
                engine_spec = {**base, "tensor_parallel_size": size}
                if base["backend"] == "vllm" and exp.get("vllm_options"):
                    engine_spec["options"] = {**base.get("options", {}), **exp["vllm_options"]}
                config["engines"][name] = engine_spec
            jobs += [(model, name) for model in exp["models"]]
    return jobs


# Families whose jobs run engines derived from the configured ones, with the tag of their rows.
DERIVED_FAMILIES = {
    "speculative_decoding": (_speculative_jobs, "speculative"),
    "tensor_parallel": (_parallel_jobs, "tensor_parallel"),
}


def plan_study(config: dict[str, Any], read_traces: bool = True) -> dict[str, JobPlan]:
    """All measurement jobs of a validated config, keyed by group id. Families that measure
    only the bins their traces occupy read the traces; ``read_traces=False`` plans every bin
    instead, for builds that measure nothing (the shipped measurements)."""
    config = copy.deepcopy(config)
    points: dict[tuple[str, str], dict[tuple, PointSpec]] = {}
    for family, (jobs_of, tag) in DERIVED_FAMILIES.items():
        exp = config["experiments"].get(family, {})
        if not exp.get("enabled", False):
            continue
        protocol = _family_protocol(config, exp)
        for model, engine in jobs_of(config, exp):
            bucket = points.setdefault((model, engine), {})
            for b in exp["batch_sizes"]:
                shape = (b, exp["input_tokens"], exp["output_tokens"])
                _add(bucket, PointSpec(*shape, GREEDY, (tag,), protocol=protocol))
    for family, exp in config["experiments"].items():
        if family in DERIVED_FAMILIES:
            continue
        if not exp.get("enabled", False) or family in DATA_FAMILIES:
            continue
        if family not in SWEEP_FAMILIES:
            raise ConfigError(
                f"config: experiments.{family} is enabled, but this release of the pipeline "
                "does not measure that family yet; set experiments."
                f"{family}.enabled: false"
            )
        for engine in exp["engines"]:
            backend = config["engines"][engine]["backend"]
            if not _backend_available(backend):
                raise ConfigError(
                    f"config: experiments.{family}.engines names '{engine}', whose backend "
                    f"'{backend}' this release does not provide"
                )
            _check_engine(config, family, exp, engine)
            protocol = _family_protocol(config, exp)
            for model in exp["models"]:
                bucket = points.setdefault((model, engine), {})
                for p in _points(family, exp, config, read_traces):
                    _add(bucket, dataclasses.replace(p, protocol=protocol))
    return {
        group_id(model, engine): _job(config, model, engine, tuple(bucket.values()))
        for (model, engine), bucket in sorted(points.items())
    }


def _job(config: dict[str, Any], model: str, engine: str, points: tuple[PointSpec, ...]) -> JobPlan:
    m = config["models"][model]
    e = dict(config["engines"][engine])
    meter = config["meter"]
    return JobPlan(
        group=group_id(model, engine),
        hardware=config["hardware"],
        device=config["device"],
        dtype=config["dtype"],
        model=ModelSpec(name=model, **m),
        engine=EngineSpec(name=engine, **e),
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
        largest_feasible_only=_searched_tags(config),
        ffn_time_share=_ffn_timed_tags(config),
    )


def _ffn_timed_tags(config: dict[str, Any]) -> tuple[str, ...]:
    """The architecture comparison may time its feed-forward blocks (experts against MLPs)."""
    exp = config["experiments"].get("architectures", {})
    return ("architectures",) if exp.get("enabled") and exp.get("ffn_time_share") else ()


def _searched_tags(config: dict[str, Any]) -> tuple[str, ...]:
    """The workload estimate uses each bin's largest feasible batch only; with
    ``batch_search: largest_feasible`` its points are searched for that batch."""
    exp = config["experiments"].get("workload_estimates", {})
    if exp.get("enabled", False) and exp.get("batch_search") == "largest_feasible":
        return ("workload_estimates",)
    return ()
