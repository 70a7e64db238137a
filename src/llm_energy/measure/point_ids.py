"""Point ids: the name of a point's journal file and the rows' ``point_id`` column.

An id depends on the point and on what determines its numbers (model, engine, device, dtype,
meter and protocol: the job's measurement setup), never on which other points the job holds,
so that adding points to a job leaves its finished points valid. The id function has
versions; each journal says which one named its files (:class:`~llm_energy.measure.store.
Journal`) and each row carries ``point_id_version``.

- Version 1: the ids of the first journals and of the shipped tables. Options that the plan
  gained after those journals were written (prompt sources, request-stream options, a
  family's own protocol, speculative decoding) enter the hash only when they are set, so that
  the journals written before them named the same points.
- Version 2: every field of the point and of the measurement setup, as they are; fields the
  point gained later (a served stream's arrivals) only when they are set.
- Version 3: as version 2, less the protocol's trial counts and interval target
  (:data:`~llm_energy.measure.job.TRIAL_COUNT_FIELDS`), which change no trial: a layer such as
  ``max_trials: 3`` names the same points as the default protocol, so that its rows seed the
  default protocol's runs and a run on the same machine adds trials to its journal's points.

In all, protocol fields added after the shipped tables (:data:`LATER_PROTOCOL_DEFAULTS`)
enter the hash only where they differ from their default, so that the points measured before
them keep their ids; the fields no point's trial depends on (the order of a job's trials,
the control point's window: :data:`~llm_energy.measure.job.JOB_ONLY_FIELDS`) never enter it.

Journals and rows without a version are version 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_energy.measure.job import (
    DEFAULT_PROMPTS,
    TRIAL_COUNT_FIELDS,
    JobPlan,
    PointSpec,
    measuring_fields,
    plain,
    stable_hash,
)

CURRENT_VERSION = 3
VERSIONS = (1, 2, 3)
# Protocol fields added after the shipped tables were measured, with the default that those
# tables were measured under.
LATER_PROTOCOL_DEFAULTS = {"warmup_every_trial": True}
# Plan fields that say which points a job measures and how it runs them, not what a point's
# numbers depend on.
_NOT_MEASUREMENT = (
    "points",
    "group",
    "mirror",
    "largest_feasible_only",
    "ffn_time_share",
    "selections",
    "host_shared",
    "server_options",
)


def _protocol(protocol: dict[str, Any], version: int) -> dict[str, Any]:
    """A protocol's fields as an id of ``version`` takes them: the later ones only where they
    are set, the job-only ones never, nor from version 3 on the trial counts."""
    later = LATER_PROTOCOL_DEFAULTS
    left_out = TRIAL_COUNT_FIELDS if version >= 3 else frozenset()
    measured_by = measuring_fields(protocol)
    return {
        k: v
        for k, v in measured_by.items()
        if k not in left_out and (k not in later or later[k] != v)
    }


def measurement_hash(plan: JobPlan, version: int = CURRENT_VERSION) -> str:
    """Hash of the job's measurement setup."""
    setup = {
        f.name: plain(getattr(plan, f.name))
        for f in dataclasses.fields(plan)
        if f.name not in _NOT_MEASUREMENT
    }
    if version not in VERSIONS:
        raise ValueError(f"unknown point id version {version} (known: {VERSIONS})")
    setup["protocol"] = _protocol(setup["protocol"], version)
    if version == 1:
        # Speculative decoding's fields stay out when unset.
        if setup["draft_model"] is None:
            del setup["draft_model"]
        if setup["engine"]["draft"] is None:
            del setup["engine"]["draft"], setup["engine"]["speculative_tokens"]
        for flag in ("forced_acceptance", "pad_draft_vocabulary"):
            if not setup["engine"][flag]:
                del setup["engine"][flag]
    return stable_hash(setup)


def shape(point: PointSpec) -> str:
    """The head of ``point``'s id under every version: its batch, lengths and decoding, and its
    stream, prompts or server where it has one; the setup hash follows it."""
    d = point.decoding
    prefix = f"b{point.batch_size}_i{point.input_tokens}_o{point.output_tokens}_{d.name}"
    if point.stream is not None:
        prefix += f"_{point.stream.label}"
    if point.prompts != DEFAULT_PROMPTS:
        prefix += f"_{point.prompts}"
    if point.served is not None:
        prefix += f"_{point.served.label}"
    return prefix


def shape_of_id(pid: str) -> str:
    """:func:`shape` read back from an id of any version (``<shape>_v<version>_<hash>`` or,
    version 1, ``<shape>_<hash>``)."""
    for version in VERSIONS[1:]:
        head, sep, _ = pid.rpartition(f"_v{version}_")
        if sep:
            return head
    return pid.rpartition("_")[0]


def point_id(plan: JobPlan, point: PointSpec, version: int = CURRENT_VERSION) -> str:
    """The id of ``point`` of ``plan`` under id function ``version``."""
    return id_with_setup(point, measurement_hash(plan, version), version)


def id_with_setup(point: PointSpec, setup: str, version: int = CURRENT_VERSION) -> str:
    """The id of ``point`` under the measurement setup whose hash is ``setup``."""
    if version >= 2:
        ident: list[Any] = [
            plain(point.decoding),
            plain(point.stream),
            point.prompts,
            None if point.protocol is None else _protocol(plain(point.protocol), version),
            setup,
        ]
        if point.served is not None:
            ident.append(plain(point.served))
        return f"{shape(point)}_v{version}_{stable_hash(ident, 8)}"
    ident = [dataclasses.asdict(point.decoding), setup]
    if point.stream is not None:
        ident.append({k: v for k, v in dataclasses.asdict(point.stream).items() if v != ()})
    if point.prompts != DEFAULT_PROMPTS:
        ident.append({"prompts": point.prompts})
    if point.protocol is not None:
        ident.append({"protocol": _protocol(dataclasses.asdict(point.protocol), version)})
    if point.served is not None:
        ident.append({"served": dataclasses.asdict(point.served)})
    return f"{shape(point)}_{stable_hash(ident, 8)}"


def point_ids(plan: JobPlan, version: int = CURRENT_VERSION) -> dict[tuple, str]:
    """Every point's id, by point key (the plan's setup hashed once for all of them)."""
    setup = measurement_hash(plan, version)
    return {p.key: id_with_setup(p, setup, version) for p in plan.points}
