"""The study's eight claims, computed from the measurements table alone.

Each claim is checked by comparisons of two sets of rows measured in one configuration (one
engine against another at the same shape, a speculative pair against its target alone, ...),
each a relative change with its 95 % confidence interval. A row's interval is its own
(``energy_j_ci95``, ``duration_s_ci95``: Student's t over independent trials); the interval of
a relative change ``b / a - 1`` propagates both to first order,
``(b / a) * sqrt((h_a / a)^2 + (h_b / b)^2)``. Rows measured before trials existed carry no
interval, and their comparisons say so rather than claim more. A comparison that uses a row
short of the protocol, or a row whose GPUs throttled, erred or reset during its windows
(``gpu_health``, :mod:`llm_energy.measure.health`), is inconclusive and says why.

One rule turns a comparison into a verdict (:func:`verdict`):

- *not measured*: no rows for it;
- *inconclusive*: no interval, or an interval that holds no change;
- *disagrees*: the interval lies on the other side of no change than the paper's claim;
- *agrees*: the interval holds the paper's number;
- *agrees in direction*: the interval lies on the paper's side of no change, but does not hold
  its number (or the paper gives none).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.analysis import aggregate
from llm_energy.analysis.cuda_graphs import cuda_graph_max_batch
from llm_energy.analysis.paper import CLAIMS
from llm_energy.analysis.sessions import machine_sessions
from llm_energy.errors import InputError
from llm_energy.measure.health import FLAGS, row_flags
from llm_energy.measure.trials import ci95_half_width, ratio_half_width, trial_values

COLUMNS = (
    "claim",
    "quantity",
    "condition",
    "paper_value",
    "measured_value",
    "ci95_low",
    "ci95_high",
    "verdict",
    "rows",
)


DIFFERENT_SESSIONS = "inconclusive: the rows come from different machine sessions"
NOT_MET = "inconclusive: a row did not meet the protocol"


def verdict(
    paper: float, sign: int, value: float, low: float, high: float, reference: float = 0.0
) -> str:
    """The verdict of one comparison: ``paper`` is the paper's value (NaN when it gives
    none), ``sign`` the direction it claims from ``reference`` (+1 more, -1 less, 0 no
    more)."""
    if math.isnan(value):
        return "not measured"
    if math.isnan(low) or math.isnan(high):
        return "inconclusive: no interval (rows without independent trials)"
    if sign == 0:
        return "disagrees" if low > reference else "agrees"
    if low <= reference <= high:
        return "inconclusive: the interval holds no change"
    if (1 if low > reference else -1) != sign:
        return "disagrees"
    if not math.isnan(paper) and low <= paper <= high:
        return "agrees"
    return "agrees in direction"


def direction(
    paper: float, sign: int, value: float, low: float, high: float, reference: float = 0.0
) -> str:
    """The verdict of a comparison the paper makes no claim about: which way its interval
    points from ``reference`` (``paper`` and ``sign`` are unused)."""
    if math.isnan(value):
        return "not measured"
    if math.isnan(low) or math.isnan(high):
        return "inconclusive: no interval (rows without independent trials)"
    if low <= reference <= high:
        return "inconclusive: the interval holds no change"
    return "higher" if low > reference else "lower"


# Comparisons beyond the study's claims: what each compares, claimed by nobody.
BEYOND = {
    "served_over_offline": (
        "energy per request through vllm serve against the same requests in offline batches"
    ),
    "served_tensor_parallel": "energy per request through vllm serve on {n} GPUs against 1",
    "served_eager": ("energy per request through vllm serve without CUDA graphs against with them"),
}


@dataclass(frozen=True)
class Comparison:
    quantity: str
    condition: str
    value: float
    half_width: float
    rows: str
    protocol_met: bool = True
    same_session: bool = True
    gpu_flags: str = ""


def _tagged(df: pd.DataFrame, tag: str) -> pd.DataFrame:
    tags = df["experiments"].astype(str).str.split("+")
    return df[tags.map(lambda t: tag in t)]


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[aggregate.measured(df)]


def _met(*rows: pd.Series) -> bool:
    """Rows measured under the trial protocol say whether they met it; older rows have no
    trials, which their missing interval already says."""
    met = [r.get("protocol_met") for r in rows]
    # A table's booleans are numpy's: compared by value, not by identity with False.
    return all(v is None or pd.isna(v) or bool(v) for v in met)


def _flags(*rows: pd.Series) -> str:
    """The GPU health flags the rows raise (empty for rows that are ok or cannot tell)."""
    raised = {f for r in rows for f in row_flags(r)}
    return ", ".join(f for f in FLAGS if f in raised)


def _half(row: pd.Series, quantity: str) -> float:
    col = f"{quantity}_ci95"
    value = row.get(col, math.nan)
    return float(value) if value is not None and not pd.isna(value) else math.nan


def _decode_share(row: pd.Series) -> tuple[float, float]:
    """Decode's share of a batch's energy and the half-width of its 95 % interval: over the
    trials' own shares where the row keeps each trial's prefill window, else the share of the
    means with the energy's relative interval (the prefill window's spread left out)."""
    full = trial_values(row.get("trial_energy_j"))
    prefill = trial_values(row.get("trial_prefill_energy_j"))
    if len(full) >= 2 and len(prefill) == len(full) and all(f > 0 for f in full):
        shares = [(f - p) / f for f, p in zip(full, prefill, strict=True)]
        return sum(shares) / len(shares), ci95_half_width(shares)
    share = float(row["decode_energy_j"] / row["energy_j"])
    return share, share * _half(row, "energy_j") / float(row["energy_j"])


def relative_change(
    base: pd.DataFrame,
    other: pd.DataFrame,
    on: Sequence[str],
    quantity: str = "energy_j",
    label: str = "",
) -> Iterator[Comparison]:
    """``other / base - 1`` of ``quantity`` for every key of ``on`` that both hold, each pair
    from one machine session (the latest that has both); a key whose rows share no session is
    compared across sessions and says so."""
    base, other = (_with_sessions(_measured(t)) for t in (base, other))
    keys = sorted(set(_keys(base, on)) & set(_keys(other, on)))
    for key in keys:
        a_rows, b_rows = (t[_matches(t, on, key)] for t in (base, other))
        shared = set(a_rows["_session"]) & set(b_rows["_session"])
        same_session = bool(shared)
        if same_session:
            latest = max(shared, key=lambda s: a_rows.loc[a_rows["_session"] == s, "_when"].max())
            a_rows, b_rows = (t[t["_session"] == latest] for t in (a_rows, b_rows))
        a, b = a_rows.iloc[0], b_rows.iloc[0]
        ratio = float(b[quantity]) / float(a[quantity])
        rel_a = _half(a, quantity) / float(a[quantity])
        rel_b = _half(b, quantity) / float(b[quantity])
        condition = ", ".join(f"{k} {v}" for k, v in zip(on, key, strict=True))
        condition += "".join(_past_graphs_note(r) for r in (a, b))
        yield Comparison(
            quantity,
            f"{label}{condition}",
            ratio - 1,
            ratio_half_width(ratio, rel_a, rel_b),
            f"{a['point_id']} {b['point_id']}",
            _met(a, b),
            same_session,
            gpu_flags=_flags(a, b),
        )


def _past_graphs_note(row: pd.Series) -> str:
    """What a condition says where ``row``'s batch is larger than its engine's CUDA graphs:
    its decoding steps ran kernel by kernel."""
    bound = cuda_graph_max_batch(row)
    if math.isnan(bound) or not int(row.get("batch_size", 0)) > bound:
        return ""
    if bound == 0:
        return f" ({row['engine']}: no CUDA graphs captured)"
    return f" ({row['engine']}: steps of more than {bound:.0f} sequences without CUDA graphs)"


def _with_sessions(rows: pd.DataFrame) -> pd.DataFrame:
    when = rows["timestamp"].astype(str) if "timestamp" in rows else pd.Series("", rows.index)
    return rows.assign(_session=machine_sessions(rows), _when=when)


def _keys(rows: pd.DataFrame, on: Sequence[str]) -> list[tuple]:
    return [
        tuple(v.item() if hasattr(v, "item") else v for v in values)
        for values in rows[list(on)].itertuples(index=False)
    ]


def _matches(rows: pd.DataFrame, on: Sequence[str], key: tuple) -> pd.Series:
    mask = pd.Series(True, index=rows.index)
    for column, value in zip(on, key, strict=True):
        mask &= rows[column] == value
    return mask


def _rows(claim: str, key: str, comparisons: Iterator[Comparison]) -> list[dict]:
    paper, sign, what, reference = CLAIMS[claim][key]
    out = []
    for c in comparisons:
        low, high = c.value - c.half_width, c.value + c.half_width
        out.append(
            {
                "claim": claim,
                "quantity": f"{what} ({c.quantity})",
                "condition": c.condition,
                "paper_value": paper,
                "measured_value": c.value,
                "ci95_low": low,
                "ci95_high": high,
                "verdict": _verdict(c, paper, sign, low, high, reference),
                "rows": c.rows,
            }
        )
    if not out:
        nan = math.nan
        out.append(
            dict(
                zip(
                    COLUMNS,
                    (claim, what, "", paper, nan, nan, nan, "not measured", ""),
                    strict=True,
                )
            )
        )
    return out


def _verdict(
    c: Comparison,
    paper: float,
    sign: int,
    low: float,
    high: float,
    reference: float,
    rule: Callable[..., str] = verdict,
) -> str:
    if not c.same_session:
        return DIFFERENT_SESSIONS
    if not c.protocol_met:
        return NOT_MET
    if c.gpu_flags:
        return f"inconclusive: a row's GPU health is {c.gpu_flags}"
    return rule(paper, sign, c.value, low, high, reference)


def served_comparisons(df: pd.DataFrame) -> list[dict]:
    """Each served run's energy per request against the offline estimate of the same
    requests on the same server (one job, so one machine session), with the ratio's interval
    from both rows' trials."""
    from llm_energy.figures.serving import (
        NAME,
        SAME_REQUESTS,
        server_label,
        setting_label,
        table_served_traces,
    )

    rows = df[df["experiments"].astype(str).str.contains(NAME)]
    if rows.empty or not (rows["serving"] == "served").any():
        return []
    out = []
    for r in table_served_traces(df).itertuples(index=False):
        if pd.isna(r.served_over_offline):
            continue
        served, offline = (
            rows[rows["point_id"] == pid].iloc[0] for pid in (r.point_id, r.offline_point_id)
        )
        c = Comparison(
            "energy_per_request_j",
            f"{r.model}, {r.setting}, {r.arrival} arrivals, {r.request_rate:g} requests/s",
            float(r.served_over_offline) - 1,
            float(r.served_over_offline_ci95),
            f"{offline['point_id']} {r.point_id}",
            _met(offline, served),
            gpu_flags=_flags(offline, served),
        )
        out.append(_beyond(BEYOND["served_over_offline"], c))
    # The same server over more GPUs, the same requests at the same rate and arrivals.
    served = rows[rows["serving"] == "served"].assign(
        setting=lambda t: [
            setting_label(bool(g), int(b), 1)
            for g, b in zip(t["cuda_graphs"], t["batch_size"], strict=True)
        ],
        rate=lambda t: [f"{r:g} requests/s" for r in t["request_rate"]],
    )
    on = [*SAME_REQUESTS, "setting", "arrival", "rate"]
    one = served[served["tensor_parallel_size"] == 1]
    for n in sorted(set(served["tensor_parallel_size"]) - {1}):
        more = served[served["tensor_parallel_size"] == n]
        what = BEYOND["served_tensor_parallel"].format(n=int(n))
        for c in relative_change(one, more, on, "energy_per_request_j"):
            r = one[one["point_id"] == c.rows.split()[0]].iloc[0]
            condition = f"{r['model']}, {r['setting']}, {r['arrival']} arrivals, {r['rate']}"
            out.append(_beyond(what, dataclasses.replace(c, condition=condition)))
    # The same server without CUDA graphs (same max_num_seqs and GPUs), the same requests.
    on = [*SAME_REQUESTS, "batch_size", "tensor_parallel_size", "arrival", "rate"]
    graphs = served[served["cuda_graphs"].astype(bool)]
    eager = served[~served["cuda_graphs"].astype(bool)]
    for c in relative_change(graphs, eager, on, "energy_per_request_j"):
        r = graphs[graphs["point_id"] == c.rows.split()[0]].iloc[0]
        server = server_label(r["batch_size"], r["tensor_parallel_size"])
        condition = f"{r['model']}, {server}, {r['arrival']} arrivals, {r['rate']}"
        out.append(_beyond(BEYOND["served_eager"], dataclasses.replace(c, condition=condition)))
    return out


def _beyond(what: str, c: Comparison) -> dict:
    """A comparison beyond the study's claims: its verdict says only which way it points."""
    low, high = c.value - c.half_width, c.value + c.half_width
    return {
        "claim": "serving",
        "quantity": f"{what} ({c.quantity})",
        "condition": c.condition,
        "paper_value": math.nan,
        "measured_value": c.value,
        "ci95_low": low,
        "ci95_high": high,
        "verdict": _verdict(c, math.nan, 0, low, high, 0.0, rule=direction),
        "rows": c.rows,
    }


def _engine(df: pd.DataFrame, backend: str, flag: str | None, on: bool) -> pd.DataFrame:
    rows = df[df["backend"] == backend]
    if flag is not None:
        rows = rows[rows[flag].fillna(False).astype(bool) == on]
    return rows


def claims_table(df: pd.DataFrame) -> pd.DataFrame:
    """The eight claims' comparisons that the rows allow."""
    df = df.copy()
    for col in ("torch_compile", "cuda_graphs"):
        if col not in df:
            df[col] = False
    rows: list[dict] = []

    # 1. Decode dominates energy except for the shortest outputs.
    sweep = _measured(_tagged(df, "output_sweep"))
    sweep = sweep[(sweep["output_tokens"] >= 64) & (sweep["energy_j"] > 0)]
    sweep = sweep[sweep["decode_energy_j"].notna()]
    # A shape measured in several machine sessions gives one share per session, each named.
    shape = ["model", "engine", "batch_size", "input_tokens", "output_tokens"]
    sweep = sweep.assign(_session=machine_sessions(sweep))
    sessions_of_shape = sweep.groupby(shape)["_session"].transform("nunique")
    shares = []
    for (_, r), sessions in zip(sweep.iterrows(), sessions_of_shape, strict=True):
        share, half = _decode_share(r)
        measured_on = f", session {r['_session']}" if sessions > 1 else ""
        shares.append(
            Comparison(
                "energy_j",
                f"{r['model']}, {r['engine']}, batch {r['batch_size']}, "
                f"{r['input_tokens']} in, {r['output_tokens']} out{measured_on}",
                share,
                half,
                str(r["point_id"]),
                _met(r),
                gpu_flags=_flags(r),
            )
        )
    rows += _rows("1", "decode_share", iter(shares))

    # 2. Speculative decoding against the target alone.
    spec = _tagged(df, "speculative")
    target = spec[spec["speculative_model"].fillna("").astype(str) == ""]
    for acceptance in ("measured", "forced"):
        drafted = spec[spec["speculative_acceptance"].fillna("").astype(str) == acceptance]
        small = relative_change(
            target[target["batch_size"] <= 16],
            drafted,
            ("model", "batch_size"),
            label=f"{acceptance} acceptance, ",
        )
        rows += _rows("2", "small_batches", small)
        large = relative_change(
            target[target["batch_size"] >= 128],
            drafted,
            ("model", "batch_size"),
            label=f"{acceptance} acceptance, ",
        )
        rows += _rows("2", "batch_128", large)

    # 3. OLMoE against OLMo-1B and OLMo-7B.
    arch = _tagged(df, "architectures")
    moe = arch[arch["model"] == "olmoe-1b-7b"]
    for dense, key in (("olmo-1b", "over_olmo_1b"), ("olmo-7b", "under_olmo_7b")):
        rows += _rows(
            "3", key, relative_change(arch[arch["model"] == dense], moe, ("engine", "batch_size"))
        )

    # 4. vLLM against PyTorch, and 5. torch.compile and CUDA graphs, at one shape.
    engines = _tagged(df, "engine_optimisations")
    eager_pt = _engine(engines, "transformers", "torch_compile", False)
    graphs = _engine(engines, "vllm", "cuda_graphs", True)
    rows += _rows("4", "vllm_energy", relative_change(eager_pt, graphs, ("model", "batch_size")))
    compiled = _engine(engines, "transformers", "torch_compile", True)
    eager_vllm = _engine(engines, "vllm", "cuda_graphs", False)
    for key, a, b in (
        ("compile_energy", eager_pt, compiled),
        ("graphs_energy", eager_vllm, graphs),
    ):
        rows += _rows("5", key, relative_change(a, b, ("model", "batch_size")))
    for key, a, b in (("compile_time", eager_pt, compiled), ("graphs_time", eager_vllm, graphs)):
        rows += _rows("5", key, relative_change(a, b, ("model", "batch_size"), "duration_s"))

    # 6. Continuous against static batching.
    serving = _tagged(df, "online_serving")
    for key, large in (("online_large", True), ("online_small", False)):
        at = serving[(serving["batch_size"] >= 64) == large]
        rows += _rows(
            "6",
            key,
            relative_change(
                at[at["serving"] == "offline"],
                at[at["serving"] == "online"],
                ("model", "engine", "batch_size"),
            ),
        )

    # 7. Tensor parallelism over 2 and 4 GPUs against one, at batch 1.
    parallel = _tagged(df, "tensor_parallel")
    parallel = parallel[parallel["batch_size"] == 1].assign(
        engine=parallel["backend"].where(~parallel["cuda_graphs"].astype(bool), "vllm, CUDA graphs")
    )
    base = parallel[parallel["tensor_parallel_size"] == 1]
    for size in (2, 4):
        wide = parallel[parallel["tensor_parallel_size"] == size]
        for quantity, key in (("duration_s", f"tp{size}_time"), ("energy_j", f"tp{size}_energy")):
            rows += _rows(
                "7",
                key,
                relative_change(base, wide, ("model", "engine", "batch_size"), quantity),
            )

    # Beyond the study: serving through a real server against offline batches.
    rows += served_comparisons(df)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _measured_trace_bins(bins: pd.DataFrame, trace: str) -> pd.DataFrame:
    """The trace's measured bins on vLLM and PyTorch, each with its machine session ("" where
    none is known)."""
    rows = bins[
        (bins["trace"] == trace)
        & bins["engine"].isin(["vllm", "pytorch"])
        & bins["measured"].astype(bool)
    ]
    return rows.assign(machine_session=rows["machine_session"].fillna("").astype(str))


def _sessions_by_bin(bins: pd.DataFrame) -> pd.DataFrame:
    """Each bin's machine session (rows) on each engine (columns)."""
    return bins.pivot_table(
        index=["input_bin", "output_bin"],
        columns="engine",
        values="machine_session",
        aggfunc="first",
    )


def _engine_sessions(bins: pd.DataFrame) -> tuple[int, int, int]:
    """(machine sessions, bins with requests, bins whose two engines come from different
    sessions) of one trace's vLLM and PyTorch bins (:func:`_measured_trace_bins`), every bin
    measured on both."""
    paired = _sessions_by_bin(bins)
    apart = int((paired["vllm"] != paired["pytorch"]).sum())
    return bins["machine_session"].nunique(), len(paired), apart


def _engine_change(by_engine: pd.DataFrame) -> tuple[float, float]:
    """vLLM's total energy against PyTorch's (totals indexed by engine), as a relative change
    and the 95 % half-width of that change."""
    vllm, pytorch = by_engine.loc["vllm"], by_engine.loc["pytorch"]
    ratio = float(vllm["energy_j"] / pytorch["energy_j"])
    half = ratio_half_width(
        ratio,
        float(pytorch["energy_ci95_j"] / pytorch["energy_j"]),
        float(vllm["energy_ci95_j"] / vllm["energy_j"]),
    )
    return ratio - 1, half


def workload_claims(bins: pd.DataFrame) -> pd.DataFrame:
    """Claim 8 from the workload estimate's bins (``workload_energy_bins.csv``, the rows of
    :func:`~llm_energy.analysis.workload_estimate.estimate_bins`): each trace's energy on vLLM
    against PyTorch, the totals of
    :func:`~llm_energy.analysis.workload_estimate.workload_totals`.

    The change's 95 % interval comes from the two totals' half-widths (each the bins' trials
    combined) as any ratio's does; the verdict is :func:`verdict`'s. A total holds no offset
    common to a machine's bins, so the comparison is made only where each bin's two engines were
    measured in one machine session; different bins may come from different sessions, and the
    condition counts them. A bin whose engines come from two sessions makes the comparison
    inconclusive, its value still given, and so does a bin whose row did not meet the trial
    protocol (a rerun's fewer trials). Totals without an interval (rows without trials) give
    the value alone, whichever sessions their bins come from. Totals of bins measured so far
    (``complete`` false) cover different requests on the two engines: no comparison, the
    requests each covers said instead, and a second row compares the engines over the bins
    both measured in one session (:func:`_bins_compared_so_far`). A bin whose GPUs were
    flagged unhealthy makes the comparison inconclusive."""
    from llm_energy.analysis.workload_estimate import workload_totals

    totals = workload_totals(bins)
    rows = []
    if totals.empty:
        return pd.DataFrame(rows, columns=list(COLUMNS))
    for trace, group in totals.groupby("trace"):
        by_engine = group.set_index("engine")
        if "pytorch" not in by_engine.index or "vllm" not in by_engine.index:
            continue
        key = f"fall_{trace}"
        if key not in CLAIMS["8"]:
            continue
        paper, sign, what, reference = CLAIMS["8"][key]
        change, half = _engine_change(by_engine)
        low, high = change - half, change + half
        condition = f"{trace}, vllm against pytorch"
        complete = by_engine["complete"].fillna(True).astype(bool).all()
        apart = 0
        if complete and not math.isnan(half):
            sessions, paired, apart = _engine_sessions(_measured_trace_bins(bins, trace))
            condition += f", bins from {_count(sessions, 'machine session')}, " + (
                f"the two engines of {apart} of {paired} bins from different ones"
                if apart
                else "each bin's two engines from one"
            )
        condition += _bin_notes(by_engine)
        unhealthy = int(group["bins_gpu_health_flagged"].fillna(0).sum())
        short = int(group["bins_protocol_not_met"].fillna(0).sum())
        so_far = None
        if not complete:
            covered = by_engine["requests_covered_fraction"]
            change, low, high = math.nan, math.nan, math.nan
            judged = (
                "not measured: bins missing ("
                + ", ".join(f"{e} {100 * float(covered[e]):.0f} %" for e in ("vllm", "pytorch"))
                + " of the requests measured)"
            )
            binned = int(by_engine.loc["vllm", "requests_binned"])
            so_far = _bins_compared_so_far(bins, trace, what, binned)
        elif apart:
            judged = DIFFERENT_SESSIONS
        elif short:
            judged = NOT_MET
        elif unhealthy:
            judged = f"inconclusive: GPU health flagged in the rows of {_count(unhealthy, 'bin')}"
        else:
            judged = verdict(paper, sign, change, low, high, reference)
        rows.append(
            {
                "claim": "8",
                "quantity": f"{what} (energy_j, binned estimate)",
                "condition": condition,
                "paper_value": paper,
                "measured_value": change,
                "ci95_low": low,
                "ci95_high": high,
                "verdict": judged,
                "rows": "workload_energy_bins.csv",
            }
        )
        if so_far is not None:
            rows.append(so_far)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _bin_notes(by_engine: pd.DataFrame) -> str:
    """What claim 8's condition says of how an engine's bins ran: at batches larger than its
    CUDA graphs reach, or at under half the largest batch that may fit (known, or bounded by
    the smallest one out of memory), where energy per request may be higher than at the
    largest."""

    def count(column: str) -> pd.Series:
        """A per-engine count of bins, 0 where the totals lack it (written before it)."""
        if column not in by_engine:
            return pd.Series(0, index=by_engine.index)
        return by_engine[column].fillna(0).astype(int)

    notes = []
    past_graphs, under_half = count("bins_past_cuda_graphs"), count("bins_under_half_largest_fit")
    for engine, row in by_engine.iterrows():
        bins = int(row["bins_measured"])
        past, coarse = past_graphs[engine], under_half[engine]
        said = [f"{past} at batches past its CUDA graphs"] if past else []
        if coarse:
            said.append(f"{coarse} at under half the largest batch that may fit")
        if said:
            notes.append(f"{engine}: of {bins} bins, {' and '.join(said)}")
    return f" ({'; '.join(notes)})" if notes else ""


def _bins_compared_so_far(
    bins: pd.DataFrame, trace: str, what: str, requests_binned: int
) -> dict[str, Any] | None:
    """While a trace's bins are being measured: its two engines compared over the bins each
    measured in one machine session, both rows with trials, meeting the protocol on healthy
    GPUs. The paper's number is of the whole trace, so this subset has no paper value and the
    verdict says only which way its interval points (:func:`direction`); the condition says how
    many bins and which share of the trace's requests it holds. None where no bin qualifies."""
    from llm_energy.analysis.workload_estimate import _protocol_met_of, workload_totals
    from llm_energy.measure.health import flagged

    rows = _measured_trace_bins(bins, trace)
    rows = rows[
        rows["energy_ci95_j"].notna()
        & _protocol_met_of(rows).map(lambda v: v is True)
        & ~flagged(rows).astype(bool)
    ]
    sessions = _sessions_by_bin(rows)
    if not {"vllm", "pytorch"} <= set(sessions.columns):
        return None
    paired = sessions[(sessions["vllm"] == sessions["pytorch"]) & (sessions["vllm"] != "")]
    if paired.empty:
        return None
    keys = rows.set_index(["input_bin", "output_bin"]).index.isin(paired.index)
    totals = workload_totals(rows[keys]).set_index("engine")
    change, half = _engine_change(totals)
    covered = int(totals.loc["vllm", "requests_covered"])
    share = covered / requests_binned if requests_binned else math.nan
    sessions_used = paired["vllm"].nunique()
    return {
        "claim": "8",
        "quantity": f"{what}, over the bins measured so far (energy_j, binned estimate)",
        "condition": (
            f"{trace}, vllm against pytorch, {_count(len(paired), 'bin')} "
            f"({100 * share:.1f} % of the requests), each bin's two engines from one "
            f"machine session, {_count(sessions_used, 'session')} in all" + _bin_notes(totals)
        ),
        "paper_value": math.nan,
        "measured_value": change,
        "ci95_low": change - half,
        "ci95_high": change + half,
        "verdict": direction(math.nan, 0, change, change - half, change + half),
        "rows": "workload_energy_bins.csv",
    }


def _cells(table: pd.DataFrame) -> Iterator[tuple[str, ...]]:
    """Each comparison as the docs and the report print it: claim, quantity, condition,
    paper, measured, 95 % interval, verdict."""

    def pct(v: float) -> str:
        return "" if v is None or pd.isna(v) else f"{100 * v:+.1f} %"

    def share(v: float) -> str:
        return "" if v is None or pd.isna(v) else f"{100 * v:.1f} %"

    for r in table.itertuples():
        # Claim 1 compares a share with one half; the others are relative changes.
        fmt = share if r.claim == "1" else pct
        interval = "" if pd.isna(r.ci95_low) else f"{fmt(r.ci95_low)} to {fmt(r.ci95_high)}"
        yield (
            str(r.claim),
            str(r.quantity),
            str(r.condition),
            fmt(r.paper_value),
            fmt(r.measured_value),
            interval,
            str(r.verdict),
        )


HEADER = ("claim", "quantity", "condition", "paper", "measured", "95 % interval", "verdict")
INTRO = (
    "Computed by `llm_energy.analysis.claims` from the measurements table; changes are "
    "relative (other / base - 1), with 95 % intervals where the rows have trials."
)


def markdown(table: pd.DataFrame, hardware: str) -> str:
    """The claims table as the Markdown page the docs quote."""
    lines = [
        f"# The study's claims on {hardware}",
        "",
        INTRO,
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(table)]
    return "\n".join(lines) + "\n"


def _rst(text: str) -> str:
    """A table cell as reStructuredText reads it literally."""
    text = re.sub(r"([*`|\\])", r"\\\1", text)
    return re.sub(r"_(?=\W|$)", r"\\_", text) or ".."


def restructuredtext(table: pd.DataFrame, hardware: str) -> str:
    """The claims table as reStructuredText, for the report's first page: one short table per
    claim and quantity, so that it reads in a narrow column."""
    lines = [f"**The study's claims on {hardware}.** {INTRO}", ""]
    cells = list(_cells(table))
    for claim, quantity in dict.fromkeys((c[0], c[1]) for c in cells):
        lines += [
            f".. list-table:: Claim {_rst(claim)}: {_rst(quantity)}",
            "   :header-rows: 1",
            "   :widths: 40 12 12 20 30",
            "",
        ]
        rows = [c[2:] for c in cells if (c[0], c[1]) == (claim, quantity)]
        for row in (HEADER[2:], *rows):
            lines.append(f"   * - {_rst(row[0])}")
            lines += [f"     - {_rst(cell)}" for cell in row[1:]]
        lines.append("")
    return "\n".join(lines)


# --- The claims in the docs ----------------------------------------------------------------------

MINUS = "\u2212"
# Shape parts of a condition ("batch_size 8", "batch 8", "512 in", "64 out"): the summary's
# ranges run over them, the other parts name the series.
_SHAPE = re.compile(
    r"^(?:batch(?:_size)? (?P<batch>\d+)|(?P<input>\d+) in|(?P<output>\d+) out"
    r"|(?P<rate>[\d.]+) requests/s|(?P<session>session \S+))$"
)
_UNIT = re.compile(r" \((?P<unit>energy_j|duration_s)(?:, (?P<note>[^)]*))?\)$")


def _signed_pct(value: float) -> str:
    return f"{100 * value:+.1f} %".replace("-", MINUS)


def _share_pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def paper_pct(value: float) -> str:
    """A paper's relative change as the paper prints it: up to two decimals."""
    text = f"{100 * value:+.2f}".rstrip("0").rstrip(".")
    return f"{text} %".replace("-", MINUS)


def _quantity_words(quantity: str) -> str:
    """``"vLLM ... eager (energy_j)"`` as a reader says it: ``"vLLM ... eager, energy"``."""
    m = _UNIT.search(quantity)
    if m is None:
        return quantity
    what = quantity[: m.start()]
    word = "energy" if m["unit"] == "energy_j" else "time"
    if word not in what:
        what = f"{what}, {word}"
    return f"{what} ({m['note']})" if m["note"] else what


def _split_condition(condition: str) -> tuple[str, dict[str, str]]:
    """The series a condition belongs to, and its shape parts by kind."""
    series, shape = [], {}
    for part in str(condition).split(", ") if condition else []:
        m = _SHAPE.match(part)
        if m is None:
            series.append(part)
        else:
            kind = next(k for k, v in m.groupdict().items() if v is not None)
            shape[kind] = f"batch {m['batch']}" if kind == "batch" else part
    return ", ".join(series), shape


def _verdict_words(verdict_: str, count: int) -> str:
    """A verdict without its explanation in parentheses, its verb agreeing with ``count``."""
    short = verdict_.split(" (")[0]
    if count == 1:
        return short
    for singular, plural in (("disagrees", "disagree"), ("agrees", "agree")):
        if short.startswith(singular):
            return plural + short[len(singular) :]
    return short


def summary(table: pd.DataFrame) -> str:
    """One Markdown line per claim, compared quantity and series of comparisons (rows of one
    model, engine or acceptance, against one paper value): the lowest and highest measured
    value with their 95 % intervals and where each was measured, and how many comparisons
    reach each verdict."""
    groups: dict[tuple, list[tuple[Any, dict[str, str]]]] = {}
    for r in table.itertuples(index=False):
        series, shape = _split_condition("" if pd.isna(r.condition) else r.condition)
        paper = None if pd.isna(r.paper_value) else float(r.paper_value)
        groups.setdefault((str(r.claim), r.quantity, series, paper), []).append((r, shape))
    lines = [_summary_line(*key, members) for key, members in groups.items()]
    return "\n".join(lines) + "\n"


def _summary_line(
    claim: str,
    quantity: str,
    series: str,
    paper: float | None,
    members: list[tuple[Any, dict[str, str]]],
) -> str:
    fmt = _share_pct if claim == "1" else _signed_pct
    kinds = ("batch", "input", "output", "rate", "session")
    kinds = [k for k in kinds if any(k in s for _, s in members)]
    fixed = [k for k in kinds if len({s.get(k) for _, s in members}) == 1]
    varying = [k for k in kinds if k not in fixed]
    what = _quantity_words(quantity)
    # A shape every comparison shares names the series, unless the quantity says it.
    shared = [members[0][1][k] for k in fixed if not what.endswith(members[0][1][k])]
    label = ", ".join([series] * bool(series) + shared)
    head = f"- Claim {claim}, {what}" if claim.isdigit() else f"- Beyond the study, {what}"
    head += f"; {label}" if label else ""
    head += f" (paper {paper_pct(paper)})" if paper is not None else ""
    measured = [(r, s) for r, s in members if not pd.isna(r.measured_value)]
    if not measured:
        return f"{head}: not measured."

    def at(r: Any, shape: dict[str, str]) -> str:
        value = fmt(r.measured_value)
        if not pd.isna(r.ci95_low):
            value += f" [{fmt(r.ci95_low)}, {fmt(r.ci95_high)}]"
        where = ", ".join(shape[k] for k in varying if k in shape)
        return f"{value} ({where})" if where else value

    low = min(measured, key=lambda m: m[0].measured_value)
    high = max(measured, key=lambda m: m[0].measured_value)
    values = at(*low) if low is high else f"{at(*low)} to {at(*high)}"
    counts: dict[str, int] = {}
    for r, _ in measured:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    n = len(measured)
    if n == 1:
        verdicts = _verdict_words(measured[0][0].verdict, 1)
    elif len(counts) == 1:
        verdicts = f"{n} of {n} {_verdict_words(next(iter(counts)), n)}"
    else:
        verdicts = f"{n} comparisons: " + ", ".join(
            f"{c} {_verdict_words(v, c)}" for v, c in counts.items()
        )
    return f"{head}: {values}; {verdicts}."


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def provenance(rows: pd.DataFrame, hardware: str) -> str:
    """Where a hardware label's rows come from, counted from the rows: how many measured
    rows, how many with independent trials, GPUs (by UUID), code commits and machine sessions
    (as the claims tell them apart)."""
    rows = rows[rows["hardware"] == hardware]
    measured = _measured(rows)
    uuids = rows.get("gpu_uuids", pd.Series(dtype=str)).dropna()
    gpus = {u for v in uuids for u in str(v).split(",")} - {""}
    commits = {str(c)[:7] for c in rows.get("git_commit", pd.Series(dtype=str)).dropna() if c}
    sessions = machine_sessions(measured).nunique()
    tried = measured[measured["trials"].notna()] if "trials" in measured else measured.iloc[:0]
    trials = tried["trials"] if len(tried) else pd.Series(dtype=float)
    with_trials = (
        f"{len(tried)} of them from {_count(machine_sessions(tried).nunique(), 'machine session')}"
        f" in {int(trials.min())} to {int(trials.max())} independent trials each, the others in "
        "one window each without an interval"
        if len(tried)
        else "none of them in independent trials (no intervals)"
    )
    return (
        f"{len(measured)} measured rows of `resources/measurements/{hardware}/`, {with_trials}; "
        f"the rows name {_count(len(gpus), 'GPU')} (by UUID), {_count(len(commits), 'commit')} "
        f"of the code and {_count(sessions, 'machine session')} as the claims tell them apart "
        "(rows written before `machine_session` existed are grouped by host and commit)."
    )


def block(text: str, name: str) -> str | None:
    """The text between ``<!-- NAME begin -->`` and ``<!-- NAME end -->``, or None."""
    m = re.search(_markers(name), text, flags=re.S)
    return None if m is None else m["body"]


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body``; the markers must be there."""
    pattern = re.compile(_markers(name), flags=re.S)
    if pattern.search(text) is None:
        raise InputError(f"no <!-- {name} begin --> ... <!-- {name} end --> block to fill")
    return pattern.sub(lambda m: m["begin"] + "\n" + body.rstrip("\n") + "\n" + m["end"], text)


def _markers(name: str) -> str:
    name = re.escape(name)
    return rf"(?P<begin><!-- {name} begin -->)\n?(?P<body>.*?)\n?(?P<end><!-- {name} end -->)"


def docs_block(table: pd.DataFrame, rows: pd.DataFrame, hardware: str) -> str:
    """The generated block that the claims page holds for one hardware label."""
    return (
        provenance(rows, hardware)
        + " Changes are relative (other / base − 1), in brackets their 95 % intervals.\n\n"
        + summary(table)
    )


def shipped_rows(root: Path, hardware: str) -> pd.DataFrame:
    """The measurements table that ``snakemake --config shipped_measurements=true`` aggregates
    for ``hardware``: every shipped table of the label, rows of other labels left out, read back
    from Parquet as the rules read it."""

    tables = sorted((Path(root) / "resources/measurements" / hardware).glob("*.parquet"))
    rows = aggregate.combine(tables)
    rows = rows[rows["hardware"] == hardware].reset_index(drop=True)
    return pd.read_parquet(io.BytesIO(rows.to_parquet(index=False)))


def shipped_workload_bins(config: dict, rows: pd.DataFrame, root: Path) -> pd.DataFrame | None:
    """The workload estimate's bins (``workload_energy_bins.csv``) that the shipped build makes
    from ``rows`` and the shipped summaries, or None where the configuration makes none."""
    from llm_energy.analysis.ideal import gpu
    from llm_energy.analysis.summaries import (
        SHIPPED_DIR,
        read_architecture_summary,
        read_trace_summary,
    )
    from llm_energy.analysis.workload_estimate import estimate_workloads, ideal_gpu_key
    from llm_energy.families import families, outputs

    # As the workflow decides (common.smk's available): the family enabled makes the table.
    name = "table_workload_energy"
    family = next(f for f in families().values() if outputs()[name] in f.outputs)
    estimates = config["experiments"][family.name]
    if not (estimates["enabled"] and family.makes(name, estimates)):
        return None
    traces = config["experiments"]["workload_traces"]
    summaries = Path(root) / SHIPPED_DIR
    binned = {
        t: read_trace_summary(summaries / "traces" / f"{t}.json").binning(
            traces["input_bins"], traces["output_bins"]
        )
        for t in traces["traces"]
    }
    architectures = {
        m: read_architecture_summary(summaries / "models" / f"{m}.json").architecture
        for m in estimates["models"]
    }
    return estimate_workloads(
        binned,
        rows,
        architectures,
        gpu(ideal_gpu_key(config)),
        engines=estimates["engines"],
        models=list(architectures),
        missing=estimates["missing_bins"],
    )


def shipped_workload_totals(config: dict, rows: pd.DataFrame, root: Path) -> pd.DataFrame | None:
    """The workload estimate's totals (``workload_energy.csv``) that the shipped build makes
    from ``rows`` and the shipped summaries, or None where the configuration makes none."""
    from llm_energy.analysis.workload_estimate import workload_totals

    bins = shipped_workload_bins(config, rows, root)
    return None if bins is None else workload_totals(bins)


def shipped_claims(config: dict, root: Path) -> pd.DataFrame:
    """The claims table that ``snakemake claims --config shipped_measurements=true`` writes
    for this validated configuration, computed in one process from the shipped tables."""
    rows = shipped_rows(root, config["hardware"])
    table = claims_table(rows)
    bins = shipped_workload_bins(config, rows, root)
    if bins is not None:
        table = pd.concat([table, workload_claims(bins)], ignore_index=True)
    return table
