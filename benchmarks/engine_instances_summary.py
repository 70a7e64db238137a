"""Markdown summary of benchmarks/engine_instances.py's tables.

    python benchmarks/engine_instances_summary.py ROWS.parquet [ENGINE_START.csv [LOG.txt]]

Per engine and batch, for energy per batch (J) and seconds per batch: each instance's mean over
its windows; the mean, min and max of those instance means and their coefficient of variation
(CV between); the within-instance spread, as the pooled standard deviation of the windows
around their own instance's mean over the grand mean (CV within); and the ratio of the standard
deviation of the instance means to the one that within-instance spread alone would give them
(pooled SD / sqrt(windows per instance)). A ratio near 1 says engine instances add nothing to
the spread of windows; its square is the one-way ANOVA F statistic, whose p-value is shown
alongside. With the start table: seconds from process start to a loaded engine for
the measurement jobs, and the bare vLLM starts (import and ``LLM()`` apart). With the log:
each vLLM start by phase. Also how the second window of each instance compares with the first.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pandas as pd

ORDER = {"pytorch": 0, "vllm-eager": 1, "vllm": 2}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _f_p(f: float, dfn: int, dfd: int) -> float:
    """P(F > f) for the F distribution with (dfn, dfd) degrees of freedom."""
    if dfn <= 0 or dfd <= 0 or math.isnan(f):
        return math.nan
    return _betainc(dfd / 2.0, dfn / 2.0, dfd / (dfd + dfn * f))


def spread(table: pd.DataFrame, column: str) -> dict[str, float]:
    """Between- and within-instance spread of ``column`` over the windows of ``table``
    (one engine, one batch)."""
    groups = table.groupby("engine_instance")[column]
    means = groups.mean()
    sizes = groups.size()
    grand = float(means.mean())
    dev = table[column] - table["engine_instance"].map(means)
    df_within = int((sizes - 1).sum())
    within_sd = math.sqrt(float((dev**2).sum()) / df_within) if df_within > 0 else math.nan
    between_sd = float(means.std(ddof=1)) if len(means) > 1 else math.nan
    w = len(sizes) / float((1.0 / sizes).sum())  # harmonic mean of windows per instance
    ratio = between_sd / (within_sd / math.sqrt(w)) if within_sd > 0 else math.nan
    return {
        "instances": len(means),
        "windows": w,
        "mean": grand,
        "min": float(means.min()),
        "max": float(means.max()),
        "cv_between": between_sd / grand,
        "cv_within": within_sd / grand,
        "ratio": ratio,
        "p": _f_p(ratio**2, len(means) - 1, df_within),
        "values": means.tolist(),
    }


def _fmt(x: float, digits: int) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f} %"


def _cells(table: pd.DataFrame) -> list[tuple[str, int, pd.DataFrame]]:
    cells = []
    for (engine, batch), t in table.groupby(["engine", "batch_size"]):
        cells.append((str(engine), int(batch), t))
    return sorted(cells, key=lambda c: (ORDER.get(c[0], 9), c[1]))


def measurement_tables(rows: pd.DataFrame) -> str:
    ok = rows[rows["feasible"].astype(bool) & (rows["repetitions"] > 0)]
    out = []
    for column, what, digits in (
        ("energy_j", "Energy per batch (J)", 1),
        ("duration_s", "Seconds per batch", 3),
    ):
        out.append(f"**{what}**, each instance the mean of its windows\n")
        out.append(
            "| engine | batch | instances | windows each | mean | min | max | CV between "
            "| CV within | between / within | p (F test) |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for _engine, batch, t in _cells(ok):
            s = spread(t, column)
            label = t["engine_label"].iloc[0]
            out.append(
                f"| {label} | {batch} | {s['instances']} | {s['windows']:.0f} | "
                f"{_fmt(s['mean'], digits)} | {_fmt(s['min'], digits)} | "
                f"{_fmt(s['max'], digits)} | {_pct(s['cv_between'])} | {_pct(s['cv_within'])} | "
                f"{_fmt(s['ratio'], 1)} | {_fmt(s['p'], 3)} |"
            )
        out.append("")
    out.append("**Per instance** (mean of its windows, instances in order of start)\n")
    out.append("| engine | batch | J per batch | s per batch | CV of repetitions in a window |")
    out.append("|---|---|---|---|---|")
    for _engine, batch, t in _cells(ok):
        t = t.sort_values(["engine_instance", "window"])
        e = " / ".join(f"{v:.0f}" for v in t.groupby("engine_instance")["energy_j"].mean())
        d = " / ".join(f"{v:.3f}" for v in t.groupby("engine_instance")["duration_s"].mean())
        reps = (t["duration_std_s"] / t["duration_s"]).median()
        out.append(
            f"| {t['engine_label'].iloc[0]} | {batch} | {e} | {d} | median {_pct(float(reps))} |"
        )
    out.append("")
    return "\n".join(out)


def start_table(starts: pd.DataFrame) -> str:
    out = ["**Engine start** (seconds; mean, with min-max over processes)\n"]
    out.append(
        "| engine | start | processes | process start to engine loaded | import + construction "
        "| import | construction | vLLM init engine | vLLM compile |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")

    def cell(values: pd.Series, digits: int = 1) -> str:
        v = values.dropna()
        if v.empty:
            return "n/a"
        if len(v) == 1:
            return f"{v.iloc[0]:.{digits}f}"
        return f"{v.mean():.{digits}f} ({v.min():.{digits}f}-{v.max():.{digits}f})"

    def col(t: pd.DataFrame, name: str) -> pd.Series:
        return t[name] if name in t else pd.Series(dtype=float)

    starts = starts.assign(_o=starts["engine"].map(ORDER).fillna(9))
    for (_, _engine, kind), t in starts.groupby(["_o", "engine", "kind"]):
        label = t["engine_label"].iloc[0]
        if kind == "job":
            what = "measurement job"
            both, imp, build = cell(col(t, "job_load_s")), "n/a", "n/a"
        else:
            what = "bare `LLM()`"
            both = cell(col(t, "import_s") + col(t, "llm_init_s"))
            imp, build = cell(col(t, "import_s")), cell(col(t, "llm_init_s"))
        out.append(
            f"| {label} | {what} | {len(t)} | {cell(col(t, 'to_loaded_s'))} | {both} | {imp} "
            f"| {build} | {cell(col(t, 'vllm_init_engine_s'))} | {cell(col(t, 'vllm_compile_s'))} |"
        )
    out.append("")
    out.append("**Each start** (seconds, in order of start)\n")
    out.append(
        "| order | engine | start | instance | process start to engine loaded | import "
        "| construction | job's load | vLLM init engine | vLLM compile | compile cache hit "
        "| CUDA-graph capture |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for _, r in starts.sort_values("order").iterrows():

        def v(name: str, row: pd.Series = r) -> str:
            x = row.get(name, math.nan)
            return "n/a" if pd.isna(x) else f"{float(x):.1f}"

        compiled = r["engine"] == "vllm"
        out.append(
            f"| {r['order']} | {r['engine_label']} | {r['kind']} "
            f"| {r['engine_instance'] if r['kind'] == 'job' else '-'} | {v('to_loaded_s')} "
            f"| {v('import_s')} | {v('llm_init_s')} | {v('job_load_s')} "
            f"| {v('vllm_init_engine_s')} | {v('vllm_compile_s')} "
            f"| {('yes' if bool(r['compile_cache_hit']) else 'no') if compiled else 'n/a'} "
            f"| {v('vllm_graph_capture_s')} |"
        )
    out.append("")
    return "\n".join(out)


# Lines of the driver's log ("[TAG +SECONDS s] TEXT") that end each phase of a vLLM start.
PHASES = (
    ("import", re.compile(r"non-default args: ")),
    ("to engine core", re.compile(r"Initializing a V1 LLM engine")),
    ("engine-core init", re.compile(r"init engine \(profile, create kv cache")),
    ("until loaded", re.compile(r"^loaded .* on \S+ in |^BARE_RESULT ")),
)
LINE = re.compile(r"^\[(bare [\w-]+|[\w-]+ i\d+) \+\s*([\d.]+)s\] (.*)$")


def start_phases(log_path: str) -> str:
    """Seconds in each phase of each vLLM process's start, from the log's timestamps: the
    import (until vLLM's first line, from ``LLM()``), ``LLM()`` until the engine-core process's
    first line (its start: spawned by the jobs, forked by a bare start), the engine core's own
    init (until its 'init engine' line), and the rest until the engine is loaded."""
    marks: dict[str, dict[str, float]] = {}
    with open(log_path) as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            tag, t, text = m.group(1), float(m.group(2)), m.group(3)
            got = marks.setdefault(tag, {})
            for name, pat in PHASES:
                if name not in got and pat.search(text):
                    got[name] = t
    rows = []
    for tag, got in marks.items():
        if len(got) < len(PHASES):
            continue  # not a vLLM process, or one that did not finish starting
        engine = tag.split()[1] if tag.startswith("bare ") else tag.split()[0]
        kind = "bare `LLM()`" if tag.startswith("bare ") else "measurement job"
        ends = [got[name] for name, _ in PHASES]
        rows.append(
            {"engine": engine, "kind": kind, "tag": tag}
            | {name: e - b for (name, _), e, b in zip(PHASES, ends, [0.0, *ends[:-1]], strict=True)}
            | {"total": ends[-1]}
        )
    if not rows:
        return ""
    table = pd.DataFrame(rows)
    table["_o"] = table["engine"].map(ORDER).fillna(9)
    out = [
        "**vLLM start by phase** (seconds, from the log's timestamps; each process)\n",
        "| engine | start | process | import | `LLM()` until the engine core's first line "
        "| engine-core init "
        "| rest until loaded | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.sort_values(["_o", "kind", "tag"]).iterrows():
        out.append(
            f"| {r['engine']} | {r['kind']} | {r['tag']} | {r['import']:.1f} "
            f"| {r['to engine core']:.1f} | {r['engine-core init']:.1f} "
            f"| {r['until loaded']:.1f} | {r['total']:.1f} |"
        )
    out.append("")
    return "\n".join(out)


def window_order(rows: pd.DataFrame) -> str:
    """Window 1 against window 0 of the same instance (window 0 always ran first)."""
    ok = rows[rows["feasible"].astype(bool) & (rows["repetitions"] > 0)]
    out = [
        "**Second window against the first, same instance** (window 1 / window 0 - 1)\n",
        "| engine | batch | energy: mean (min to max) | time: mean (min to max) |",
        "|---|---|---|---|",
    ]
    for _engine, batch, t in _cells(ok):
        w = t.pivot_table(
            index="engine_instance", columns="window", values=["energy_j", "duration_s"]
        )
        if 0 not in w["energy_j"] or 1 not in w["energy_j"]:
            continue
        e = w["energy_j"][1] / w["energy_j"][0] - 1
        d = w["duration_s"][1] / w["duration_s"][0] - 1
        out.append(
            f"| {t['engine_label'].iloc[0]} | {batch} "
            f"| {100 * e.mean():+.1f} % ({100 * e.min():+.1f} to {100 * e.max():+.1f}) "
            f"| {100 * d.mean():+.1f} % ({100 * d.min():+.1f} to {100 * d.max():+.1f}) |"
        )
    out.append("")
    return "\n".join(out)


def markdown(rows_path: str, starts_path: str | None = None, log_path: str | None = None) -> str:
    rows = pd.read_parquet(rows_path)
    text = measurement_tables(rows) + "\n" + window_order(rows)
    if starts_path:
        text += "\n" + start_table(pd.read_csv(starts_path))
    if log_path:
        text += "\n" + start_phases(log_path)
    return text


def main() -> None:
    if len(sys.argv) not in (2, 3, 4):
        sys.exit(__doc__)
    print(markdown(*sys.argv[1:]))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
