"""Offline workload energy model (section 4 of the study): binned requests times measured batches.

Each request of a trace goes to the smallest (input, output) bin at or above it
(:func:`~llm_energy.inputs.traces.bin_requests`). The ``N(I*, O*)`` requests of a bin run in
batches of
``B(I*, O*)``, the largest batch size measured feasible at the bin's shape, each costing
``E_batch(I*, O*)``, the measured energy of one generate call at that batch:

    E_bin = N / B * E_batch             (fractional batches, the study's formula)
    E_bin_ceil = ceil(N / B) * E_batch  (whole batches: the last, partial one costs a full one)
    E_total = sum of E_bin over the bins

Where ``E_batch`` is a mean over independent trials it has a 95 % half-width ``h_batch``
(``energy_j_ci95``); the bin's is ``N / B * h_batch`` and the total's the square root of the sum
of the bins' squares, the bins being measured independently. Each bin also names the machine
session of its measurement, which claim 8 needs to pair the two engines' bins.

Beside it come the ideal baselines of :mod:`~llm_energy.analysis.ideal` for the same bins: the
study's
``TDP / peak FLOPS * N * FLOPs(I*, O*)`` with the dense and the 2:4-sparse bf16 peak, and a
roofline at the largest batch whose weights and key/value cache fit the GPU's memory. These are
estimates from datasheet figures; ``E_batch`` is the measured number each row points back to.

A bin with requests and no feasible measurement is never counted as zero: the estimate stops
with an error naming it, or, when asked, the total is marked incomplete with the missing bins
and the fraction of requests it covers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llm_energy.analysis.cuda_graphs import cuda_graph_max_batch
from llm_energy.analysis.flops import Architecture
from llm_energy.analysis.ideal import (
    Gpu,
    flops_baseline_j,
    kv_bytes,
    roofline_baseline_j,
    weight_bytes,
)
from llm_energy.analysis.sessions import machine_sessions
from llm_energy.errors import ConfigError, InputError
from llm_energy.families.workload_estimates import NAME as FAMILY
from llm_energy.inputs.traces import BinCounts, bin_requests
from llm_energy.measure.health import flagged
from llm_energy.measure.job import ModelSpec

MissingBins = Literal["error", "incomplete"]
# The prepare-trace rule's download folder, also read when jobs are planned from the traces.
DOWNLOAD_CACHE = Path("results/data/downloads")
# Why a bin's batch is the largest: a larger one ran out of memory, or the ladder ends there.
OUT_OF_MEMORY_ABOVE = "out of memory above"
LADDER_CAP = "largest batch measured, none larger out of memory"
SHAPE = ["input_tokens", "output_tokens"]
ENGINE = ["hardware", "engine", "model"]
PROVENANCE = (
    "point_id",
    "experiments",
    "timestamp",
    "git_commit",
    "energy_source",
    "meter",
    "weights",
    "gpu_name",
    "gpu_uuids",
    "host",
    "backend",
    "gpu_health",
)
TRACE_COUNTS = ("requests_in_trace", "dropped_input", "dropped_output", "dropped_total")


def occupied_bins(
    traces: Iterable[str],
    input_bins: Sequence[int],
    output_bins: Sequence[int],
    mirror: str | Path | None,
    cache_dir: Path = DOWNLOAD_CACHE,
) -> set[tuple[int, int]]:
    """(input bin, output bin) pairs that hold at least one request of any of the traces."""
    from llm_energy.inputs.traces import load_trace, trace_path

    occupied: set[tuple[int, int]] = set()
    for name in traces:
        df = load_trace(name, trace_path(name, mirror, cache_dir))
        counts = bin_requests(df, input_bins, output_bins).counts
        occupied |= set(zip(counts["input_bin"], counts["output_bin"], strict=True))
    return {(int(i), int(o)) for i, o in occupied}


def ideal_gpu_key(config: dict[str, Any]) -> str:
    """The hardware.yaml key of the ideal baselines: ``ideal_gpu``, else the hardware label."""
    from llm_energy.analysis.ideal import load_hardware

    key = config["experiments"]["workload_estimates"]["ideal_gpu"] or config["hardware"]
    known = load_hardware()
    if key not in known:
        raise ConfigError(
            f"config: experiments.workload_estimates.ideal_gpu is '{key}', which "
            "the hardware table (llm_energy/analysis/hardware.yaml) does not hold "
            f"(known: {', '.join(sorted(known))}); "
            "name the GPU whose datasheet gives the ideal baselines"
        )
    return key


def model_config_path(spec: ModelSpec, mirror: str | None) -> Path:
    """The model's config.json: local, mirrored or fetched from the hub."""
    from llm_energy.inputs.model_configs import resolve_model_dir

    # Only config.json is needed: never fetch a checkpoint for the FLOP count.
    folder = resolve_model_dir(ModelSpec(spec.name, spec.hub_id, "random", spec.config), mirror)
    return folder / "config.json"


def load_architecture(spec: ModelSpec, mirror: str | None) -> Architecture:
    """The architecture of a model from its config.json (local, mirrored or from the hub)."""
    from llm_energy.inputs.model_configs import load_config_dict

    return Architecture.from_config(load_config_dict(model_config_path(spec, mirror).parent))


# --- the measured batch of each bin ----------------------------------------------------------


CHOICE_COLUMNS = (
    "batch_size",
    "energy_per_batch_j",
    "energy_per_batch_ci95_j",
    "machine_session",
    "protocol_met",
    "batch_limit",
    "oom_batch_size",
    "largest_fit_bound",
    "cuda_graph_max_batch",
    *PROVENANCE,
)


def _own(rows: pd.DataFrame) -> pd.Series:
    """Whether each row was measured for the workload estimate (among other families)."""
    return rows["experiments"].astype(str).str.split("+").map(lambda t: FAMILY in t)


def _preferred(rows: pd.DataFrame) -> pd.Series:
    """One of several measurements of the same batch at one shape (another family, another
    session): the workload estimate's own, else the latest."""
    own = _own(rows)
    order = pd.DataFrame({"own": own.to_numpy(), "when": _timestamps(rows)}, index=rows.index)
    return rows.loc[order.sort_values(["own", "when"], kind="stable").index[-1]]


def _timestamps(rows: pd.DataFrame) -> list[str]:
    if "timestamp" not in rows.columns:
        return [""] * len(rows)
    return [str(t) if pd.notna(t) else "" for t in rows["timestamp"]]


def _session(row: pd.Series) -> str:
    """The row's machine session as the claims tell sessions apart
    (:func:`~llm_energy.analysis.sessions.machine_sessions`), "" where the row names neither a
    session nor a host or commit."""
    session = machine_sessions(row.to_frame().T).iloc[0]
    return "" if session == "@" else session


def _energy_half_width_j(row: pd.Series) -> float:
    """The 95 % half-width of the row's energy per batch, NaN for a row without trials."""
    value = row.get("energy_j_ci95", math.nan)
    return float(value) if value is not None and not pd.isna(value) else math.nan


def _choose_batch(rows: pd.DataFrame, ladder_top: float = math.inf) -> dict[str, Any]:
    """The largest feasible batch with a measured energy among the rows of one shape, its
    energy per batch with the 95 % half-width over its trials, its machine session, and
    whether it met the trial protocol (None for a row measured before trials). Where the
    estimate's own rows are not at the shape, a batch below ``ladder_top`` (the largest its
    rows anywhere tried) with no larger one out of memory was never searched: not chosen."""
    feasible = rows["feasible"].astype(bool)
    usable = rows[feasible & rows["energy_j"].notna()]
    choice: dict[str, Any] = {
        "batch_size": math.nan,
        "energy_per_batch_j": math.nan,
        "energy_per_batch_ci95_j": math.nan,
        "machine_session": "",
        "protocol_met": None,
        "batch_limit": "",
        "oom_batch_size": math.nan,
        "largest_fit_bound": math.nan,
        "cuda_graph_max_batch": math.nan,
        **dict.fromkeys(PROVENANCE, ""),
    }
    if usable.empty:
        choice["batch_limit"] = (
            "no energy recorded" if feasible.any() else "out of memory at every batch measured"
        )
        return choice
    best = int(usable["batch_size"].max())
    above = rows[~feasible & (rows["batch_size"] > best)]
    if above.empty and not _own(rows).any() and best < ladder_top:
        tags = {t for e in usable["experiments"].astype(str) for t in e.split("+") if t}
        families = ", ".join(sorted(tags))
        choice["batch_limit"] = (
            f"not searched: batch {best} measured for {families}, no larger batch tried"
        )
        return choice
    # A measurement whose GPUs throttled or erred is used only where no other is at hand.
    at_best = usable[usable["batch_size"] == best]
    healthy = at_best[~flagged(at_best)]
    at_best = healthy if len(healthy) else at_best
    # So is one that did not meet the trial protocol (too few trials, a short window).
    met = at_best[_protocol_met_of(at_best).map(lambda v: v is True)]
    row = _preferred(met if len(met) else at_best)
    choice.update(
        batch_size=best,
        energy_per_batch_j=float(row["energy_j"]),
        energy_per_batch_ci95_j=_energy_half_width_j(row),
        machine_session=_session(row),
        protocol_met=_protocol_met(row),
        batch_limit=OUT_OF_MEMORY_ABOVE if len(above) else LADDER_CAP,
        oom_batch_size=int(above["batch_size"].min()) if len(above) else math.nan,
        largest_fit_bound=_largest_fit_bound(above),
        cuda_graph_max_batch=cuda_graph_max_batch(row),
        **{k: str(row[k]) if k in row.index and pd.notna(row[k]) else "" for k in PROVENANCE},
    )
    return choice


def _largest_fit_bound(above: pd.DataFrame) -> float:
    """The largest batch of a shape that may fit, from its out-of-memory rows: the bound a
    search between batches found or the engine knew (``largest_feasible_batch``), else one
    less than the smallest batch out of memory; NaN without such a row."""
    if above.empty:
        return math.nan
    if "largest_feasible_batch" in above:
        known = pd.to_numeric(above["largest_feasible_batch"], errors="coerce").dropna()
        if len(known):
            return float(known.min())
    return float(above["batch_size"].min() - 1)


def _met(value: object) -> bool | None:
    """A ``protocol_met`` value: None where there is none (a row measured before trials)."""
    return None if value is None or pd.isna(value) else bool(value)


def _protocol_met(row: pd.Series) -> bool | None:
    return _met(row.get("protocol_met"))


def _protocol_met_of(rows: pd.DataFrame) -> pd.Series:
    """:func:`_met` of each row's ``protocol_met`` (None throughout where the column is
    missing)."""
    if "protocol_met" not in rows:
        return pd.Series(None, index=rows.index, dtype=object)
    return rows["protocol_met"].astype(object).map(_met)


def largest_batches(measurements: pd.DataFrame) -> pd.DataFrame:
    """Per (hardware, engine, model, input, output): the largest feasible measured batch ``B``,
    its energy per batch and provenance, and whether an out-of-memory batch bounds it.

    Only greedy rows count (the study's workloads decode greedily); rows of any experiment
    family at the shape do, since a measured batch is the same measurement whichever family
    asked for it, but only where the shape's largest feasible batch was searched: the
    estimate's own rows are at the shape (its ladder or search ran there), a larger batch ran
    out of memory, or the batch is as large as any the estimate's rows tried (its ladder's
    top). A shape that other families alone measured below that, at the batches they chose,
    is not measured for the estimate, and ``batch_limit`` says which batch they measured.
    """
    rows = measurements
    if "decoding" in rows.columns:
        rows = rows[rows["decoding"].astype(str) == "greedy"]
    keys = ENGINE + SHAPE
    if rows.empty:
        return pd.DataFrame(columns=[*keys, *CHOICE_COLUMNS])
    own = rows[_own(rows)]
    ladder_top = float(own["batch_size"].max()) if len(own) else math.inf
    chosen = [
        {**dict(zip(keys, key, strict=True)), **_choose_batch(group, ladder_top)}
        for key, group in rows.groupby(keys, sort=True)
    ]
    return pd.DataFrame(chosen)


# --- ideal baselines --------------------------------------------------------------------------


IDEAL_COLUMNS = (
    "ideal_flops_dense_j",
    "ideal_flops_sparse_j",
    "ideal_roofline_j",
    "ideal_roofline_batch_size",
)


def memory_fit_batch(arch: Architecture, hw: Gpu, input_tokens: int, output_tokens: int) -> int:
    """Largest batch whose weights and key/value cache of ``input + output`` tokens per sequence
    fit the GPU's memory (0 when the weights alone do not)."""
    free = hw.memory_gib * 2**30 - weight_bytes(arch)
    return max(int(free // kv_bytes(arch, input_tokens + output_tokens)), 0)


def ideal_bin_j(
    arch: Architecture, hw: Gpu, input_bin: int, output_bin: int, requests: int
) -> dict[str, float]:
    """Ideal energy of ``requests`` requests of one bin.

    The study's FLOPs baseline with the dense and the sparse peak, and the roofline in batches
    of the largest size that fits memory (or of all the bin's requests when fewer), fractional
    like the estimate. NaN roofline when the weights do not fit the GPU at all.
    """
    fit = memory_fit_batch(arch, hw, input_bin, output_bin)
    batch = min(fit, requests)
    roofline = (
        requests / batch * roofline_baseline_j(arch, hw, batch, input_bin, output_bin)
        if batch > 0
        else math.nan
    )
    return {
        "ideal_flops_dense_j": flops_baseline_j(arch, hw, requests, input_bin, output_bin, "dense"),
        "ideal_flops_sparse_j": flops_baseline_j(
            arch, hw, requests, input_bin, output_bin, "sparse"
        ),
        "ideal_roofline_j": roofline,
        "ideal_roofline_batch_size": batch,
    }


def ideal_bins(binned: BinCounts, arch: Architecture, hw: Gpu) -> pd.DataFrame:
    """Per bin with requests: the requests and their ideal energies on ``hw``."""
    rows = [
        {
            "input_bin": int(r.input_bin),
            "output_bin": int(r.output_bin),
            "requests": int(r.requests),
            **ideal_bin_j(arch, hw, int(r.input_bin), int(r.output_bin), int(r.requests)),
            "ideal_gpu": hw.key,
        }
        for r in binned.counts.itertuples()
    ]
    columns = ["input_bin", "output_bin", "requests", *IDEAL_COLUMNS, "ideal_gpu"]
    return pd.DataFrame(rows, columns=columns)


# --- the estimate -----------------------------------------------------------------------------


def _bin_label(input_bin: int, output_bin: int) -> str:
    return f"{input_bin}x{output_bin}"


def estimate_bins(
    trace: str,
    binned: BinCounts,
    batches: pd.DataFrame,
    architectures: dict[str, Architecture],
    hw: Gpu,
    missing: MissingBins = "error",
) -> pd.DataFrame:
    """One row per (hardware, engine, model) of ``batches`` and per bin with requests.

    ``batches`` comes from :func:`largest_batches`. With ``missing='error'`` a bin with requests
    and no feasible measurement raises one error naming every such bin and engine; with
    ``'incomplete'`` its row is kept with ``measured`` false and no energy.
    """
    if missing not in ("error", "incomplete"):
        raise ConfigError(f"missing_bins must be 'error' or 'incomplete', not {missing!r}")
    frames, gaps = [], []
    for (hardware, engine, model), measured in batches.groupby(ENGINE, sort=True):
        if model not in architectures:
            raise ConfigError(f"no architecture given for model '{model}'")
        ideal = ideal_bins(binned, architectures[model], hw)
        shapes = measured.rename(
            columns={"input_tokens": "input_bin", "output_tokens": "output_bin"}
        )
        rows = ideal.merge(shapes.drop(columns=ENGINE), on=["input_bin", "output_bin"], how="left")
        rows["batch_limit"] = rows["batch_limit"].fillna("not measured")
        rows["measured"] = rows["batch_size"].notna()
        rows.insert(0, "trace", trace)
        rows.insert(1, "hardware", hardware)
        rows.insert(2, "engine", engine)
        rows.insert(3, "model", model)
        rows["batches"] = rows["requests"] / rows["batch_size"]
        rows["batches_ceil"] = np.ceil(rows["batches"])
        rows["energy_j"] = rows["batches"] * rows["energy_per_batch_j"]
        rows["energy_ceil_j"] = rows["batches_ceil"] * rows["energy_per_batch_j"]
        rows["energy_ci95_j"] = rows["batches"] * rows["energy_per_batch_ci95_j"]
        rows["energy_ceil_ci95_j"] = rows["batches_ceil"] * rows["energy_per_batch_ci95_j"]
        rows["machine_session"] = rows["machine_session"].fillna("").astype(str)
        for key, value in zip(
            TRACE_COUNTS,
            (binned.total, binned.dropped_input, binned.dropped_output, binned.dropped_total),
            strict=True,
        ):
            rows[key] = value
        gap = rows[~rows["measured"]]
        if len(gap):
            gaps.append((engine, model, hardware, gap))
        frames.append(rows)
    if gaps and missing == "error":
        raise InputError(_missing_message(trace, gaps))
    if not frames:
        return pd.DataFrame(columns=BIN_COLUMNS)
    return pd.concat(frames, ignore_index=True)[BIN_COLUMNS]


def _requests(n: int) -> str:
    return f"{n} request" if n == 1 else f"{n} requests"


def _missing_message(trace: str, gaps: list[tuple[str, str, str, pd.DataFrame]]) -> str:
    parts = []
    for engine, model, hardware, gap in gaps:
        shown = [
            f"{_bin_label(r.input_bin, r.output_bin)} ({_requests(r.requests)}; {r.batch_limit})"
            for r in gap.head(10).itertuples()
        ]
        more = f" and {len(gap) - 10} more" if len(gap) > 10 else ""
        parts.append(
            f"engine '{engine}' (model {model}, hardware {hardware}): bins (input x output) "
            + ", ".join(shown)
            + more
        )
    return (
        f"trace '{trace}': bins with requests but no feasible measurement, so no energy: "
        + "; ".join(parts)
        + ". Measure them (experiments.workload_estimates) or set "
        "experiments.workload_estimates.missing_bins: incomplete"
    )


BIN_COLUMNS = [
    "trace",
    "hardware",
    "engine",
    "backend",
    "model",
    "input_bin",
    "output_bin",
    "requests",
    "measured",
    "batch_size",
    "batch_limit",
    "oom_batch_size",
    "largest_fit_bound",
    "cuda_graph_max_batch",
    "energy_per_batch_j",
    "energy_per_batch_ci95_j",
    "batches",
    "batches_ceil",
    "energy_j",
    "energy_ci95_j",
    "energy_ceil_j",
    "energy_ceil_ci95_j",
    "ideal_flops_dense_j",
    "ideal_flops_sparse_j",
    "ideal_roofline_j",
    "ideal_roofline_batch_size",
    "ideal_gpu",
    "energy_source",
    "meter",
    "weights",
    "gpu_name",
    "point_id",
    "git_commit",
    "timestamp",
    "host",
    "machine_session",
    "protocol_met",
    "gpu_uuids",
    "gpu_health",
    *TRACE_COUNTS,
]


def estimate_workloads(
    traces: dict[str, BinCounts],
    measurements: pd.DataFrame,
    architectures: dict[str, Architecture],
    hw: Gpu,
    *,
    engines: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    missing: MissingBins = "error",
) -> pd.DataFrame:
    """Per-bin estimate of every trace from its bin counts
    (:func:`~llm_energy.inputs.traces.bin_requests`
    of the trace, or a trace summary's), for the engines and models asked (all by default)."""
    rows = measurements
    if engines is not None:
        rows = rows[rows["engine"].isin(list(engines))]
    if models is not None:
        rows = rows[rows["model"].isin(list(models))]
    batches = largest_batches(rows)
    frames = [
        estimate_bins(name, binned, batches, architectures, hw, missing)
        for name, binned in traces.items()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BIN_COLUMNS)


def _joined(values: pd.Series) -> str:
    return ";".join(sorted({str(v) for v in values.dropna()} - {""}))


def _root_sum_of_squares(half_widths: pd.Series) -> float:
    """The half-width of a sum of independent terms; NaN when a term has none or none are."""
    values = half_widths.astype(float)
    if values.empty or values.isna().any():
        return math.nan
    return float(np.sqrt((values**2).sum()))


def workload_totals(bins: pd.DataFrame) -> pd.DataFrame:
    """E_total per (trace, hardware, engine, model) from :func:`estimate_bins` rows.

    Energies and ideal baselines sum over the measured bins only, so that their ratio compares
    like with like; ``complete`` says whether those are all the bins with requests, and
    ``requests_covered_fraction`` how many of the binned requests they hold.

    ``energy_ci95_j``, the 95 % half-width of ``energy_j``, is the square root of the sum of
    the measured bins' squared half-widths, the bins' trials being independent; NaN when a
    measured bin has no interval (a row without trials), or no bin is measured. It holds the
    spread of each bin's trials, not an offset that a machine adds to every bin it measures:
    machines of one type differ by several percent, so two totals compare honestly only where
    each bin's rows share a machine session. ``energy_ceil_ci95_j`` is the same for
    ``energy_ceil_j``. ``machine_sessions`` names the sessions of the measured bins (";"-joined)
    and ``sessions`` counts them.
    """
    rows = []
    keys = ["trace", "hardware", "engine", "model"]
    # Bin tables written before the intervals and sessions were carried have neither.
    bins = bins.assign(
        **{
            c: default
            for c, default in (
                ("energy_ci95_j", math.nan),
                ("energy_ceil_ci95_j", math.nan),
                ("machine_session", ""),
            )
            if c not in bins
        }
    )
    for key, group in bins.groupby(keys, sort=False):
        done = group[group["measured"].astype(bool)]
        gap = group[~group["measured"].astype(bool)]
        binned = int(group["requests"].sum())
        sessions = sorted(set(done["machine_session"].fillna("").astype(str)) - {""})
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "backend": _joined(group["backend"]),
                "ideal_gpu": _joined(group["ideal_gpu"]),
                "gpu_name": _joined(done["gpu_name"]),
                "weights": _joined(done["weights"]),
                "energy_source": _joined(done["energy_source"]),
                "meter": _joined(done["meter"]),
                **{c: int(group[c].iloc[0]) for c in TRACE_COUNTS},
                "requests_binned": binned,
                "requests_covered": int(done["requests"].sum()),
                "requests_covered_fraction": done["requests"].sum() / binned if binned else 0.0,
                "complete": gap.empty,
                "bins_with_requests": len(group),
                "bins_measured": len(done),
                "bins_at_ladder_cap": int((done["batch_limit"] == LADDER_CAP).sum()),
                # Bins whose batch is under half the largest that may fit (a ladder that
                # steps by four leaves it unsearched), and by how much at most.
                "bins_under_half_largest_fit": int(
                    (done["largest_fit_bound"] >= 2 * done["batch_size"]).sum()
                ),
                "largest_fit_over_batch_max": float(
                    (done["largest_fit_bound"] / done["batch_size"]).max(skipna=True)
                ),
                "bins_gpu_health_flagged": int(flagged(done).sum()),
                "bins_past_cuda_graphs": _past_cuda_graphs(done),
                "bins_protocol_not_met": int(
                    _protocol_met_of(done).map(lambda v: v is False).sum()
                ),
                "missing_bins": ";".join(
                    _bin_label(i, o)
                    for i, o in zip(gap["input_bin"], gap["output_bin"], strict=True)
                ),
                "batches": done["batches"].sum(),
                "batches_ceil": done["batches_ceil"].sum(),
                "energy_j": done["energy_j"].sum(),
                "energy_ci95_j": _root_sum_of_squares(done["energy_ci95_j"]),
                "energy_ceil_j": done["energy_ceil_j"].sum(),
                "energy_ceil_ci95_j": _root_sum_of_squares(done["energy_ceil_ci95_j"]),
                "ideal_flops_dense_j": done["ideal_flops_dense_j"].sum(),
                "ideal_flops_sparse_j": done["ideal_flops_sparse_j"].sum(),
                "ideal_roofline_j": done["ideal_roofline_j"].sum(min_count=1),
                "point_ids": _joined(done["point_id"]),
                "git_commits": _joined(done["git_commit"]),
                "machine_sessions": ";".join(sessions),
                "sessions": len(sessions),
            }
        )
    return pd.DataFrame(rows)


def _past_cuda_graphs(bins: pd.DataFrame) -> int:
    """Bins measured at a batch larger than their engine's CUDA graphs reach
    (:mod:`~llm_energy.analysis.cuda_graphs`): their decoding steps ran without graphs."""
    if "cuda_graph_max_batch" not in bins:
        return 0
    bound = pd.to_numeric(bins["cuda_graph_max_batch"], errors="coerce")
    return int((bound.notna() & (pd.to_numeric(bins["batch_size"]) > bound)).sum())


def trace_ideal_totals(bins: pd.DataFrame) -> pd.DataFrame:
    """Ideal baselines per (trace, model, ideal GPU) over every bin with requests, whichever
    engines measured them (the ideal does not depend on the engine)."""
    keys = ["trace", "model", "ideal_gpu"]
    unique = bins.drop_duplicates([*keys, "input_bin", "output_bin"])
    cols = ["requests", "ideal_flops_dense_j", "ideal_flops_sparse_j", "ideal_roofline_j"]
    return unique.groupby(keys, sort=False)[cols].sum(min_count=1).reset_index()
