"""How well the GPU-time plan's time model (:class:`llm_energy.analysis.gpu_hours.TimeModel`)
times the rows it is fitted to, per (GPU, model, engine) with four or more fittable rows: the
relative error of a batch's full duration in the fit to every row (in sample), and with each
row left out of the fit that predicts it (leave-one-out, what a plan of an unmeasured point
can expect at a measured shape's neighbours).

    python benchmarks/time_model_fit.py TABLE.parquet [TABLE.parquet ...] [--out TABLE.md]
    python benchmarks/time_model_fit.py TABLE.parquet ... --held-out NEW.parquet [--out NEW.md]
    python benchmarks/time_model_fit.py TABLE.parquet ... --task-lengths DIR [--traces DIR]

Each form takes ``--unweighted``: the fit with every row at the same weight, beside which the
plan's fit (each duration weighted by its inverse) can be read. ``--task-lengths`` also takes
``--padded``: every backend's batch padded to its longest prompt and output, in static batches
online too, as the plan timed vLLM's streams before it served each request at its own lengths.

The plan printed before a job is the sum of such predictions over its points; where the error
is wide, so is the plan. With ``--held-out``, the models fitted to the tables alone (the rows
a plan had before a job) time each row of the new table of the same GPU, model and engine:
its measured over its predicted time per batch, whether it lies past the fitted rows' most
prompt or generated tokens of one batch (the plan counts those as extrapolated), and the sum
over the rows. With ``--task-lengths`` (the task_lengths rule's folder), each classical-task row
of the tables (of ``--held-out`` where given), and with ``--traces`` (the prepare_trace rule's
folder) each trace stream's row too, is timed as the plan times a stream that no row measured:
the requests the job draws, as its backend serves them (static batches padded to their longest
prompt and output; on vLLM each request at its own lengths, online by continuous batching), by
the model of its GPU, model and engine fitted to the batch rows (never to stream rows); beside it,
the time at the stream's length caps, which the plan took before it read the lengths. A
benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from llm_energy.analysis.gpu_hours import (
    LENGTHS_SCALE_MIN_STREAMS,
    TimeModel,
    batched_stream_s,
    fittable,
    sequences_per_batch,
    stream_point,
    stream_request_seconds,
    stream_rows,
    stream_seconds_per_request,
)
from llm_energy.backends import pads_batches
from llm_energy.inputs.prompts import TraceLengths
from llm_energy.measure.job import ProtocolSpec


def _errors(model: TimeModel, rows: pd.DataFrame) -> np.ndarray:
    shapes = zip(
        sequences_per_batch(rows), rows["input_tokens"], rows["output_tokens"], strict=True
    )
    predicted = np.array([model.full_s(int(b), int(i), int(o)) for b, i, o in shapes])
    return predicted / rows["duration_s"].to_numpy(float) - 1


def _left_out_error(group: pd.DataFrame, k: int, weighted: bool) -> float:
    """|Relative error| of row ``k`` by the fit to the other rows of ``group``."""
    model = TimeModel.fit(group.drop(index=k), weighted=weighted)
    return float(abs(_errors(model, group.iloc[[k]])[0]))


def fit_errors(rows: pd.DataFrame, *, weighted: bool = True) -> pd.DataFrame:
    """One line per (GPU, model, engine): rows fitted, median and largest |relative error| in
    sample and left out."""
    lines = []
    for (gpu, model, engine), group in fittable(rows).groupby(["gpu_name", "model", "engine"]):
        group = group.reset_index(drop=True)
        if len(group) < 4:
            continue
        inside = np.abs(_errors(TimeModel.fit(group, weighted=weighted), group))
        left_out = np.array(
            [_left_out_error(group, k, weighted) for k in range(len(group))]
            if len(group) > 4
            else [np.nan]
        )
        lines.append(
            {
                "gpu": gpu,
                "model": model,
                "engine": engine,
                "rows": len(group),
                "median_error_in_sample": float(np.median(inside)),
                "max_error_in_sample": float(inside.max()),
                "median_error_left_out": float(np.nanmedian(left_out)),
                "max_error_left_out": float(np.nanmax(left_out)),
            }
        )
    return pd.DataFrame(lines)


def held_out(rows: pd.DataFrame, new: pd.DataFrame, *, weighted: bool = True) -> pd.DataFrame:
    """Each fittable row of ``new`` timed by the model of its (GPU, model, engine) fitted to
    ``rows``: predicted and measured seconds per batch, their ratio, and whether the row lies
    past the fitted rows' reach."""
    rows, new = fittable(rows), fittable(new)
    lines = []
    for key, group in new.groupby(["gpu_name", "model", "engine"]):
        gpu, model_name, engine = key
        fitted = rows[
            (rows["gpu_name"] == gpu) & (rows["model"] == model_name) & (rows["engine"] == engine)
        ]
        if len(fitted) < 4:
            continue
        model = TimeModel.fit(fitted, weighted=weighted)
        sequences = sequences_per_batch(group)
        for b, (_, r) in zip(sequences, group.iterrows(), strict=True):
            i, o = int(r["input_tokens"]), int(r["output_tokens"])
            predicted = model.full_s(int(b), i, o)
            lines.append(
                {
                    "engine": engine,
                    "batch_size": int(r["batch_size"]),
                    "input_tokens": i,
                    "output_tokens": o,
                    "predicted_s": round(predicted, 3),
                    "measured_s": round(float(r["duration_s"]), 3),
                    "measured_over_predicted": round(float(r["duration_s"]) / predicted, 3),
                    "past_fitted_rows": model.past(int(b), i, o),
                }
            )
    return pd.DataFrame(lines)


def held_out_streams(rows: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Each request-stream row of ``new`` (a classical task's examples, a trace's requests)
    timed as the plan times it, by the time per request that ``rows`` of its GPU, model and
    engine measured for the same stream at the same batch, else at the nearest smaller one:
    predicted and measured seconds of one repetition (the whole stream), their ratio, and the
    batch the prediction comes from."""
    lines = []
    new = new[new["feasible"].astype(bool) & new["duration_s"].notna()]
    for (gpu, model_name, engine), group in new.groupby(["gpu_name", "model", "engine"]):
        same = rows[
            (rows["gpu_name"] == gpu) & (rows["model"] == model_name) & (rows["engine"] == engine)
        ]
        times = stream_request_seconds(same)
        mine = stream_request_seconds(group)
        for stream, batches in mine.items():
            for batch, measured_per_request in batches.items():
                per_request, timed_at = stream_seconds_per_request(times, stream, batch)
                if timed_at is None:
                    continue
                trace, serving, cap_in, cap_out = stream
                requests = group.loc[
                    (group["trace"] == trace)
                    & (group["serving"] == serving)
                    & (group["input_tokens"] == cap_in)
                    & (group["output_tokens"] == cap_out)
                    & (group["batch_size"] == batch),
                    "requests",
                ].iloc[0]
                lines.append(
                    {
                        "engine": engine,
                        "stream": stream[0],
                        "batch_size": batch,
                        "requests": int(requests),
                        "predicted_s": round(per_request * requests, 3),
                        "measured_s": round(measured_per_request * requests, 3),
                        "measured_over_predicted": round(measured_per_request / per_request, 3),
                        "timed_at_batch": timed_at,
                    }
                )
    return pd.DataFrame(lines)


def stream_lengths_timed(
    rows: pd.DataFrame,
    tasks: pd.DataFrame,
    lengths: TraceLengths,
    *,
    weighted: bool = True,
    padded: bool = False,
) -> pd.DataFrame:
    """Each request-stream row of ``tasks`` (classical tasks and traces, offline and online;
    binned replays left out) timed by its requests' ``lengths``
    (:func:`~llm_energy.analysis.gpu_hours.batched_stream_s`, the protocol's default seed, as
    the shipped jobs drew them, as its backend serves them) with the model of its GPU,
    model and engine fitted to the batch rows of ``rows``; and at its length caps. Seconds of
    one repetition (the whole stream)."""
    tasks = stream_rows(tasks)
    lines = []
    for (gpu, model_name, engine), group in tasks.groupby(["gpu_name", "model", "engine"]):
        fitted = fittable(rows)
        fitted = fitted[
            (fitted["gpu_name"] == gpu)
            & (fitted["model"] == model_name)
            & (fitted["engine"] == engine)
        ]
        if len(fitted) < 4:
            continue
        model = dataclasses.replace(
            TimeModel.fit(fitted, weighted=weighted),
            stream_lengths=lengths,
            padded_batches=padded or pads_batches(str(group["backend"].iloc[0])),
        )
        for r in group.itertuples(index=False):
            point = stream_point(r)
            predicted = batched_stream_s(model, point, ProtocolSpec().seed)
            if math.isnan(predicted):
                continue
            batches = math.ceil(point.stream.requests / point.batch_size)
            at_caps = model.full_s(point.batch_size, point.input_tokens, point.output_tokens)
            lines.append(
                {
                    "engine": engine,
                    "stream": point.stream.trace,
                    "serving": point.stream.serving,
                    "batch_size": point.batch_size,
                    "requests": point.stream.requests,
                    "predicted_s": round(predicted, 3),
                    "at_caps_s": round(at_caps * batches, 3),
                    "measured_s": round(float(r.duration_s), 3),
                    "measured_over_predicted": round(float(r.duration_s) / predicted, 3),
                }
            )
    return pd.DataFrame(lines)


def stream_lengths_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "no request-stream row is timed by the fitted rows' models and the lengths\n"
    table = table.sort_values(["engine", "serving", "stream", "batch_size", "requests"])
    lines = [f"{table.to_markdown(index=False)}\n"]
    for (engine, serving), rows in table.groupby(["engine", "serving"]):
        ratios = rows["measured_over_predicted"]
        lines.append(
            f"{engine}, {serving}: {len(rows)} rows, measured over predicted {ratios.min():.2f} to "
            f"{ratios.max():.2f} (median {ratios.median():.2f}); "
            f"{rows['measured_s'].sum() / rows['predicted_s'].sum():.2f} of the predicted time "
            f"in sum, {rows['measured_s'].sum() / rows['at_caps_s'].sum():.3f} of the time at "
            "the length caps"
        )
    scaled_lines, by_batch_lines = [], []
    for engine, rows in table.groupby("engine"):
        ratios = rows["measured_over_predicted"].to_numpy()
        if len(ratios) <= LENGTHS_SCALE_MIN_STREAMS:  # the others must be enough to scale
            continue
        scales = left_out_scales(ratios)
        scaled_lines.append(_scaled_line(engine, rows, scales))
        by_batch = left_out_scales(ratios, rows["batch_size"].to_numpy())
        by_batch_lines.append(_scaled_line(engine, rows, by_batch))
    if scaled_lines:
        lines.append(
            "\nScaled as the plan scales them (each row's prediction by the median of what the "
            "engine's other streams took over theirs; the plan's scale is the median of all of "
            "an engine's measured streams, at least three):\n"
        )
        by_batch_lines.insert(
            0,
            "\nScaled by batch size instead (each row's prediction by the median of what the "
            f"engine's other streams at its batch size took over theirs, where "
            f"{LENGTHS_SCALE_MIN_STREAMS} or more are measured, else as above):\n",
        )
    return "\n".join(lines + scaled_lines + by_batch_lines) + "\n"


def left_out_scales(ratios: np.ndarray, batch_sizes: np.ndarray | None = None) -> np.ndarray:
    """Each stream's scale from the others' measured-over-predicted ratios: their median, or,
    given ``batch_sizes``, the median of those at its batch size where
    :data:`LENGTHS_SCALE_MIN_STREAMS` or more are, else of all of them."""
    scales = []
    for k in range(len(ratios)):
        others = np.delete(ratios, k)
        if batch_sizes is not None:
            same = others[np.delete(batch_sizes, k) == batch_sizes[k]]
            if len(same) >= LENGTHS_SCALE_MIN_STREAMS:
                others = same
        scales.append(np.median(others))
    return np.array(scales)


def _scaled_line(engine: str, rows: pd.DataFrame, scales: np.ndarray) -> str:
    scaled = rows["measured_over_predicted"].to_numpy() / scales
    predicted = (rows["predicted_s"].to_numpy() * scales).sum()
    error = np.abs(scaled - 1)
    return (
        f"{engine}: {len(rows)} rows, measured over scaled predicted {scaled.min():.2f} to "
        f"{scaled.max():.2f} (median {np.median(scaled):.2f}; off by {np.median(error):.1%} "
        f"in the median, {error.max():.1%} at most); "
        f"{rows['measured_s'].sum() / predicted:.2f} of the scaled predicted time in sum"
    )


def held_out_markdown(table: pd.DataFrame, streams: pd.DataFrame | None = None) -> str:
    parts = []
    if len(table):
        parts.append(_batches_markdown(table))
    if streams is not None and len(streams):
        total = streams["measured_s"].sum() / streams["predicted_s"].sum()
        parts.append(
            f"{streams.to_markdown(index=False)}\n\n"
            f"request streams: {total:.2f} of the predicted time per repetition in sum\n"
        )
    if not parts:
        return "no row of the held-out table is timed by the fitted rows' models\n"
    return "\n".join(parts)


def _batches_markdown(table: pd.DataFrame) -> str:
    total = table["measured_s"].sum() / table["predicted_s"].sum()
    past = table[table["past_fitted_rows"]]
    summary = f"all rows: {total:.2f} of the predicted time per batch in sum"
    if len(past):
        summary += (
            f"; {len(past)} of {len(table)} rows past the fitted rows, "
            f"{past['measured_s'].sum() / past['predicted_s'].sum():.2f} of it in sum"
        )
    return f"{table.to_markdown(index=False)}\n\n{summary}\n"


def markdown(table: pd.DataFrame) -> str:
    head = (
        "| GPU | model | engine | rows | median error, in sample | largest | "
        "median error, left out | largest |\n|---|---|---|---|---|---|---|---|\n"
    )

    def pct(v: float) -> str:
        return "—" if np.isnan(v) else f"{100 * v:.1f} %"

    return head + "".join(
        f"| {r.gpu} | {r.model} | {r.engine} | {r.rows} | {pct(r.median_error_in_sample)} | "
        f"{pct(r.max_error_in_sample)} | {pct(r.median_error_left_out)} | "
        f"{pct(r.max_error_left_out)} |\n"
        for r in table.itertuples(index=False)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path)
    parser.add_argument("--held-out", type=Path, help="a table timed by the others' models")
    parser.add_argument(
        "--task-lengths",
        type=Path,
        help="the classical tasks' request lengths (TASK.parquet): time the task rows by them",
    )
    parser.add_argument(
        "--unweighted",
        action="store_true",
        help="fit every row at the same weight, as the plan did before it weighted durations",
    )
    parser.add_argument(
        "--traces",
        type=Path,
        help="with --task-lengths: the prepared traces (TRACE.parquet), to time trace streams too",
    )
    parser.add_argument(
        "--padded",
        action="store_true",
        help="with --task-lengths: pad every backend's batches, as the plan did vLLM's before",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    weighted = not args.unweighted
    tables = [
        p for p in args.tables if args.held_out is None or p.resolve() != args.held_out.resolve()
    ]
    rows = pd.concat([pd.read_parquet(p) for p in tables], ignore_index=True)
    if args.task_lengths is not None:
        lengths = TraceLengths(args.traces or args.task_lengths, args.task_lengths)
        tasks = rows if args.held_out is None else pd.read_parquet(args.held_out)
        text = stream_lengths_markdown(
            stream_lengths_timed(rows, tasks, lengths, weighted=weighted, padded=args.padded)
        )
    elif args.held_out is not None:
        new = pd.read_parquet(args.held_out)
        text = held_out_markdown(
            held_out(rows, new, weighted=weighted), held_out_streams(rows, new)
        )
    else:
        text = markdown(fit_errors(rows, weighted=weighted))
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
