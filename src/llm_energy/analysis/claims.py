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

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd

from llm_energy.analysis.paper import CLAIMS
from llm_energy.measure.health import FLAGS, row_flags

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


@dataclass(frozen=True)
class Comparison:
    quantity: str
    condition: str
    value: float
    half_width: float
    rows: str
    protocol_met: bool = True
    gpu_flags: str = ""


def _tagged(df: pd.DataFrame, tag: str) -> pd.DataFrame:
    tags = df["experiments"].astype(str).str.split("+")
    return df[tags.map(lambda t: tag in t)]


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["feasible"].astype(bool) & (df["repetitions"].fillna(0) > 0)]


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


def relative_change(
    base: pd.DataFrame,
    other: pd.DataFrame,
    on: Sequence[str],
    quantity: str = "energy_j",
    label: str = "",
) -> Iterator[Comparison]:
    """``other / base - 1`` of ``quantity`` for every key of ``on`` that both hold."""
    base = _measured(base).drop_duplicates(list(on)).set_index(list(on))
    other = _measured(other).drop_duplicates(list(on)).set_index(list(on))
    for key in sorted(set(base.index) & set(other.index)):
        a, b = base.loc[key], other.loc[key]
        key = key if isinstance(key, tuple) else (key,)
        ratio = float(b[quantity]) / float(a[quantity])
        rel_a = _half(a, quantity) / float(a[quantity])
        rel_b = _half(b, quantity) / float(b[quantity])
        condition = ", ".join(f"{k} {v}" for k, v in zip(on, key, strict=True))
        yield Comparison(
            quantity,
            f"{label}{condition}",
            ratio - 1,
            ratio * math.hypot(rel_a, rel_b),
            f"{a['point_id']} {b['point_id']}",
            _met(a, b),
            _flags(a, b),
        )


def _verdict(
    c: Comparison, paper: float, sign: int, low: float, high: float, reference: float
) -> str:
    if not c.protocol_met:
        return "inconclusive: a row did not meet the protocol"
    if c.gpu_flags:
        return f"inconclusive: a row's GPU health is {c.gpu_flags}"
    return verdict(paper, sign, c.value, low, high, reference)


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
    shares = []
    for _, r in sweep.iterrows():
        if r["output_tokens"] >= 64 and r["energy_j"] > 0 and not pd.isna(r["decode_energy_j"]):
            share = float(r["decode_energy_j"] / r["energy_j"])
            shares.append(
                Comparison(
                    "energy_j",
                    f"{r['engine']}, batch {r['batch_size']}, {r['input_tokens']} in, "
                    f"{r['output_tokens']} out",
                    share,
                    share * _half(r, "energy_j") / float(r["energy_j"]),
                    str(r["point_id"]),
                    _met(r),
                    _flags(r),
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
    return pd.DataFrame(rows, columns=list(COLUMNS))


def workload_claims(totals: pd.DataFrame) -> pd.DataFrame:
    """Claim 8 from the workload estimate's totals (``workload_energy.csv``): each trace's
    energy on vLLM against PyTorch. The estimate sums measured batches; it has no interval."""
    rows = []
    for trace, group in totals.groupby("trace"):
        by_engine = group.set_index("engine")["energy_j"]
        if "pytorch" not in by_engine or "vllm" not in by_engine:
            continue
        change = float(by_engine["vllm"] / by_engine["pytorch"] - 1)
        key = f"fall_{trace}"
        if key not in CLAIMS["8"]:
            continue
        paper, sign, what, reference = CLAIMS["8"][key]
        rows.append(
            {
                "claim": "8",
                "quantity": f"{what} (energy_j, binned estimate)",
                "condition": f"{trace}, vllm against pytorch",
                "paper_value": paper,
                "measured_value": change,
                "ci95_low": math.nan,
                "ci95_high": math.nan,
                "verdict": verdict(paper, sign, change, math.nan, math.nan, reference),
                "rows": "workload_energy.csv",
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def markdown(table: pd.DataFrame, hardware: str) -> str:
    """The claims table as the Markdown page the docs quote."""

    def pct(v: float) -> str:
        return "" if v is None or pd.isna(v) else f"{100 * v:+.1f} %"

    def share(v: float) -> str:
        return "" if v is None or pd.isna(v) else f"{100 * v:.1f} %"

    lines = [
        f"# The study's claims on {hardware}",
        "",
        "Computed by `llm_energy.analysis.claims` from the measurements table; changes are "
        "relative (other / base - 1), with 95 % intervals where the rows have trials.",
        "",
        "| claim | quantity | condition | paper | measured | 95 % interval | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        # Claim 1 compares a share with one half; the others are relative changes.
        fmt = share if r.claim == "1" else pct
        interval = "" if pd.isna(r.ci95_low) else f"{fmt(r.ci95_low)} to {fmt(r.ci95_high)}"
        lines.append(
            f"| {r.claim} | {r.quantity} | {r.condition} | {fmt(r.paper_value)} | "
            f"{fmt(r.measured_value)} | {interval} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"
