"""Engines against each other: PyTorch with and without torch.compile, vLLM with and without
CUDA graphs (the study's Fig 5), and vLLM's continuous batching against static batches (Fig 9)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from llm_energy.figures.style import PALETTE, add_footer, log2_batch_axis, provenance_note, setup

SAMPLES = 1024  # the study normalises Fig 5 to 1,024 requests
# One hue per backend, dark for the optimised engine and light for the plain one.
ENGINE_STYLE = {
    "PyTorch, eager": ("#9ecae1", "--"),
    "PyTorch, torch.compile": ("#2171b5", "-"),
    "vLLM, eager": ("#fdae6b", "--"),
    "vLLM, CUDA graphs": ("#d94801", "-"),
}


def engine_label(row: pd.Series) -> str:
    if row["backend"] == "vllm":
        return "vLLM, CUDA graphs" if row["cuda_graphs"] else "vLLM, eager"
    return "PyTorch, torch.compile" if row["torch_compile"] else "PyTorch, eager"


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["engine_label"] = df.apply(engine_label, axis=1)
    return df


def table_engine_optimisations(df: pd.DataFrame, samples: int = SAMPLES) -> pd.DataFrame:
    """Energy and time of ``samples`` requests per engine and batch size (Fig 5's numbers);
    infeasible batches are kept with their reason."""
    rows = _with_labels(df[df["experiments"].str.contains("engine_optimisations")])
    if rows.empty:
        raise ValueError("no engine_optimisations rows in the measurements")
    rows[f"energy_{samples}_requests_j"] = rows["energy_per_request_j"] * samples
    rows[f"time_{samples}_requests_s"] = rows["duration_s"] / rows["batch_size"] * samples
    cols = [
        "model",
        "engine",
        "engine_label",
        "batch_size",
        "input_tokens",
        "output_tokens",
        "feasible",
        "error",
        f"energy_{samples}_requests_j",
        f"time_{samples}_requests_s",
        "energy_per_output_token_j",
        "mean_power_w",
        "energy_source",
        "gpu_name",
        "backend_version",
        "weights",
    ]
    return rows[cols].sort_values(["model", "engine_label", "batch_size"]).reset_index(drop=True)


def fig_engine_optimisations(df: pd.DataFrame, samples: int = SAMPLES) -> plt.Figure:
    """Energy of ``samples`` requests against batch size, one line per engine, with each
    PyTorch engine's largest feasible batch marked."""
    setup()
    table = table_engine_optimisations(df, samples)
    energy = f"energy_{samples}_requests_j"
    models = sorted(table["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), 4.4), squeeze=False)
    labels = sorted(table["engine_label"].unique())
    colours = dict(zip(labels, sns.color_palette(PALETTE, len(labels)), strict=True))
    for ax, model in zip(axes.flat, models, strict=True):
        sub = table[table["model"] == model]
        for label in labels:
            line = sub[(sub["engine_label"] == label) & sub["feasible"]].sort_values("batch_size")
            if line.empty:
                continue
            ax.plot(
                line["batch_size"],
                line[energy] / 1e3,
                marker="o",
                ms=4,
                lw=1.6,
                color=colours[label],
                label=label,
            )
            if label.startswith("PyTorch"):
                failed = sub[(sub["engine_label"] == label) & ~sub["feasible"]]
                if len(failed):
                    top = line.iloc[-1]
                    ax.axvline(top["batch_size"], color=colours[label], ls=":", lw=1.2)
                    ax.annotate(
                        f"largest feasible\n{label}: {int(top['batch_size'])}",
                        (top["batch_size"], top[energy] / 1e3),
                        textcoords="offset points",
                        xytext=(6, 10),
                        fontsize=7.5,
                        color=colours[label],
                    )
        log2_batch_axis(ax, sorted(sub["batch_size"].unique()))
        ax.set_yscale("log")
        shape = sub.iloc[0]
        ax.set_title(f"{model}: {samples:,} requests × {int(shape['output_tokens'])} tokens out")
        ax.set_ylabel(f"energy of {samples:,} requests (kJ)")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle("PyTorch compile off/on and vLLM CUDA graphs off/on (Fig 5)", fontweight="bold")
    add_footer(fig, provenance_note(df[df["experiments"].str.contains("engine_optim")]))
    fig.tight_layout()
    return fig


def table_online_serving(df: pd.DataFrame) -> pd.DataFrame:
    """Offline (static batches) against online (continuous batching) per engine, model and
    batch size: energy, time and the saving (E_off - E_on) / E_off."""
    rows = df[(df["experiments"].str.contains("online_serving")) & df["feasible"].astype(bool)]
    if rows.empty:
        raise ValueError("no feasible online_serving rows in the measurements")
    keys = ["model", "engine", "trace", "requests", "input_tokens", "output_tokens", "batch_size"]
    wide = rows.pivot_table(
        index=keys,
        columns="serving",
        values=["energy_j", "duration_s", "generated_tokens"],
        aggfunc="first",
    )
    if "offline" not in wide["energy_j"] or "online" not in wide["energy_j"]:
        raise ValueError("online_serving needs both offline and online rows")
    out = pd.DataFrame(index=wide.index)
    for what in ("energy_j", "duration_s"):
        out[f"offline_{what}"] = wide[(what, "offline")]
        out[f"online_{what}"] = wide[(what, "online")]
    out["generated_tokens"] = wide[("generated_tokens", "offline")]
    out["energy_saving"] = 1 - out["online_energy_j"] / out["offline_energy_j"]
    out["time_saving"] = 1 - out["online_duration_s"] / out["offline_duration_s"]
    out = out.reset_index()
    prov = rows.groupby(keys[:2], as_index=False)[["energy_source", "gpu_name", "backend_version"]]
    return out.merge(prov.first(), on=keys[:2]).dropna(subset=["energy_saving"])


def fig_online_serving(df: pd.DataFrame) -> plt.Figure:
    """The energy and time saved by continuous batching, per batch size."""
    setup()
    table = table_online_serving(df)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = list(table.groupby(["model", "engine"]))
    colours = sns.color_palette(PALETTE, max(len(groups), 2))
    width = 0.8 / len(groups)
    batch_sizes = sorted(table["batch_size"].unique())
    x = np.arange(len(batch_sizes))
    for ax, col, what in zip(
        axes, ("energy_saving", "time_saving"), ("energy", "time"), strict=True
    ):
        for k, ((model, engine), sub) in enumerate(groups):
            sub = sub.set_index("batch_size").reindex(batch_sizes)
            ax.bar(
                x + (k - (len(groups) - 1) / 2) * width,
                100 * sub[col],
                width,
                color=colours[k],
                label=f"{model}, {engine}",
            )
        ax.axhline(0, color="0.2", lw=0.8)
        ax.set_xticks(x, [str(b) for b in batch_sizes])
        ax.set_xlabel("batch size (requests in flight per GPU)")
        ax.set_ylabel(f"{what} saved online (%)")
        ax.set_title(f"(offline − online) / offline {what}")
    axes[0].legend(frameon=False, fontsize=8)
    first = table.iloc[0]
    fig.suptitle(
        f"Continuous batching against static batches (Fig 9): {int(first['requests'])} requests, "
        f"{int(first['input_tokens'])} tokens in, output lengths from {first['trace']} "
        f"(≤ {int(first['output_tokens'])})",
        fontweight="bold",
    )
    add_footer(fig, provenance_note(df[df["experiments"].str.contains("online_serving")]))
    fig.tight_layout()
    return fig
