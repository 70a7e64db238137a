"""What an experiment family is: its configuration block, its points, the engines it derives,
its checks, and the figures and tables it draws. Each family is one module of this package
with one :class:`Family` subclass; :mod:`llm_energy.families` finds them by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import yaml

from llm_energy.errors import ConfigError
from llm_energy.measure.job import DecodingSpec, PointSpec

GREEDY = DecodingSpec()
Kind = Literal["figure", "table"]


@dataclass(frozen=True)
class Rows:
    """The measured rows an output draws: those carrying one of ``tags`` (any tag when empty),
    on ``backend`` (any when None). ``families`` names the configuration blocks that measure
    them, for messages."""

    families: tuple[str, ...]
    tags: tuple[str, ...]
    backend: str | None = None

    def wants(self, backend: str, tag: str) -> bool:
        return (self.backend is None or backend == self.backend) and (
            not self.tags or tag in self.tags
        )

    def mask(self, rows: Any) -> Any:
        """Which of ``rows`` (a measurements table) this output draws."""
        tags = rows["experiments"].astype(str).str.split("+")
        return [
            any(self.wants(str(b), t) for t in ts)
            for b, ts in zip(rows["backend"], tags, strict=True)
        ]

    def found_in(self, experiments: Iterable[tuple[str, str]]) -> bool:
        """Whether any of these (backend, experiment tag) pairs is one this output draws."""
        return any(self.wants(b, t) for b, t in experiments)

    def __str__(self) -> str:
        on = f" on {self.backend}" if self.backend else ""
        return " or ".join(f"experiments.{f}" for f in self.families) + on


@dataclass(frozen=True)
class Output:
    """One figure or table. With ``draw`` ("module:function", called with the measurements
    table and ``options``) it is drawn from the measured rows by the workflow's figure or table
    rule into ``results/{figures|tables}/{hardware}/{file}``; without, a rule of its own writes
    ``file`` (a path under results/) from other inputs.

    ``name`` is its target (``snakemake fig2``): the paper's name for the paper's figures and
    tables. Its caption is ``workflow/report/{name}.rst``. With ``source`` (a path under the
    checkout, ``{hardware}`` filled in) it is drawn from that shipped table instead of the
    measurements table, and made wherever that file exists.
    """

    name: str
    kind: Kind
    file: str
    title: str
    category: str
    rows: Rows | None = None
    draw: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def function(self) -> Callable[..., Any]:
        """The drawing function (imported only when drawing: it imports matplotlib)."""
        if self.draw is None:
            raise ConfigError(f"{self.name} is written by a rule of its own, not drawn")
        module, name = self.draw.split(":")
        return getattr(importlib.import_module(module), name)

    def make(self, measurements: Any) -> Any:
        return self.function()(measurements, **self.options)


def figure(
    name: str,
    stem: str,
    title: str,
    category: str,
    rows: Rows | None,
    draw: str | None,
    /,
    **options: Any,
) -> Output:
    """A figure whose file is ``{stem}.{format}``; the format is the configuration's."""
    return Output(name, "figure", stem, title, category, rows, draw, options)


def table(
    name: str,
    file: str,
    title: str,
    category: str,
    rows: Rows | None,
    draw: str | None,
    /,
    **options: Any,
) -> Output:
    return Output(name, "table", file, title, category, rows, draw, options)


class Family:
    """An experiment family: one block under ``experiments`` of the configuration.

    A subclass sets ``name`` (the configuration key), ``description``, ``schema`` (YAML of the
    block's own keys; ``enabled``, ``models``, ``engines``, ``batch_sizes`` and ``protocol``
    are common to every family), ``tags`` (what its rows' ``experiments`` column says) and
    ``outputs``, and implements :meth:`points` when it measures.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    schema: ClassVar[str] = ""
    default_batch_sizes: ClassVar[tuple[int, ...]] = (1, 8, 64)
    tags: ClassVar[tuple[str, ...]] = ()
    measures: ClassVar[bool] = True
    outputs: ClassVar[tuple[Output, ...]] = ()

    @classmethod
    def properties(cls) -> dict[str, Any]:
        """The block's own keys as JSON schema properties."""
        return yaml.safe_load(cls.schema) or {} if cls.schema else {}

    def jobs(self, exp: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
        """(model, engine) pairs whose jobs measure this family's points. Families that derive
        engines (speculative pairs, tensor-parallel sizes) register them under
        ``config["engines"]`` here."""
        for engine in exp["engines"]:
            self.check_engine(exp, config, engine)
        return [(model, engine) for engine in exp["engines"] for model in exp["models"]]

    def check_engine(self, exp: dict[str, Any], config: dict[str, Any], engine: str) -> None:
        """Stop at planning when ``engine`` cannot measure this family."""

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        """The points this family measures on each of its jobs."""
        raise NotImplementedError(f"family '{self.name}' measures no points")

    def job_points(
        self,
        exp: dict[str, Any],
        config: dict[str, Any],
        job: tuple[str, str],
        points: list[PointSpec],
    ) -> list[PointSpec]:
        """The points of this family that its job ``(model, engine)`` measures: all of them by
        default. Families whose jobs differ in what they can measure (a server started with
        one ``max_num_seqs``) choose here."""
        return points

    def job_options(self, exp: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """What the family asks of its jobs' run beyond the points (JobPlan fields): see
        ``JobPlan.largest_feasible_only``, ``ffn_time_share``, ``selections`` and
        ``server_options``."""
        return {}

    def select(
        self, points: list[PointSpec], options: dict[str, Any], data: Any
    ) -> list[PointSpec]:
        """At run time, the points of this family that its job measures, given the data the
        plan could not read while planning (``options`` come from :meth:`job_options`'s
        ``selections``). All of them by default."""
        return points

    def makes(self, output: str, exp: dict[str, Any]) -> bool:
        """Whether the enabled family makes ``output`` (one not drawn from measured rows)
        under its configuration block ``exp``."""
        return True

    def where(self, key: str) -> str:
        return f"config: experiments.{self.name}.{key}"


def shape_points(
    tag: str, exp: dict[str, Any], decoding: DecodingSpec = GREEDY
) -> Iterator[PointSpec]:
    """One point per batch size at the family's fixed input and output length."""
    for b in exp["batch_sizes"]:
        yield PointSpec(b, exp["input_tokens"], exp["output_tokens"], decoding, (tag,))
