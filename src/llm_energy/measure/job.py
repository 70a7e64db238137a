"""Value objects describing what to measure. All are frozen and JSON round-trippable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Weights = Literal["random", "pretrained"]
Strategy = Literal["greedy", "beam", "sample"]
# served: through a real OpenAI-compatible server, requests arriving over time (ServedSpec).
Serving = Literal["offline", "online", "served"]
Arrival = Literal["trace", "poisson"]
Prompts = Literal["random", "pg19"]
DEFAULT_PROMPTS: Prompts = "random"


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable object that does not depend on key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class ModelSpec:
    """A model architecture and where its weights come from."""

    name: str
    hub_id: str
    weights: Weights = "random"
    config: str | None = None  # local config.json (or folder) that overrides the hub/mirror copy
    revision: str | None = None


@dataclass(frozen=True)
class EngineSpec:
    """A backend and the options that change its cost (one model load per engine)."""

    name: str
    backend: str
    torch_compile: bool = False
    cuda_graphs: bool = False
    attn_implementation: str | None = None
    tensor_parallel_size: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    draft: str | None = None  # speculative decoding: the draft model's name
    speculative_tokens: int = 0  # tokens the draft proposes per step
    # Random weights set so that the draft always agrees with the target (see
    # backends.vllm_backend.agree_on_one_token): the full-acceptance bound.
    forced_acceptance: bool = False
    # The draft's vocabulary padded to the target's (random weights; see
    # backends.vllm_backend.padded_draft_config).
    pad_draft_vocabulary: bool = False

    @property
    def launches_graphs(self) -> bool:
        """Whether a decoding step launches as one CUDA graph (vLLM, served or not, with CUDA
        graphs) rather than kernel by kernel from the host."""
        return self.backend in ("vllm", "vllm_server") and self.cuda_graphs


@dataclass(frozen=True)
class DecodingSpec:
    """A decoding strategy with its parameters."""

    name: str = "greedy"
    strategy: Strategy = "greedy"
    num_beams: int = 1
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class StreamSpec:
    """A stream of requests whose lengths come from a trace, served with at most ``batch_size``
    requests in flight: in static batches (offline) or by continuous batching (online)."""

    trace: str
    requests: int
    serving: Serving
    vary_input: bool = False  # input lengths from the trace too (else all are input_tokens)
    # Binned replay: requests are drawn from within these bins and each bin's requests are
    # served apart, in static batches (the batching rule of the binned workload estimate).
    input_bins: tuple[int, ...] = ()
    output_bins: tuple[int, ...] = ()

    @property
    def binned(self) -> bool:
        return bool(self.input_bins)

    @property
    def label(self) -> str:
        return (
            f"{self.serving}-{self.trace}-n{self.requests}"
            + ("-vi" if self.vary_input else "")
            + ("-binned" if self.binned else "")
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamSpec:
        d = dict(d)
        for k in ("input_bins", "output_bins"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


@dataclass(frozen=True)
class ServedSpec:
    """How a served stream's requests arrive at the server: at the gaps of consecutive requests
    of the trace (``trace``) or of a seeded Poisson process (``poisson``), scaled to a mean
    ``request_rate`` in requests per second."""

    arrival: Arrival
    request_rate: float

    def __post_init__(self) -> None:
        # 4 and 4.0 are one rate: ids hash the JSON of the spec, which tells them apart.
        object.__setattr__(self, "request_rate", float(self.request_rate))

    @property
    def label(self) -> str:
        return f"{self.arrival}-r{self.request_rate:g}"


@dataclass(frozen=True)
class PointSpec:
    """One measured point: a batch shape and a decoding strategy, or, with ``stream``, a
    request stream capped at ``batch_size`` in flight, ``input_tokens`` and ``output_tokens``
    long at most. ``prompts`` says what the prompts' token ids are: seeded random ids, or PG-19
    text cut to the input length."""

    batch_size: int
    input_tokens: int
    output_tokens: int
    decoding: DecodingSpec = DecodingSpec()
    experiments: tuple[str, ...] = ()
    stream: StreamSpec | None = None
    prompts: Prompts = DEFAULT_PROMPTS
    # A family's own measurement windows (fewer repetitions, no prefill window), else the job's.
    protocol: ProtocolSpec | None = None
    # A stream served through a server with requests arriving over time (batch_size is then
    # the server's max_num_seqs).
    served: ServedSpec | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        shape = (self.batch_size, self.input_tokens, self.output_tokens, self.decoding.name)
        key = shape if self.stream is None else (*shape, self.stream.label)
        key = key if self.prompts == DEFAULT_PROMPTS else (*key, self.prompts)
        if self.served is not None:
            key = (*key, self.served.label)
        if self.protocol is not None:
            measured_by = measuring_fields(dataclasses.asdict(self.protocol))
            key = (*key, "protocol", stable_hash(measured_by, 8))
        return key


@dataclass(frozen=True)
class ProtocolSpec:
    """How each point is measured. See ``protocol.py`` for the procedure."""

    min_duration_s: float = 2.0
    min_repetitions: int = 3
    max_repetitions: int = 1000
    warmup_repetitions: int = 1
    per_repetition_energy_min_s: float = 1.0
    idle_duration_s: float = 5.0
    measure_prefill: bool = True
    seed: int = 0
    # Independent trials of each point, spread over the job (see measure/trials.py).
    min_trials: int = 3
    max_trials: int = 6
    target_ci95_rel: float = 0.03
    # One more measurement of the job's control point at each run's start and end.
    control_point: bool = True
    # The control point's window lasts at least this long (its point's own min_duration_s where
    # that is longer): the energy counter updates about ten times a second, so a two-second
    # window reads its energy to a few per cent, and the drift between two such windows no
    # better; a ten-second one to about one per cent. The job's protocol alone sets it, and it
    # changes no point's trial (one of the JOB_ONLY_FIELDS). 0: the control point's window is
    # its point's own.
    control_min_duration_s: float = 10.0
    # False: a point warms up before its first trial in an engine instance only; its later
    # trials, whose shapes the engine has run, go straight to their windows. "alternate": its
    # later trials in an instance take turns with and without one, in an order seeded per
    # point (warms_up), so that one job compares the two within each engine instance. Points
    # served through a server warm up before every trial either way.
    warmup_every_trial: bool | Literal["alternate"] = True
    # At most this many points have trials under way at once (None: every point of the job),
    # so that a run cut short leaves at most this many points short of min_trials (see
    # trials.TrialSchedule). The job's protocol alone sets it. It orders the trials and
    # changes no trial, so it is one of the SCHEDULING_FIELDS and no column of the rows: a
    # row's trials are the same measurements in any order, and each trial's timestamp says
    # when it ran.
    points_in_flight: int | None = None
    # The order of the job's first trials: "shape", every batch size of a shape before the
    # next shape; or "batch", every shape at one batch size before the next batch size, so
    # that a grid measured over several runs gains whole lines of a figure (every length at
    # a batch size) run by run. Within a shape, smaller batches come first either way, so
    # that a batch out of memory bounds the larger ones. One of the SCHEDULING_FIELDS.
    point_order: Literal["shape", "batch"] = "shape"
    # At most this many trials of a point in one engine start (None: a run measures all it
    # can in its one engine start). The job then runs as a sequence of engine starts, each a
    # fresh process of its measure command (measure/engine_starts.py), so that a point's
    # interval holds the spread between engine starts, which trials inside one start do not
    # show for engines that launch every kernel from the host (PyTorch eager, vLLM eager).
    # One of the SCHEDULING_FIELDS; rows say how many starts their trials came from
    # (engine_starts).
    trials_per_engine_start: int | None = None


def warms_up(protocol: ProtocolSpec, key: tuple, earlier: int) -> bool:
    """Whether a measurement of the point ``key`` warms up first, when its engine instance
    has measured it ``earlier`` times already: always where ``warmup_every_trial`` is true,
    only the first time where it is false, and with ``"alternate"`` the first time and then
    every other time, starting with or without one by a coin seeded with the point."""
    if protocol.warmup_every_trial is True or earlier == 0:
        return True
    if protocol.warmup_every_trial is False:
        return False
    first_later_warms = int(stable_hash([protocol.seed, key, "warm-up"], 8), 16) % 2
    return (earlier - 1) % 2 != first_later_warms


# Protocol fields that say in which order a job measures its trials, not how a trial measures
# a point.
SCHEDULING_FIELDS = frozenset({"points_in_flight", "point_order", "trials_per_engine_start"})
# The job's own protocol alone sets these (a family's protocol keeps their defaults), and no
# point's trial depends on them: the order of the trials, and the control point's window. They
# enter no hash that names a point or a setup (PointSpec.key, which also seeds a point's
# prompts; JobPlan.config_hash; the point ids of llm_energy.measure.point_ids), so that setting
# or changing one leaves every journal and every shipped row valid.
JOB_ONLY_FIELDS = SCHEDULING_FIELDS | {"control_min_duration_s"}
# How many trials a point is measured in and the interval they aim for. Each trial is the same
# measurement whatever they are, so point ids from version 3 on leave them out: a point measured
# in three trials under ``max_trials: 3`` is the same point under the default six, its row seeds
# the default protocol's runs, and a run of the job on the same machine adds trials to it from
# its journal (llm_energy.measure.point_ids). Rows say how many trials they hold and whether
# those met the protocol.
TRIAL_COUNT_FIELDS = frozenset({"min_trials", "max_trials", "target_ci95_rel"})


def measuring_fields(protocol: dict[str, Any]) -> dict[str, Any]:
    """A protocol's fields (as a dict) less :data:`JOB_ONLY_FIELDS`: what a point's trial is
    measured by."""
    return {k: v for k, v in protocol.items() if k not in JOB_ONLY_FIELDS}


@dataclass(frozen=True)
class MeterSpec:
    """The primary meter and the meters that cross-check it over whole windows."""

    primary: str = "nvml"
    cross_check: tuple[str, ...] = ()
    codecarbon: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPlan:
    """Everything one measurement job needs: one engine and model, many points."""

    group: str
    hardware: str
    device: str
    dtype: str
    model: ModelSpec
    engine: EngineSpec
    meter: MeterSpec
    protocol: ProtocolSpec
    points: tuple[PointSpec, ...]
    mirror: dict[str, str | None] = field(default_factory=dict)
    draft_model: ModelSpec | None = None  # speculative decoding's draft (engine.draft)
    # Experiment tags whose points need only the largest feasible batch of their shape: the
    # job tries those batches largest first and leaves the smaller ones unmeasured.
    largest_feasible_only: tuple[str, ...] = ()
    # Experiment tags whose points are followed by a generation with the feed-forward blocks
    # timed (outside the energy windows; see Backend.feed_forward_time_share).
    ffn_time_share: tuple[str, ...] = ()
    # Families that choose among their points when the job starts, from data that planning
    # does not read (the bins a trace occupies), with their options: see Family.select.
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Whether the job may share its host with other measurement jobs (engines the host does
    # not bound, with the configuration's side_by_side), else it measures alone.
    host_shared: bool = False
    # How a job whose engine is a server runs it (health_timeout_s, port,
    # max_failed_fraction): how the job runs, not what its numbers depend on.
    server_options: dict[str, Any] = field(default_factory=dict)

    def protocol_of(self, point: PointSpec) -> ProtocolSpec:
        """The protocol ``point`` is measured under: its family's own, else the job's."""
        return point.protocol or self.protocol

    def asks_ffn_share(self, point: PointSpec) -> bool:
        """Whether a family of ``point`` asks for its feed-forward time share
        (:attr:`ffn_time_share`)."""
        return bool(set(point.experiments) & set(self.ffn_time_share))

    @property
    def config_hash(self) -> str:
        """Hash of everything that determines this job's numbers (not of the whole config file);
        the fields no point's trial depends on (:data:`JOB_ONLY_FIELDS`) do not."""
        setup = plain(self)
        setup["protocol"] = measuring_fields(setup["protocol"])
        for point in setup["points"]:
            if point["protocol"] is not None:
                point["protocol"] = measuring_fields(point["protocol"])
        return stable_hash(setup)

    def to_json(self) -> str:
        return json.dumps(plain(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobPlan:
        points = tuple(
            PointSpec(
                batch_size=p["batch_size"],
                input_tokens=p["input_tokens"],
                output_tokens=p["output_tokens"],
                decoding=DecodingSpec(**p["decoding"]),
                experiments=tuple(p.get("experiments", ())),
                stream=StreamSpec.from_dict(p["stream"]) if p.get("stream") else None,
                prompts=p.get("prompts", DEFAULT_PROMPTS),
                protocol=ProtocolSpec(**p["protocol"]) if p.get("protocol") else None,
                served=ServedSpec(**p["served"]) if p.get("served") else None,
            )
            for p in d["points"]
        )
        meter = dict(d["meter"])
        meter["cross_check"] = tuple(meter.get("cross_check", ()))
        return cls(
            group=d["group"],
            hardware=d["hardware"],
            device=d["device"],
            dtype=d["dtype"],
            model=ModelSpec(**d["model"]),
            engine=EngineSpec(**d["engine"]),
            meter=MeterSpec(**meter),
            protocol=ProtocolSpec(**d["protocol"]),
            points=points,
            mirror=dict(d.get("mirror", {})),
            draft_model=ModelSpec(**d["draft_model"]) if d.get("draft_model") else None,
            largest_feasible_only=tuple(d.get("largest_feasible_only", ())),
            ffn_time_share=tuple(d.get("ffn_time_share", ())),
            selections={k: dict(v) for k, v in d.get("selections", {}).items()},
            host_shared=bool(d.get("host_shared", False)),
            server_options=dict(d.get("server_options", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> JobPlan:
        return cls.from_dict(json.loads(text))


def plain(obj: Any) -> Any:
    """dataclasses.asdict with tuples as lists, so that hashes survive a JSON round trip."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj
