"""The columns of a measurement table: name, unit and meaning, as data.

``python -m llm_energy.measure.columns > docs/COLUMNS.md`` writes the reference page from it;
the aggregate's required columns come from here too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of a measurement row. ``required``: every measurement table has it (the
    aggregate refuses a table without it). A name with ``{...}`` stands for a family of
    columns."""

    name: str
    unit: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    columns: tuple[Column, ...]


IDENTITY = Section(
    "Identity of the point",
    "What was measured: the job, the engine, the decoding strategy and the shape.",
    (
        Column(
            "experiments",
            "",
            "experiment families the point serves (`input_sweep`, `output_sweep`, `decoding`, "
            "`architectures`, `engine_optimisations`, `online_serving`, `speculative`, "
            "`tensor_parallel`, `classical_tasks`, `workload_estimates`, `trace_replay`, "
            "`served_traces`), "
            "joined by `+`",
        ),
        Column("group", "", "the job (`{model}__{engine}`)", required=True),
        Column("hardware", "", "hardware label of the configuration"),
        Column("device", "", "torch device (`cuda`, `cpu`)"),
        Column("model", "", "short name of the model", required=True),
        Column("hub_id", "", "Hugging Face id of the model"),
        Column("weights", "", "`random` or `pretrained`", required=True),
        Column("architecture_hash", "", "hash of config.json's architecture keys"),
        Column("engine", "", "engine name of the configuration"),
        Column(
            "backend",
            "",
            "`transformers`, `vllm`, or `vllm_server` (vLLM behind `vllm serve`, over HTTP)",
            required=True,
        ),
        Column("torch_compile", "", "static KV cache and `torch.compile` (transformers)"),
        Column("cuda_graphs", "", "CUDA graphs on (vLLM; off is `enforce_eager`)"),
        Column("tensor_parallel_size", "GPUs", "GPUs the engine is split over"),
        Column("dtype", "", "weights' and activations' dtype"),
        Column("decoding", "", "decoding strategy's name in the configuration", required=True),
        Column("decoding_strategy", "", "`greedy`, `beam` or `sample`"),
        Column("num_beams", "", "beams of beam search"),
        Column("temperature", "", "sampling temperature (NaN when not sampling)"),
        Column("top_p", "", "nucleus sampling's p (NaN when not set)"),
        Column("batch_size", "sequences", "sequences per batch", required=True),
        Column("input_tokens", "tokens", "prompt length", required=True),
        Column("output_tokens", "tokens", "generated tokens per sequence", required=True),
        Column(
            "serving",
            "",
            "`batch` for a fixed-shape batch; `offline` (static batches) or `online` "
            "(continuous batching) for a request stream; `served` for a stream replayed "
            "through a server at its arrival times",
        ),
        Column("trace", "", "the trace a request stream's lengths are drawn from"),
        Column(
            "request_rate",
            "requests/s",
            "a served stream's mean arrival rate (its requests' send times scaled to it)",
        ),
        Column(
            "arrival",
            "",
            "a served stream's arrivals: `trace` (the gaps between consecutive requests of the "
            "trace) or `poisson` (a seeded Poisson process)",
        ),
        Column(
            "requests",
            "requests",
            "requests a stream serves, with at most `batch_size` in flight and lengths up to "
            "`input_tokens` / `output_tokens` (`batch_size` for a fixed-shape batch)",
        ),
        Column("speculative_model", "", "the draft model (empty without one)"),
        Column("speculative_tokens", "tokens", "the draft's look-ahead per step (0 without one)"),
        Column(
            "speculative_acceptance",
            "",
            "`measured` (the weights decide which draft tokens are accepted) or `forced` "
            "(output embeddings set so that all are); empty without a draft",
        ),
        Column("prompts", "", "prompt source: `random` or `pg19`"),
        Column(
            "prompt_id_modulo",
            "",
            "the vocabulary size PG-19 ids were reduced modulo (0: the tokenizer's own ids)",
        ),
        Column(
            "engine_detail",
            "",
            "how the engine was set up (vLLM: `max_num_seqs`, `max_model_len`, "
            "`max_num_batched_tokens`, eager or CUDA graphs, prefix caching off; "
            "transformers: cache and attention)",
        ),
        Column("kv_cache_tokens", "tokens", "vLLM's KV-cache capacity"),
        Column(
            "cuda_graph_max_batch",
            "sequences",
            "the most sequences one decoding step of vLLM may hold and still launch as a "
            "captured CUDA graph (`max_cudagraph_capture_size`; 0 without graphs); a step with "
            "more runs kernel by kernel. vLLM 0.26 captures up to min(2 × `max_num_seqs`, 512) "
            "unless `compilation_config` says otherwise; rows measured before this column have "
            "none",
        ),
        Column(
            "server_config",
            "",
            "a server engine's options as `vllm serve` took them (JSON, flag names with `_`)",
        ),
    ),
)

# A served stream's latency over its successful requests: 50th and 99th percentiles, linear
# interpolation as `vllm bench serve` computes them, each the mean over trials.
_LATENCY = {
    "ttft": "time to first token (sent to first token)",
    "tpot": "time per output token after the first ((last − first token) / (tokens − 1))",
    "e2e": "end-to-end latency (sent to last token)",
}
LATENCY = tuple(
    Column(f"{name}_{q}_s", "s", f"a served stream: {q} of {what}")
    for name, what in _LATENCY.items()
    for q in ("p50", "p99")
)

RESULTS = Section(
    "Results",
    "Per batch (per request stream) unless the name says otherwise.",
    (
        Column(
            "feasible",
            "",
            "false when the point ran out of memory or was not attempted",
            required=True,
        ),
        Column("error", "", "why a point is infeasible or was not measured"),
        Column(
            "largest_feasible_batch",
            "",
            "on an out-of-memory row: the largest batch of its shape that ran, bisected between "
            "this batch and the nearest feasible batch measured below it (on a ladder searched "
            "largest first, after that one's first trial) by probes without windows, or where "
            "the engine knows it without trying (vLLM: the sequences its KV cache holds at "
            "once, at most max_num_seqs), that number",
        ),
        Column(
            "smallest_infeasible_batch",
            "",
            "on an out-of-memory row: the smallest batch of its shape the search found out of "
            "memory",
        ),
        Column(
            "out_of_memory_s",
            "s",
            "on an out-of-memory row: the wall time of the attempt that ran out of memory and "
            "of the engine's recovery from it, outside every window (about 0 where the engine "
            "refuses the batch before running it)",
        ),
        Column(
            "bound_search_s",
            "s",
            "on an out-of-memory row whose bound was bisected by probes: the wall time of the "
            "probes, outside every window and warm-up",
        ),
        Column(
            "repetitions",
            "",
            "repetitions in the full window (the smallest over the point's trials)",
            required=True,
        ),
        Column(
            "trials",
            "",
            "independent trials of the point (each a full window with its own warm-up), spread "
            "over the job; the row's results are their mean",
        ),
        Column("trial", "", "in a journal entry: which trial of the point it is"),
        Column(
            "run_started",
            "",
            "in a journal entry: when the run of the job that measured the trial started, "
            "which names the run and its engine start",
        ),
        Column(
            "engine_starts",
            "",
            "how many runs of the job, each its own engine start, measured the row's trials "
            "(`trials_per_engine_start` spreads them over starts); empty for trials written "
            "before they named their run",
        ),
        Column(
            "duration_s",
            "s",
            "mean wall time of one batch (a served stream: of its steady-state window)",
            required=True,
        ),
        Column(
            "duration_s_ci95",
            "s",
            "half-width of the 95 % confidence interval of `duration_s` (Student's t over trials)",
        ),
        Column(
            "duration_std_s",
            "s",
            "standard deviation of one batch's wall time within a window (back-to-back "
            "repetitions; mean over trials)",
        ),
        Column(
            "energy_j",
            "J",
            "mean energy of one batch (a served stream: over its steady-state window)",
            required=True,
        ),
        Column(
            "energy_j_ci95",
            "J",
            "half-width of the 95 % confidence interval of `energy_j` (Student's t over trials)",
        ),
        Column("trial_energy_j", "J", "every trial's energy per batch (JSON list, in order)"),
        Column("trial_duration_s", "s", "every trial's time per batch (JSON list, in order)"),
        Column(
            "trial_warmed_up",
            "",
            "whether each trial had its warm-up right before its windows (JSON list, in order): "
            "every trial does unless `warmup_every_trial` is off, where only a point's first "
            "trial in each engine instance does, or `alternate`, where its later trials in an "
            "instance take turns",
        ),
        Column(
            "trial_warmup_s",
            "s",
            "each trial's first warm-up call, timed (JSON list, in order; null for a trial "
            "without a warm-up, or written before warm-ups were timed): against "
            "`trial_duration_s`, about one repetition where the engine had the shape warm "
            "already (a request stream's warm-up serves one batch of each group, not its "
            "window)",
        ),
        Column(
            "trial_prefill_energy_j",
            "J",
            "every trial's prefill-window energy per batch (JSON list, in order; empty when a "
            "trial measured no prefill window); a trial's decode energy is its `trial_energy_j` "
            "less this",
        ),
        Column(
            "trial_prefill_duration_s",
            "s",
            "every trial's prefill-window time per batch (JSON list, in order; empty as above)",
        ),
        Column(
            "prefill_energy_j_ci95",
            "J",
            "half-width of the 95 % confidence interval of `prefill_energy_j` over trials",
        ),
        Column(
            "decode_energy_j_ci95",
            "J",
            "half-width of the 95 % confidence interval of `decode_energy_j` over trials",
        ),
        Column(
            "prefill_duration_s_ci95",
            "s",
            "half-width of the 95 % confidence interval of `prefill_duration_s` over trials",
        ),
        Column(
            "decode_duration_s_ci95",
            "s",
            "half-width of the 95 % confidence interval of `decode_duration_s` over trials",
        ),
        Column(
            "protocol_met",
            "",
            "whether the point had at least `min_trials` trials, each a window of at least "
            "`min_duration_s` and `min_repetitions` (of the job's protocol); figures and claims "
            "do not use a row without it silently",
        ),
        Column(
            "protocol_note",
            "",
            "what the point's trials fell short of, or how wide its interval is; in an aggregate "
            "that holds trial rows, that a row was measured before the trial protocol",
        ),
        Column(
            "energy_std_j",
            "J",
            "standard deviation of one batch's energy (quantised for repetitions under ~1 s on "
            "a 10 Hz counter; the mean is not)",
        ),
        Column("prefill_repetitions", "", "repetitions in the one-token (prefill) window"),
        Column("prefill_duration_s", "s", "wall time of the one-token window, per batch"),
        Column("prefill_energy_j", "J", "energy of the one-token window, per batch", required=True),
        Column(
            "decode_duration_s",
            "s",
            "full minus prefill (0 when `output_tokens` is 1; NaN when prefill was not measured)",
        ),
        Column(
            "decode_energy_j",
            "J",
            "full minus prefill (0 when `output_tokens` is 1; NaN when prefill was not measured)",
            required=True,
        ),
        Column(
            "energy_per_output_token_j",
            "J",
            "`energy_j / generated_tokens` (a served stream: `energy_j / steady_state_tokens`)",
            required=True,
        ),
        Column(
            "energy_per_request_j",
            "J",
            "`energy_j / batch_size` (a stream's energy over its `requests`; a served stream's "
            "`energy_j / steady_state_requests`)",
        ),
        Column(
            "energy_per_request_j_ci95",
            "J",
            "a served stream: half-width of the 95 % interval of `energy_per_request_j` over "
            "trials",
        ),
        Column(
            "energy_per_output_token_j_ci95",
            "J",
            "a served stream: the same for `energy_per_output_token_j`",
        ),
        Column(
            "generated_tokens",
            "tokens",
            "output tokens one repetition generates (`batch_size * output_tokens`, or a "
            "stream's sum of drawn lengths)",
        ),
        Column("output_tokens_per_s", "tokens/s", "generated tokens per second"),
        Column("mean_power_w", "W", "`energy_j / duration_s`"),
        Column("idle_power_w", "W", "idle power, measured once per job"),
        Column("energy_above_idle_j", "J", "energy minus idle power times duration"),
        Column("peak_memory_gib", "GiB", "peak GPU memory allocated by torch (NaN on the CPU)"),
        Column(
            "spec_draft_tokens",
            "tokens",
            "speculative decoding: draft tokens proposed per batch over the full window",
        ),
        Column(
            "spec_accepted_tokens",
            "tokens",
            "speculative decoding: draft tokens accepted per batch over the full window",
        ),
        Column("spec_acceptance_rate", "", "`spec_accepted_tokens / spec_draft_tokens`"),
        Column(
            "clipped_requests",
            "requests",
            "a request stream's requests shortened to the point's caps",
        ),
        Column("stream_bins", "", "a binned replay's requests per `{input}x{output}` bin (JSON)"),
        *LATENCY,
        Column(
            "steady_state_s",
            "s",
            "a served stream: its energy window, from the first time it holds its load (the "
            "time-weighted median of requests in flight while requests arrive) to the last "
            "request sent (docs/MEASURING.md)",
        ),
        Column(
            "steady_state_fraction",
            "",
            "`steady_state_s` over `run_s`: how much of the run the window keeps",
        ),
        Column(
            "steady_state_in_flight",
            "requests",
            "the load the window holds: the time-weighted median of requests in flight",
        ),
        Column(
            "steady_state_requests",
            "requests",
            "requests served inside the window, each counted by the share of its output "
            "tokens generated there",
        ),
        Column("steady_state_tokens", "tokens", "output tokens generated inside the window"),
        Column("run_s", "s", "a served stream: first request sent to last response ended"),
        Column(
            "requests_failed",
            "requests",
            "a served stream's requests that failed (an HTTP error, a broken stream, fewer "
            "tokens than asked), over all its trials; a trial with more than "
            "`max_failed_fraction` of them is not used",
        ),
        Column("trial_requests_failed", "requests", "failed requests of each trial (JSON list)"),
        Column(
            "request_error",
            "",
            "the last trial's request errors, each kind with its count (JSON; empty without)",
        ),
        Column(
            "ffn_time_share",
            "",
            "with `architectures.ffn_time_share`, on transformers engines: the share of one "
            "more generation's time (run after each trial's windows) spent in the decoder "
            "layers' feed-forward blocks, timed with CUDA events around each block (the wall "
            "clock on the CPU); the mean over the point's trials",
        ),
        Column(
            "ffn_time_share_ci95",
            "",
            "half-width of the 95 % confidence interval of `ffn_time_share` over the trials "
            "that timed the blocks (Student's t; NaN for one)",
        ),
        Column(
            "trial_ffn_time_share",
            "",
            "every trial's `ffn_time_share` (JSON list, in order; null for a trial that did not "
            "time the blocks)",
        ),
        Column(
            "ffn_block",
            "",
            "the feed-forward blocks' class (`OlmoeSparseMoeBlock`: experts with their "
            "router; `OlmoMLP`, `LlamaMLP`: dense)",
        ),
        Column(
            "energy_{meter}_j",
            "J",
            "energy per batch from a cross-check meter over the same window (e.g. "
            "`energy_codecarbon_j`)",
        ),
        Column(
            "contention_checked",
            "",
            "whether the meter could list the processes on the job's GPUs (NVML can)",
        ),
        Column(
            "contended",
            "",
            "whether a process outside the job used one of its GPUs before or after the "
            "point's windows, or other processes used more than one core of the host's CPU "
            "during a trial: a contended row's numbers include another program's work",
        ),
        Column("foreign_gpu_pids", "", "the PIDs of those processes"),
        Column(
            "control_point_id",
            "",
            "the job's control point, measured once more at the start and the end of its run",
        ),
        Column(
            "control_drift_energy",
            "",
            "the control point's energy per batch at the last run's end measured in the row's "
            "machine session over the first run's start there, minus one (the drift of engine "
            "and machine over the span of the row's trials; NaN without energy, or where no "
            "run in that session measured its end)",
        ),
        Column(
            "control_drift_duration",
            "",
            "the same for its time per batch",
        ),
        Column(
            "gpu_health",
            "",
            "`ok`, `unknown` (the meter cannot see the GPUs: `codecarbon`, `none`; or the row "
            "predates this column), or the flags the point's windows raised, joined by `+`: "
            "`counter_backwards` (an energy counter went backwards: a reset), `gpu_error` (a new "
            "uncorrected ECC error or an Xid), `throttled_thermal`, `throttled_power` (a power "
            "limit below the GPU's default, a power brake, the board's limit; not `sw_power_cap` "
            "at the default limit), `throttled_other`; figures count "
            "flagged rows in their footer and claims do not use them without saying so",
        ),
        Column("trial_gpu_health", "", "every trial's `gpu_health` (JSON list, in order)"),
        Column(
            "clock_event_reasons",
            "",
            "NVML clock-event (throttle) reasons seen on any of the job's GPUs during the "
            "point's windows, sampled every 0.1 s, comma-joined (`idle`, `applications_clocks`, "
            "`sw_power_cap`, `hw_slowdown`, `sync_boost`, `sw_thermal_slowdown`, "
            "`hw_thermal_slowdown`, `hw_power_brake`, `display_clocks`, `board_limit`, "
            "`reliability`; and `power_limit_lowered` beside `sw_power_cap` when the limit was "
            "set below the GPU's default); empty when none, null when the meter cannot tell",
        ),
        Column(
            "sm_clock_min_mhz", "MHz", "lowest SM clock sampled during the windows (NaN: unknown)"
        ),
        Column("sm_clock_max_mhz", "MHz", "highest SM clock sampled during the windows"),
        Column("gpu_temp_max_c", "°C", "highest GPU temperature sampled during the windows"),
        Column(
            "ecc_errors_new",
            "errors",
            "uncorrected ECC errors (volatile count) that appeared during the windows; null "
            "where the GPU cannot report them (ECC off, not supported)",
        ),
        Column(
            "xid_errors",
            "",
            "Xid error codes NVML reported during the windows, comma-joined; null where NVML "
            "cannot deliver them",
        ),
        Column(
            "energy_counter_backwards",
            "",
            "whether an energy counter read less than the read before it during the windows "
            "(null: unknown)",
        ),
        Column(
            "host_cpu_others_cores",
            "cores",
            "CPU time that processes outside the job used during the point's trials, in "
            "cores (mean over trials; NaN where /proc cannot say)",
        ),
    ),
)

PROVENANCE = Section(
    "Provenance",
    "Where, when and with what each number was obtained.",
    (
        Column("meter", "", "meter of record (`nvml`, `codecarbon`, `none`)", required=True),
        Column(
            "energy_source",
            "",
            "`measured` (hardware counter), `estimate` (a model of power) or `none` (time only, "
            "energy NaN)",
        ),
        Column("meter_version", "", "the meter's library and version"),
        Column("meter_detail", "", "what exactly the meter reads"),
        Column("cross_check_meters", "", "meters read beside it"),
        Column(
            "gpu_name",
            "",
            "the GPUs the energy was summed over (`none (cpu)` on the CPU)",
            required=True,
        ),
        Column("gpu_count", "GPUs", "how many"),
        Column("gpu_uuids", "", "their UUIDs"),
        Column("driver_version", "", "NVIDIA driver"),
        Column("power_limit_w", "W", "power limit, summed over the GPUs"),
        Column("backend_version", "", "the backend library and version"),
        Column("torch_version", "", "torch"),
        Column("transformers_version", "", "transformers"),
        Column("cuda_version", "", "CUDA of the torch build (`none` on a CPU build)"),
        Column("python_version", "", "Python"),
        Column("package_version", "", "llm-energy"),
        Column("host", "", "host name"),
        Column(
            "host_cpu_model",
            "",
            "the host's CPU model (`model name` of /proc/cpuinfo): eager PyTorch and vLLM at "
            "small batches wait on the host, so one GPU model on two hosts can differ by it "
            "(null in rows written before it was recorded)",
        ),
        Column(
            "host_cpu_cores",
            "cores",
            "logical CPU cores the job could run on (its affinity; NaN in rows written before "
            "it was recorded)",
        ),
        Column(
            "machine_session",
            "",
            "host name and boot id: rows that share it come from one machine session (rows "
            "written before it existed are grouped by host and day)",
        ),
        Column("slurm_job_id", "", "Slurm job id (empty outside Slurm)"),
        Column(
            "engine_environment",
            "",
            "the environment variables of the job that change how its engine runs (`VLLM_`, "
            "`PYTORCH_`, `TORCH`, `CUDA_` and `NCCL_` ones, such as "
            "`VLLM_USE_FLASHINFER_SAMPLER`), `NAME=value` comma-joined; the engine's own "
            "settings included (null in rows written before it was recorded)",
        ),
        Column(
            "engine_load_s",
            "s",
            "how long the run that measured the row took to start its engine (or server) until "
            "it was ready (NaN in rows written before it was recorded)",
        ),
        Column("git_commit", "", "commit of the code that measured the row (`-dirty` if changed)"),
        Column(
            "config_hash",
            "",
            "hash of the job's configuration when the row was measured (model, engine, "
            "protocol, points; not `points_in_flight` or `point_order`, which only order the "
            "job's trials, nor `control_min_duration_s`, the control point's window)",
        ),
        Column(
            "seeded_from",
            "",
            "the table a row was copied from into its job's journal (`resume_from_shipped`): "
            "the row as that table has it, its trials included; empty when the job measured it",
        ),
        Column("point_id", "", "names the point's journal file"),
        Column(
            "point_id_version",
            "",
            "version of the id function that named the point (llm_energy.measure.point_ids); "
            "empty in rows written before ids had versions, which are version 1",
        ),
        Column("timestamp", "", "when the point finished (UTC, ISO 8601)"),
    ),
)

SECTIONS = (IDENTITY, RESULTS, PROVENANCE)
COLUMNS = tuple(c for s in SECTIONS for c in s.columns)
REQUIRED_COLUMNS = tuple(c.name for c in COLUMNS if c.required)


def markdown() -> str:
    """The reference page of the columns."""
    lines = [
        "# Output columns",
        "",
        "Every row of a measurement table (`results/measurements/{hardware}/{group}.parquet`,",
        "`results/aggregate/{hardware}/measurements.parquet` and the shipped tables in",
        "`resources/measurements/`) is one point. This page is generated from",
        "`src/llm_energy/measure/columns.py`: `python -m llm_energy.measure.columns >",
        "docs/COLUMNS.md`.",
        "",
        "Every measurement table has the columns marked **required**; the others appear where",
        "the point has them (a speculative engine's acceptance, a request stream's trace).",
    ]
    for section in SECTIONS:
        lines += ["", f"## {section.title}", "", section.intro, ""]
        lines += ["| column | unit | meaning |", "|---|---|---|"]
        for c in section.columns:
            meaning = f"**required**; {c.description}" if c.required else c.description
            lines.append(f"| `{c.name}` | {c.unit} | {meaning} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    print(markdown(), end="")


if __name__ == "__main__":
    main()
