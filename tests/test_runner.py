"""The job runner: out-of-memory points, the resume journal, and a real tiny-model job."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from llm_energy.analysis.aggregate import REQUIRED_COLUMNS
from llm_energy.backends.base import Backend
from llm_energy.config import validate
from llm_energy.errors import DeviceUnusableError
from llm_energy.measure import resume, runner
from llm_energy.measure.job import DecodingSpec
from llm_energy.measure.plan import plan_study
from llm_energy.measure.point_ids import measurement_hash, point_id, point_ids

PROVENANCE = (
    "backend_version",
    "torch_version",
    "transformers_version",
    "meter",
    "energy_source",
    "weights",
    "model",
    "architecture_hash",
    "gpu_name",
    "driver_version",
    "power_limit_w",
    "host",
    "host_cpu_model",
    "host_cpu_cores",
    "slurm_job_id",
    "git_commit",
    "config_hash",
    "timestamp",
)


class FakeBackend(Backend):
    """Generates nothing; runs out of memory from ``oom_batch`` on, and counts its calls."""

    name = "fake"
    calls: ClassVar[list] = []
    oom_batch = 10**9

    def load(self, config_dir: str, seed: int) -> None:
        FakeBackend.calls = []

    @property
    def vocab_size(self) -> int:
        return 100

    def prepare(self, token_ids: list[list[int]]) -> int:
        return len(token_ids)

    def generate(self, prepared: int, output_tokens: int, decoding: DecodingSpec) -> int:
        if prepared >= self.oom_batch:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        FakeBackend.calls.append((prepared, output_tokens))
        return prepared * output_tokens

    def versions(self) -> dict[str, str]:
        return {"backend_version": "fake 0", "torch_version": "none"}


class QuietHost:
    def start(self) -> None:
        pass

    def stop(self) -> float:
        return 0.0


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setattr(
        runner,
        "make_backend",
        lambda model, engine, device, dtype: FakeBackend(model, engine, device, dtype),
    )
    FakeBackend.oom_batch = 10**9
    # The host's CPU load is the subject of tests/test_host.py; here it reads quiet.
    monkeypatch.setattr(runner, "HostLoad", QuietHost)
    return FakeBackend


def _plan(tiny_config, batch_sizes=(1, 2)):
    tiny_config["experiments"]["controlled_sweeps"]["batch_sizes"] = list(batch_sizes)
    return plan_study(validate(tiny_config))["tiny__pytorch"]


def test_out_of_memory_point_is_recorded_and_larger_batches_are_not_attempted(
    tiny_config, fake_backend, tmp_path
):
    plan = _plan(tiny_config, batch_sizes=(1, 2, 4, 8))
    fake_backend.oom_batch = 4
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    assert len(table) == len(plan.points)
    feasible = table[table["feasible"]]
    assert set(feasible["batch_size"]) == {1, 2}
    oom = table[table["batch_size"] == 4]
    assert oom["error"].str.startswith("out of memory").all()
    skipped = table[table["batch_size"] == 8]
    assert skipped["error"].str.startswith("not attempted: batch 4").all()
    assert table.loc[~table["feasible"], "energy_j"].isna().all()
    # The attempt that ran out of memory is timed on its row; nothing else is.
    assert (oom["out_of_memory_s"] >= 0).all()
    assert table.loc[table["batch_size"] != 4, "out_of_memory_s"].isna().all()
    # Batch 8 was never run.
    assert all(b < 4 for b, _ in fake_backend.calls)


def test_the_bound_between_the_last_feasible_and_the_first_out_of_memory_batch_is_searched(
    tiny_config, fake_backend, tmp_path
):
    plan = _plan(tiny_config, batch_sizes=(1, 2, 16))
    fake_backend.oom_batch = 11
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    oom = table[table["batch_size"] == 16]
    assert len(oom) and not oom["feasible"].any()
    # Three probes halve 2..16: 9 runs, 12 does not, 10 runs.
    assert (oom["largest_feasible_batch"] == 10).all()
    assert (oom["smallest_infeasible_batch"] == 12).all()
    probed = {b for b, _ in fake_backend.calls} - {1, 2}
    assert probed == {9, 10}
    # The probes' time is kept on the row, apart from its windows and warm-ups.
    assert (oom["bound_search_s"] >= 0).all()
    assert table.loc[table["feasible"], "bound_search_s"].isna().all()
    # A rerun finds the bound in the journal and probes nothing.
    fake_backend.calls.clear()
    again = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    assert fake_backend.calls == []
    assert (again[again["batch_size"] == 16]["largest_feasible_batch"] == 10).all()


def test_an_engine_that_knows_its_largest_batch_records_it_without_probes(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    """vLLM knows how many sequences its KV cache holds: an out-of-memory row takes that bound
    and no probe runs, in a search largest first as well."""
    monkeypatch.setattr(fake_backend, "largest_batch", lambda self, i, o: 3, raising=False)
    plan = _plan(tiny_config, batch_sizes=(1, 2, 16))
    tags = tuple(sorted({t for p in plan.points for t in p.experiments}))
    plan = dataclasses.replace(plan, largest_feasible_only=tags)
    fake_backend.oom_batch = 4
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    oom = table[table["batch_size"] == 16]
    assert (oom["largest_feasible_batch"] == 3).all()
    assert (oom["smallest_infeasible_batch"] == 4).all()
    assert "bound_search_s" not in table or oom["bound_search_s"].isna().all()
    assert {b for b, _ in fake_backend.calls} == {2}


def test_a_search_largest_first_bisects_below_its_first_out_of_memory_batch_once(
    tiny_config, fake_backend, tmp_path
):
    """Largest first, the ladder's first batch that fits lies below one out of memory: after
    its first trial the job bisects between the two, as an ascending search does, and writes
    the bound on the out-of-memory row, once per shape; a rerun probes nothing."""
    plan = _plan(tiny_config, batch_sizes=(1, 2, 16))
    tags = tuple(sorted({t for p in plan.points for t in p.experiments}))
    plan = dataclasses.replace(plan, largest_feasible_only=tags)
    fake_backend.oom_batch = 11
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    table = runner.run_job(plan, out, journal, log=lambda m: None)
    oom = table[table["batch_size"] == 16]
    assert len(oom) and not oom["feasible"].any()
    # Three probes halve 2..16: 9 runs, 12 does not, 10 runs.
    assert (oom["largest_feasible_batch"] == 10).all()
    assert (oom["smallest_infeasible_batch"] == 12).all()
    assert (oom["bound_search_s"] >= 0).all()
    shapes = len(oom)
    probes = [b for b, _ in fake_backend.calls if b not in (1, 2)]
    assert sorted(probes) == [9] * shapes + [10] * shapes
    # Batch 2 is still the batch measured; batch 1 is passed over.
    measured = table[table["repetitions"].fillna(0) > 0]
    assert set(measured["batch_size"]) == {2}
    fake_backend.calls.clear()
    again = runner.run_job(plan, out, journal, log=lambda m: None)
    assert fake_backend.calls == []
    assert (again[again["batch_size"] == 16]["largest_feasible_batch"] == 10).all()


def test_vllms_largest_batch_is_what_its_kv_cache_holds_at_most_max_num_seqs():
    from llm_energy.backends.vllm.backend import VllmBackend

    engine = VllmBackend.__new__(VllmBackend)
    engine._kv_blocks, engine._block_tokens = 57144, 16
    engine._settings = {"max_num_seqs": 1024}
    # 2,048 in with 512 out takes 160 blocks a sequence; 4,096 with 128, 264.
    assert engine.largest_batch(2048, 512) == 357
    assert engine.largest_batch(4096, 128) == 216
    assert engine.largest_batch(32, 8) == 1024
    engine._kv_blocks = 0  # not sized yet: it must be tried
    assert engine.largest_batch(32, 8) is None


def test_a_largest_feasible_search_measures_each_shape_once_largest_first(
    tiny_config, fake_backend, tmp_path
):
    plan = _plan(tiny_config, batch_sizes=(1, 2, 4, 8))
    tags = tuple(sorted({t for p in plan.points for t in p.experiments}))
    plan = dataclasses.replace(plan, largest_feasible_only=tags)
    fake_backend.oom_batch = 4
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    table = runner.run_job(plan, out, journal, log=lambda m: None)
    assert len(table) == len(plan.points)
    shapes = table.groupby(["input_tokens", "output_tokens"])
    for _, rows in shapes:
        by_batch = rows.set_index("batch_size")
        assert by_batch.loc[8, "error"].startswith("out of memory")
        assert by_batch.loc[4, "error"].startswith("out of memory")
        assert by_batch.loc[2, "repetitions"] > 0 and by_batch.loc[2, "feasible"]
        # Batch 1 fits too (batch 2 did), but it is not measured: no energy, no zero.
        assert by_batch.loc[1, "feasible"] and by_batch.loc[1, "repetitions"] == 0
        assert by_batch.loc[1, "error"].startswith("not measured: batch 2 of this shape fits")
        assert math.isnan(by_batch.loc[1, "energy_j"])
    # Only batch 2 generated anything at every shape, and batch 3 once, the probe between 2
    # and 4 that finds it fits.
    assert {b for b, _ in fake_backend.calls} == {2, 3}
    assert (table.loc[table["batch_size"] == 4, "largest_feasible_batch"] == 3).all()
    # A resumed job keeps the search's answer: dropping batch 1's rows measures nothing new.
    for pid in table.loc[table["batch_size"] == 1, "point_id"]:
        (journal / f"{pid}.t1.parquet").unlink()
    fake_backend.calls = []
    runner.run_job(plan, out, journal, log=lambda m: None)
    assert fake_backend.calls == []
    assert measurement_hash(plan, 1) == measurement_hash(_plan(tiny_config, (1, 2, 4, 8)), 1)


def test_journal_points_are_not_measured_again(tiny_config, fake_backend, tmp_path):
    plan = _plan(tiny_config)
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    first = runner.run_job(plan, out, journal, log=lambda m: None)
    # Drop one point from the journal, as if the job had been killed before it.
    victim = first["point_id"].iloc[-1]
    kept_mtimes = {p.name: p.stat().st_mtime_ns for p in journal.iterdir()}
    (journal / f"{victim}.t1.parquet").unlink()
    messages: list[str] = []
    second = runner.run_job(plan, out, journal, log=messages.append)
    assert any(f"{len(plan.points) - 1} already in the journal" in m for m in messages)
    assert sorted(second["point_id"]) == sorted(first["point_id"])
    assert second["point_id"].is_unique
    for path in journal.iterdir():
        if not path.name.startswith(victim):
            assert path.stat().st_mtime_ns == kept_mtimes[path.name]
    # A third run measures nothing and does not load the model.
    fake_backend.calls = ["sentinel"]
    runner.run_job(plan, out, journal, log=lambda m: None)
    assert fake_backend.calls == ["sentinel"]


def test_other_errors_stop_the_job_but_keep_finished_points(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    plan = _plan(tiny_config)

    def broken(self, prepared, output_tokens, decoding):
        if prepared == 2:
            raise ValueError("bad input")
        return prepared * output_tokens

    monkeypatch.setattr(fake_backend, "generate", broken)
    with pytest.raises(ValueError, match="bad input"):
        runner.run_job(plan, tmp_path / "o.parquet", tmp_path / "j", log=lambda m: None)
    kept = pd.concat(pd.read_parquet(p) for p in (tmp_path / "j").glob("*.parquet"))
    assert (kept["batch_size"] == 1).all() and len(kept) >= 1
    assert not (tmp_path / "o.parquet").exists()


def test_real_tiny_model_job_writes_every_required_and_provenance_column(tiny_config, tmp_path):
    plan = _plan(tiny_config, batch_sizes=(1,))
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    assert len(table) == len(plan.points)
    for col in (*REQUIRED_COLUMNS, *PROVENANCE):
        assert col in table.columns, col
    assert table["feasible"].all()
    assert (table["backend"] == "transformers").all()
    assert (table["weights"] == "random").all()
    assert table["transformers_version"].str.match(r"\d+\.\d+").all()
    assert (table["host_cpu_model"].str.len() > 0).all() and (table["host_cpu_cores"] >= 1).all()
    assert (table["repetitions"] >= 2).all()
    assert (table["duration_s"] > 0).all()
    # Meter 'none' measures time only: energy is NaN, never zero.
    assert (table["meter"] == "none").all() and (table["energy_source"] == "none").all()
    assert table["energy_j"].isna().all()
    assert (table["gpu_name"] == "none (cpu)").all()
    on_disk = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(on_disk, table)
    assert not math.isnan(table["prefill_duration_s"].iloc[0])
    assert list(Path(tmp_path).glob("*.tmp")) == []


def test_rows_measured_while_another_process_uses_the_gpu_are_marked(
    tiny_config, fake_backend, monkeypatch, tmp_path
):
    from llm_energy.meters.null import NullMeter

    class Crowded(NullMeter):
        def foreign_processes(self) -> list[int]:
            return [4242]

    monkeypatch.setattr(runner, "make_meter", lambda *a, **k: Crowded())
    table = runner.run_job(_plan(tiny_config), tmp_path / "o.parquet", tmp_path / "j", log=print)
    assert table["contention_checked"].all()
    assert table["contended"].all()
    assert (table["foreign_gpu_pids"] == "4242").all()


def test_rows_say_when_contention_could_not_be_checked(tiny_config, fake_backend, tmp_path):
    table = runner.run_job(_plan(tiny_config), tmp_path / "o.parquet", tmp_path / "j", log=print)
    assert not table["contention_checked"].any()
    assert not table["contended"].any()


def test_a_trial_whose_gpu_throttled_marks_its_point_and_says_so(
    tiny_config, fake_backend, monkeypatch, tmp_path
):
    from llm_energy.meters.base import HealthWatch, WindowHealth
    from llm_energy.meters.null import NullMeter

    windows: list[int] = []

    class Watch(HealthWatch):
        def stop(self) -> WindowHealth:
            windows.append(1)
            # The full window of the job's second point, in its first trial (each trial has a
            # prefill window and a full window).
            power_capped = len(windows) == 4
            return WindowHealth(
                clock_event_reasons=frozenset(
                    {"sw_power_cap", "power_limit_lowered"} if power_capped else ()
                ),
                sm_clock_min_mhz=1200.0 if power_capped else 1980.0,
                sm_clock_max_mhz=1980.0,
                gpu_temp_max_c=60.0,
                ecc_errors_new=0,
                xid_errors=(),
                energy_counter_backwards=False,
            )

    class Watched(NullMeter):
        def watch(self) -> HealthWatch:
            return Watch()

    tiny_config["protocol"].update(min_trials=2, max_trials=2)
    monkeypatch.setattr(runner, "make_meter", lambda *a, **k: Watched())
    messages: list[str] = []
    out = tmp_path / "o.parquet"
    table = runner.run_job(_plan(tiny_config), out, tmp_path / "j", log=messages.append)
    flagged = table[table["gpu_health"] != "ok"]
    assert flagged["gpu_health"].tolist() == ["throttled_power"]
    assert flagged["trial_gpu_health"].tolist() == ['["throttled_power", "ok"]']
    assert flagged["clock_event_reasons"].tolist() == ["power_limit_lowered,sw_power_cap"]
    assert flagged["sm_clock_min_mhz"].tolist() == [1200.0]
    assert (table.loc[table["gpu_health"] == "ok", "clock_event_reasons"] == "").all()
    capped = "GPU throttled_power (clock events power_limit_lowered,sw_power_cap"
    assert sum(capped in m for m in messages) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)


def test_a_meter_that_cannot_see_the_gpus_writes_unknown_not_zeros(
    tiny_config, fake_backend, tmp_path
):
    table = runner.run_job(_plan(tiny_config), tmp_path / "o.parquet", tmp_path / "j", log=print)
    assert (table["gpu_health"] == "unknown").all()
    for col in ("sm_clock_min_mhz", "sm_clock_max_mhz", "gpu_temp_max_c"):
        assert table[col].isna().all(), col
    for col in ("clock_event_reasons", "ecc_errors_new", "xid_errors", "energy_counter_backwards"):
        assert table[col].isna().all(), col


@pytest.mark.parametrize(
    ("message", "is_oom"),
    [
        ("CUDA out of memory. Tried to allocate 7.00 GiB", True),
        (
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes",
            True,
        ),
        ("shape mismatch", False),
    ],
)
def test_out_of_memory_is_recognised_on_gpu_and_cpu(message, is_oom):
    backend = FakeBackend(None, None, "cpu", "float32")
    assert backend.is_out_of_memory(RuntimeError(message)) is is_oom


def test_a_gpu_job_on_a_machine_without_gpu_fails_with_one_message(tiny_config, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from llm_energy.errors import BackendError

    tiny_config["device"] = "cuda"
    with pytest.raises(BackendError, match="PyTorch sees no CUDA GPU"):
        runner.run_job(_plan(tiny_config), tmp_path / "o.parquet", tmp_path / "j", log=print)
    assert not (tmp_path / "o.parquet").exists()


def test_adding_points_measures_only_the_new_ones(tiny_config, fake_backend, tmp_path):
    out, journal = tmp_path / "o.parquet", tmp_path / "j"
    first = runner.run_job(_plan(tiny_config, batch_sizes=(1,)), out, journal, log=print)
    before = {p.name: p.stat().st_mtime_ns for p in journal.iterdir()}
    tiny_config["experiments"]["decoding_strategies"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1],
        "input_tokens": 8,
        "output_tokens": 4,
    }
    grown = _plan(tiny_config, batch_sizes=(1, 2))
    second = runner.run_job(grown, out, journal, log=print)
    assert len(second) == len(grown.points) > len(first)
    for name, mtime in before.items():
        assert (journal / name).stat().st_mtime_ns == mtime, f"{name} was measured again"
    shared = second[
        (second["batch_size"] == 1) & (second["input_tokens"] == 8) & (second["output_tokens"] == 4)
    ]
    assert shared["experiments"].iloc[0] == "decoding+input_sweep+output_sweep"


def test_changing_the_protocol_measures_everything_again(tiny_config, fake_backend, tmp_path):
    out, journal = tmp_path / "o.parquet", tmp_path / "j"
    runner.run_job(_plan(tiny_config, batch_sizes=(1,)), out, journal, log=print)
    tiny_config["protocol"]["min_repetitions"] = 3
    messages: list[str] = []
    runner.run_job(_plan(tiny_config, batch_sizes=(1,)), out, journal, log=messages.append)
    assert any("0 already in the journal" in m for m in messages)


def test_atomic_writes_leave_ordinary_permissions(tmp_path):
    import os

    import pandas as pd

    from llm_energy.measure.store import write_csv_atomic, write_parquet_atomic

    mask = os.umask(0o022)
    try:
        write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
        write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    finally:
        os.umask(mask)
    for name in ("t.parquet", "t.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]


def test_a_point_with_its_own_protocol_is_measured_by_it(tiny_config, fake_backend, tmp_path):
    plan = _plan(tiny_config, batch_sizes=(1,))
    light = dataclasses.replace(plan.protocol, min_repetitions=1, measure_prefill=False)
    plan = dataclasses.replace(
        plan, points=tuple(dataclasses.replace(p, protocol=light) for p in plan.points)
    )
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    assert (table["repetitions"] == 1).all()
    assert (table["prefill_repetitions"] == 0).all()


def test_a_journal_seeded_from_a_table_measured_elsewhere_measures_only_the_rest(
    tiny_config, fake_backend, tmp_path
):
    small = _plan(tiny_config, batch_sizes=(1,))
    table = runner.run_job(small, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    big = _plan(tiny_config, batch_sizes=(1, 2))
    journal = tmp_path / "b"
    assert resume.seed_journal(big, resume.read_tables([tmp_path / "a.parquet"]), journal) == len(
        table
    )
    assert (
        resume.seed_journal(big, resume.read_tables([tmp_path / "a.parquet"]), journal) == 0
    )  # kept, not redone
    fake_backend.calls = []
    runner.run_job(big, tmp_path / "b.parquet", journal, log=lambda m: None)
    assert {b for b, _ in fake_backend.calls} == {2}


def test_a_seeded_row_stands_whole_and_a_row_below_the_protocol_is_measured_again(
    tiny_config, fake_backend, tmp_path
):
    tiny_config["protocol"].update(min_trials=3, max_trials=3)
    small = _plan(tiny_config, batch_sizes=(1,))
    shipped = runner.run_job(small, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    assert (shipped["trials"] == 3).all()
    big = _plan(tiny_config, batch_sizes=(1, 2))

    # Complete rows are copied whole: no trial of this job is added to them, and the table
    # gives them as the shipped table has them.
    fake_backend.calls = []
    assert resume.seed_journal(
        big, resume.read_tables([tmp_path / "a.parquet"]), tmp_path / "b"
    ) == len(shipped)
    table = runner.run_job(big, tmp_path / "b.parquet", tmp_path / "b", log=lambda m: None)
    assert {b for b, _ in fake_backend.calls} == {2}
    copied = table.set_index("point_id").loc[shipped["point_id"]]
    for column in ("trials", "duration_s", "duration_s_ci95", "trial_duration_s", "timestamp"):
        assert copied[column].tolist() == shipped[column].tolist(), column
    assert (copied["seeded_from"] == str(tmp_path / "a.parquet")).all()
    assert table.loc[table["batch_size"] == 2, "seeded_from"].isna().all()

    # A row measured before trials (one window, no interval) is not copied: its point is
    # measured again, all three trials in this job.
    before = shipped.drop(columns=["trials", "duration_s_ci95", "trial_duration_s"])
    before.to_parquet(tmp_path / "before.parquet")
    assert (
        resume.seed_journal(big, resume.read_tables([tmp_path / "before.parquet"]), tmp_path / "c")
        == 0
    )
    fake_backend.calls = []
    table = runner.run_job(big, tmp_path / "c.parquet", tmp_path / "c", log=lambda m: None)
    assert {b for b, _ in fake_backend.calls} == {1, 2}
    assert (table["trials"] == 3).all() and "seeded_from" not in table
    # Nor is a row whose trial a device error ended.
    failed = shipped.assign(error="failed: CUDA error: unspecified launch failure")
    failed.assign(repetitions=0).to_parquet(tmp_path / "failed.parquet")
    assert (
        resume.seed_journal(big, resume.read_tables([tmp_path / "failed.parquet"]), tmp_path / "d")
        == 0
    )


def test_a_row_wider_than_its_target_short_of_max_trials_is_measured_again_when_asked(
    tiny_config, fake_backend, tmp_path
):
    tiny_config["protocol"].update(min_trials=3, max_trials=6, target_ci95_rel=0.03)
    small = _plan(tiny_config, batch_sizes=(1,))
    shipped = runner.run_job(small, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    # The CPU's rows have no energy: give them a mean and an interval of 7 % and 1 %.
    shipped = shipped.assign(trials=3, energy_j=100.0, energy_j_ci95=7.0)
    wide = shipped.iloc[:1]
    rows = pd.concat([wide, shipped.iloc[1:].assign(energy_j_ci95=1.0)])
    rows.to_parquet(tmp_path / "wide.parquet")
    protocol = small.protocol_of(small.points[0])
    assert resume.wider_than_target(wide.iloc[0].to_dict(), protocol)
    # At max_trials the row stands, however wide: more trials are not to be had.
    assert not resume.wider_than_target(wide.assign(trials=6).iloc[0].to_dict(), protocol)
    # A served stream's row is judged by energy per request, as the runner judges its trials.
    served = {**wide.iloc[0].to_dict(), "serving": "served", "energy_per_request_j": 2.0}
    assert not resume.wider_than_target({**served, "energy_per_request_j_ci95": 0.02}, protocol)
    assert resume.wider_than_target({**served, "energy_per_request_j_ci95": 0.2}, protocol)

    tables = resume.read_tables([tmp_path / "wide.parquet"])
    kept = resume.seed_journal(small, tables, tmp_path / "keep")
    assert kept == len(rows)
    again = resume.seed_journal(small, tables, tmp_path / "again", True)
    assert again == len(rows) - 1
    left = resume.trials_left(small, tmp_path / "fresh", tables, wide_again=True)
    assert sorted(left.values()) == [0] * (len(rows) - 1) + [3]
    # Left for its own row's interval, not for a row of another setup.
    assert resume.under_another_setup(small, tables, [k for k, n in left.items() if n]) == []
    assert set(resume.trials_left(small, tmp_path / "fresh", tables).values()) == {0}

    # The job measures the wide row's point again, every trial its own, up to max_trials.
    fake_backend.calls = []
    table = runner.run_job(small, tmp_path / "b.parquet", tmp_path / "again", log=lambda m: None)
    assert len(fake_backend.calls) >= 3
    redone = table.set_index("point_id").loc[wide["point_id"].iloc[0]]
    assert pd.isna(redone["seeded_from"]) and 3 <= redone["trials"] <= 6
    assert table["seeded_from"].notna().sum() == len(rows) - 1


def test_rows_measured_under_a_layers_max_trials_seed_the_standard_protocols_points(
    tiny_config, fake_backend, tmp_path
):
    """The trial counts name no point (point ids version 3): rows of three trials measured
    under a layer's max_trials: 3 seed the same points of the standard protocol, and no point
    is said to be under another setup."""
    import copy

    capped = copy.deepcopy(tiny_config)
    capped["protocol"].update(min_trials=3, max_trials=3, target_ci95_rel=0.5)
    small = _plan(capped, batch_sizes=(1,))
    runner.run_job(small, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    tiny_config["protocol"].update(min_trials=3, max_trials=6)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    ids = point_ids(plan)
    assert all(ids[key] == pid for key, pid in point_ids(small).items())
    tables = resume.read_tables([tmp_path / "a.parquet"])
    left = resume.trials_left(plan, tmp_path / "fresh", tables)
    batch = {p.key: p.batch_size for p in plan.points}
    assert {batch[k] for k, n in left.items() if n == 0} == {1}
    assert {n for k, n in left.items() if batch[k] == 2} == {3}
    assert resume.under_another_setup(plan, tables, [k for k, n in left.items() if n]) == []
    # Under id version 2 the trial counts named the points.
    assert all(point_id(plan, p, 2) != point_id(small, p, 2) for p in small.points)


def test_rows_of_a_points_shape_under_another_protocol_are_not_seeded_and_are_said(
    tiny_config, fake_backend, tmp_path, capsys
):
    """Rows measured under a layer's warm-up (warmup_repetitions) carry other point ids: a
    run of the standard protocol seeds none of them, and seed-journal says which points that
    leaves."""
    import copy

    from llm_energy.cli import main

    warmer = copy.deepcopy(tiny_config)
    warmer["protocol"].update(min_trials=3, warmup_repetitions=2)
    small = _plan(warmer, batch_sizes=(1,))
    runner.run_job(small, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    tiny_config["protocol"].update(min_trials=3, max_trials=6)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    tables = resume.read_tables([tmp_path / "a.parquet"])
    left = resume.trials_left(plan, tmp_path / "fresh", tables)
    assert set(left.values()) == {3}
    batch = {p.key: p.batch_size for p in plan.points}
    other = resume.under_another_setup(plan, tables, list(left))
    assert other and {batch[k] for k in other} == {1}
    assert len(other) == len(small.points)
    # Under its own protocol the rows seed their points, and none is said.
    assert resume.under_another_setup(small, tables, [p.key for p in small.points]) == []
    assert set(resume.trials_left(small, tmp_path / "fresh", tables).values()) == {0}

    path = tmp_path / "plan.json"
    path.write_text(plan.to_json())
    argv = ["seed-journal", "--plan", str(path), "--journal", str(tmp_path / "j")]
    assert main([*argv, str(tmp_path / "a.parquet")]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert "0 measured points copied" in said
    n = len(plan.points)
    assert f"of its {n} points left, {len(other)} have a row in the given tables" in said


def test_the_trials_left_are_what_the_journal_and_the_seeded_rows_leave(
    tiny_config, fake_backend, tmp_path
):
    tiny_config["protocol"].update(min_trials=3, max_trials=3)
    small = _plan(tiny_config, batch_sizes=(1,))
    runner.run_job(small, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    big = _plan(tiny_config, batch_sizes=(1, 2))
    batch = {p.key: p.batch_size for p in big.points}

    # Nothing measured: every point's three trials, and nothing is written.
    fresh = tmp_path / "fresh"
    assert set(resume.trials_left(big, fresh).values()) == {3}
    assert not fresh.exists()
    # The journal of the smaller job completes the batch-1 points; so do the rows that
    # seeding would copy into an empty journal.
    for left in (
        resume.trials_left(big, tmp_path / "a"),
        resume.trials_left(big, fresh, resume.read_tables([tmp_path / "a.parquet"])),
    ):
        assert {k: n for k, n in left.items()} == {k: 3 * (b == 2) for k, b in batch.items()}
    # A point with one of its trials in the journal needs two more.
    one = next(iter(runner.point_ids(small).values()))
    (tmp_path / "a" / f"{one}.t2.parquet").unlink()
    (tmp_path / "a" / f"{one}.t3.parquet").unlink()
    left = resume.trials_left(big, tmp_path / "a")
    assert sorted(left.values()).count(2) == 1


def test_feed_forward_blocks_are_timed_after_the_windows_of_an_architecture_point(
    tiny_config, tmp_path
):
    """The dense tiny Llama and a tiny OLMoE (mixture of experts, as OLMoE-1B-7B) on the real
    transformers backend: rows get the feed-forward blocks' share of a generation's time."""
    import json

    moe = {
        "architectures": ["OlmoeForCausalLM"],
        "model_type": "olmoe",
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "vocab_size": 512,
        "max_position_embeddings": 256,
    }
    (tmp_path / "moe").mkdir()
    (tmp_path / "moe" / "config.json").write_text(json.dumps(moe))
    tiny_config["models"]["moe"] = {"hub_id": "local/moe", "config": str(tmp_path / "moe")}
    tiny_config["experiments"] = {
        "architectures": {
            "enabled": True,
            "models": ["tiny", "moe"],
            "engines": ["pytorch"],
            "batch_sizes": [2],
            "input_tokens": 8,
            "output_tokens": 4,
            "ffn_time_share": True,
        }
    }
    jobs = plan_study(validate(tiny_config))
    untimed = dict(tiny_config["experiments"]["architectures"], ffn_time_share=False)
    plain = plan_study(validate({**tiny_config, "experiments": {"architectures": untimed}}))
    blocks = {}
    for group, job in jobs.items():
        assert job.ffn_time_share == ("architectures",)
        # Timing runs after the windows, so the points keep their identity.
        assert measurement_hash(job, 1) == measurement_hash(plain[group], 1)
        table = runner.run_job(job, tmp_path / f"{group}.parquet", tmp_path / group, log=print)
        assert table["ffn_time_share"].between(0.0, 1.0, inclusive="neither").all()
        blocks[job.model.name] = set(table["ffn_block"])
    assert blocks == {"tiny": {"LlamaMLP"}, "moe": {"OlmoeSparseMoeBlock"}}

    # Rows of a job that did not ask for the share seed no point of one that does: the same
    # point ids, but the rows lack the column the job is for, and seed-journal says so.
    group = "tiny__pytorch"
    timed = jobs[group]
    runner.run_job(plain[group], tmp_path / "plain.parquet", tmp_path / "plain", log=print)
    without = resume.read_tables([tmp_path / "plain.parquet"])
    assert point_ids(timed) == point_ids(plain[group])
    left = resume.trials_left(timed, None, without)
    assert set(left.values()) == {timed.protocol.min_trials}
    assert resume.unshared(timed, without, list(left)) == list(left)
    (note,) = resume.left_notes(timed, without, left)
    assert "without the feed-forward time share" in note
    assert resume.seed_journal(timed, without, tmp_path / "seeded") == 0
    # The job that did not ask is seeded by them, and the timed job by its own rows.
    assert set(resume.trials_left(plain[group], None, without).values()) == {0}
    own = resume.read_tables([tmp_path / f"{group}.parquet"])
    assert set(resume.trials_left(timed, None, own).values()) == {0}
    assert resume.left_notes(timed, own, resume.trials_left(timed, None, without)) == []


def test_only_eager_single_gpu_transformers_engines_time_feed_forward_blocks():
    """Whether a job that asks for the feed-forward time share can get it: rows of engines
    that cannot time the blocks stand without it."""
    from llm_energy.backends import times_feed_forward
    from llm_energy.measure.job import EngineSpec

    def engine(backend, **options):
        return EngineSpec(name=backend, backend=backend, **options)

    assert times_feed_forward(engine("transformers"))
    assert not times_feed_forward(engine("transformers", torch_compile=True))
    assert not times_feed_forward(engine("transformers", tensor_parallel_size=2))
    assert not times_feed_forward(engine("vllm"))
    assert not times_feed_forward(engine("vllm_server"))


def test_sigterm_stops_the_job_at_the_end_of_a_repetition_and_a_rerun_does_the_rest(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    import os
    import signal

    from llm_energy.measure import runs, stop

    plan = _plan(tiny_config)
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    calls = {"n": 0}
    real_generate = fake_backend.generate

    def generate(self, prepared, output_tokens, decoding):
        calls["n"] += 1
        # Six calls a point (a warm-up each for the full and prefill shapes, two repetitions
        # in each window): the twelfth is the second point's last repetition.
        if calls["n"] == 12:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_generate(self, prepared, output_tokens, decoding)

    monkeypatch.setattr(fake_backend, "generate", generate)
    stop.reset()
    try:
        with (
            stop.on_signals(),
            pytest.raises(stop.Stopped) as stopped,
            runs.recorded(journal, "2026-01-01T00:00:00.000Z"),
        ):
            runner.run_job(plan, out, journal, log=lambda m: None)
    finally:
        stop.reset()
    assert str(stopped.value).startswith("stopped by SIGTERM")
    assert f"the journal {journal} keeps every finished trial" in str(stopped.value)
    assert calls["n"] == 12  # not one repetition more
    kept = {p.name: p.read_bytes() for p in journal.glob("*.parquet")}
    assert len(kept) == 1  # the first point; the second point's trial was abandoned
    assert len(list(journal.glob("run.*.json"))) == 1  # the run's record, with how it ended
    assert not out.exists()
    # What the stopped job measured, as a table, without an engine: its one finished point.
    partial = runner.run_job(plan, out, journal, log=lambda m: None, measure=False)
    assert calls["n"] == 12 and len(partial) == 1
    assert {n: (journal / n).read_bytes() for n in kept} == kept
    monkeypatch.setattr(fake_backend, "generate", real_generate)
    messages: list[str] = []
    table = runner.run_job(plan, out, journal, log=messages.append)
    assert any(f"{len(kept)} already in the journal" in m for m in messages)
    # The stop is on the run's record, and the next run says so.
    assert "journal: 1 earlier runs of this job (1 stopped)" in messages
    (stopped_run,) = [m for m in messages if m.startswith("journal: a run of this job stopped")]
    assert "started 2026-01-01T00:00:00.000Z" in stopped_run and "exit 75" in stopped_run
    assert "stopped by SIGTERM" in stopped_run
    assert len(table) == len(plan.points) and table["point_id"].is_unique
    assert {n: (journal / n).read_bytes() for n in kept} == kept


def test_an_engine_that_dies_of_the_same_signal_stops_the_job_cleanly(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    from llm_energy.measure import stop

    def engine_gone(self, prepared, output_tokens, decoding):
        stop._record(15, None)  # SIGTERM reached this process and its engine at once
        raise RuntimeError("EngineDeadError: engine core exited")

    monkeypatch.setattr(fake_backend, "generate", engine_gone)
    try:
        with pytest.raises(
            stop.Stopped, match=r"ended the current window early \(RuntimeError: EngineDeadError"
        ):
            runner.run_job(_plan(tiny_config), tmp_path / "o", tmp_path / "j", log=print)
    finally:
        stop.reset()


# --- CUDA errors inside a window ----------------------------------------------------------------


def _cuda_errors(monkeypatch, fake_backend, messages: dict[int, str], recover_error: str = ""):
    """The fake backend raises ``messages[batch]`` (once per batch) inside the windows, and
    counts its recoveries (failing them with ``recover_error``)."""
    raised: set[int] = set()
    recoveries: list[int] = []
    real_generate = fake_backend.generate

    def generate(self, prepared, output_tokens, decoding):
        if prepared in messages and prepared not in raised:
            raised.add(prepared)
            raise RuntimeError(messages[prepared] + "\nCUDA kernel errors might be reported...")
        return real_generate(self, prepared, output_tokens, decoding)

    def recover(self):
        recoveries.append(1)
        if recover_error:
            raise RuntimeError(recover_error)

    monkeypatch.setattr(fake_backend, "generate", generate)
    monkeypatch.setattr(fake_backend, "recover", recover)
    return recoveries


def test_a_cuda_error_fails_its_point_with_its_message_and_the_job_goes_on(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    plan = _plan(tiny_config, batch_sizes=(1, 2, 4))
    message = "CUDA error: invalid configuration argument"
    recoveries = _cuda_errors(monkeypatch, fake_backend, {2: message})
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    table = runner.run_job(plan, out, journal, log=print)
    assert len(table) == len(plan.points) and len(recoveries) == 1
    failed = table[table["error"].str.startswith("failed: ")]
    assert failed["error"].tolist() == [f"failed: {message}"]
    assert failed["feasible"].all() and (failed["repetitions"] == 0).all()
    assert failed["energy_j"].isna().all() and failed["duration_s"].isna().all()
    assert failed["protocol_note"].str.startswith("not measured: failed: CUDA error").all()
    # Batch 4 of the same shape was measured: a device error bounds nothing, unlike memory.
    same_shape = table[table["input_tokens"] == int(failed["input_tokens"].iloc[0])]
    same_shape = same_shape[same_shape["output_tokens"] == int(failed["output_tokens"].iloc[0])]
    assert same_shape.set_index("batch_size").loc[4, "repetitions"] > 0
    # A rerun measures the failed point again and keeps the rest.
    kept = {p.name: p.read_bytes() for p in journal.glob("*.parquet")}
    messages: list[str] = []
    again = runner.run_job(plan, out, journal, log=messages.append)
    assert any("1 trials that failed on a device error are measured again" in m for m in messages)
    assert not again["error"].str.startswith("failed: ").any()
    assert (again["repetitions"] > 0).all() and again["point_id"].is_unique
    assert {n: (journal / n).read_bytes() for n in kept} == kept  # the failed entry stays too


@pytest.mark.parametrize(
    ("messages", "recover_error", "why"),
    [
        (
            {2: "CUDA error: an illegal memory access was encountered"},
            "",
            "an error that CUDA keeps for the rest of the process",
        ),
        (
            {2: "CUDA error: device-side assert triggered"},
            "",
            "an error that CUDA keeps for the rest of the process",
        ),
        (
            {2: "CUDA error: invalid argument", 4: "CUBLAS_STATUS_EXECUTION_FAILED when calling"},
            "",
            "the 2 last trials each ended in one",
        ),
        (
            {2: "CUDA error: launch failure of a kernel"},
            "CUDA error: unspecified launch failure",
            "freeing the device failed too (CUDA error: unspecified launch failure)",
        ),
    ],
)
def test_a_device_that_is_unusable_stops_the_job_with_one_message_and_the_journal_intact(
    tiny_config, fake_backend, tmp_path, monkeypatch, messages, recover_error, why
):
    plan = _plan(tiny_config, batch_sizes=(1, 2, 4))
    # The first shape's batches in a row: 1, then 2, then 4.
    plan = dataclasses.replace(plan, points=tuple(p for p in plan.points if p.output_tokens == 4))
    _cuda_errors(monkeypatch, fake_backend, messages, recover_error)
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    with pytest.raises(DeviceUnusableError) as stopped:
        runner.run_job(plan, out, journal, log=print)
    text = str(stopped.value)
    assert text.startswith("the GPU is unusable after a CUDA error at batch ")
    assert f"({why})" in text and f"the journal {journal} keeps every finished trial" in text
    assert "\n" not in text
    assert not out.exists()
    entries = [pd.read_parquet(p).iloc[0] for p in journal.glob("*.parquet")]
    assert any(e["batch_size"] == 1 and e["repetitions"] > 0 for e in entries)
    assert any(str(e["error"]).startswith("failed: CUDA") for e in entries)
    # The next run, on a device that works, measures what failed and what was left.
    monkeypatch.setattr(fake_backend, "generate", FakeBackend.generate)
    table = runner.run_job(plan, out, journal, log=lambda m: None)
    assert len(table) == len(plan.points) and (table["repetitions"] > 0).all()


def test_the_cli_says_why_a_job_stopped_on_an_unusable_device_in_one_line(capsys, monkeypatch):
    from llm_energy import cli
    from llm_energy.cli import measure

    def unusable(args):
        raise DeviceUnusableError("the GPU is unusable after a CUDA error at batch 8")

    monkeypatch.setattr(measure, "cmd_measure", unusable)
    assert cli.main(["measure", "--plan", "p.json", "--out", "o.parquet"]) == 2
    assert capsys.readouterr().err == (
        "llm-energy: error: the GPU is unusable after a CUDA error at batch 8\n"
    )


@pytest.mark.parametrize(
    ("message", "device", "sticky"),
    [
        ("CUDA error: an illegal memory access was encountered", True, True),
        ("CUDA error: device-side assert triggered", True, True),
        ("CUDA error: misaligned address", True, True),
        ("CUDA error: invalid configuration argument", True, False),
        ("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`", True, False),
        ("NCCL error in: ProcessGroupNCCL.cpp:1234, unhandled cuda error", True, False),
        ("CUDA out of memory. Tried to allocate 2.00 GiB", False, False),
        ("CUDA error: out of memory", False, False),
        ("shape mismatch", False, False),
    ],
)
def test_device_errors_are_told_from_running_out_of_memory(message, device, sticky):
    backend = FakeBackend(None, None, "cuda", "bfloat16")
    assert backend.is_device_error(RuntimeError(message)) is device
    assert backend.is_unusable(RuntimeError(message)) is sticky


def test_each_row_records_the_environment_variables_that_change_how_its_engine_runs(
    tiny_config, fake_backend, monkeypatch, tmp_path
):
    from llm_energy.measure.provenance import ENGINE_ENVIRONMENT_PREFIXES

    for name in list(os.environ):
        if name.startswith(ENGINE_ENVIRONMENT_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VLLM_USE_FLASHINFER_SAMPLER", "0")
    monkeypatch.setenv("NCCL_P2P_DISABLE", "1")
    monkeypatch.setenv("HF_TOKEN", "secret")  # not an engine setting: not recorded
    table = runner.run_job(_plan(tiny_config), tmp_path / "o.parquet", tmp_path / "j", log=print)
    assert set(table["engine_environment"]) == {"NCCL_P2P_DISABLE=1,VLLM_USE_FLASHINFER_SAMPLER=0"}


def test_a_job_before_its_deadline_starts_no_trial_it_would_not_finish(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    """With a deadline, a trial that would end after it (by the point's longest trial so far in
    the run, plus the control point) is not started: the job measures its control point at the
    end and stops, the journal keeps every trial, and a rerun measures the rest."""
    from llm_energy.measure import stop

    tiny_config["protocol"].update(min_trials=2, control_point=True)
    plan = _plan(tiny_config)
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    now = {"s": 0.0}
    real_generate = fake_backend.generate

    def generate(self, prepared, output_tokens, decoding):
        now["s"] += 1.0  # every generation takes a second on the job's clock
        return real_generate(self, prepared, output_tokens, decoding)

    monkeypatch.setattr(fake_backend, "generate", generate)
    # With the plan's estimate of each point's first trial (here 100 s), a fresh journal with
    # 50 s left starts none, nor its engine. With one point's estimate unknown, the engine
    # starts, and the others are passed over: only the control point, at the run's start and
    # end.
    over = {p.key: 100.0 for p in plan.points}
    early = stop.Deadline(at=50.0, source="a test", clock=lambda: now["s"])
    fresh = tmp_path / "fresh"
    said = "are expected to take 100 s each by the plan's estimate"
    with pytest.raises(stop.Stopped, match=said):
        runner.run_job(plan, out, fresh, log=print, deadline=early, expected_trial_s=over)
    assert not list(fresh.glob("*.t*.parquet")) and not list(fresh.glob("control.*"))
    unknown = dict(list(over.items())[1:])
    with pytest.raises(stop.Stopped, match="stopped before a trial of"):
        runner.run_job(plan, out, fresh, log=print, deadline=early, expected_trial_s=unknown)
    assert len(list(fresh.glob("control.*"))) == 2
    now["s"] = 0.0
    # A trial or a control point takes 6 s: room for the first pass over the six points and
    # the control point twice, not for the second pass.
    deadline = stop.Deadline(at=50.0, source="a test", clock=lambda: now["s"])
    messages: list[str] = []
    with pytest.raises(stop.Stopped) as stopped:
        runner.run_job(plan, out, journal, log=messages.append, deadline=deadline)
    message = str(stopped.value)
    assert message.startswith("stopped before a trial of ")
    assert "(a test)" in message and "keeps every finished trial" in message
    assert any(m.startswith("the job's time ends in 50 s (a test)") for m in messages)
    # Every finished trial is in the journal, none was abandoned, and the time was not passed.
    measured = sorted(journal.glob("*.t*.parquet"))
    assert len(measured) == len(plan.points) and now["s"] <= deadline.at
    # The run's control point was measured at its end too, so its drift is known.
    assert len(list(journal.glob("control.*.end.parquet"))) == 1
    # A later run knows the points' trial times from the journal: with room for its control
    # point and less than a trial, it starts none, not even a point's first in this run.
    kept = {p.name: p.read_bytes() for p in journal.glob("*.t*.parquet")}
    longest = max(pd.read_parquet(p)["trial_s"].iloc[0] for p in journal.glob("*.t*.parquet"))
    assert longest > 0
    short = stop.Deadline(
        at=now["s"] + 6.0 + longest - 1.0, source="a test", clock=lambda: now["s"]
    )
    with pytest.raises(stop.Stopped, match=rf"took up to {longest:.0f} s in earlier runs"):
        runner.run_job(plan, out, journal, log=lambda m: None, deadline=short)
    assert {p.name: p.read_bytes() for p in journal.glob("*.t*.parquet")} == kept
    # The rows do not carry it: it is the journal's.
    assert "trial_s" not in runner.run_job(plan, out, journal, log=print, measure=False)
    monkeypatch.setattr(fake_backend, "generate", real_generate)
    # A run whose time has ended already starts no engine, and loses nothing.
    kept = {p.name: p.read_bytes() for p in journal.glob("*.parquet")}
    over = stop.Deadline(at=10.0, source="a test", clock=lambda: 11.0)
    fake = runner.make_backend
    monkeypatch.setattr(runner, "make_backend", lambda *a, **k: pytest.fail("engine started"))
    with pytest.raises(stop.Stopped, match=r"\(a test\) before its engine started"):
        runner.run_job(plan, out, journal, log=lambda m: None, deadline=over)
    assert {p.name: p.read_bytes() for p in journal.glob("*.parquet")} == kept
    # Nor does a run whose time left is shorter than every point's trial in earlier runs:
    # the engine's start would buy no trial.
    halfway = tmp_path / "halfway"  # each point's first trial alone
    shutil.copytree(journal, halfway)
    for second in halfway.glob("*.t2.parquet"):
        second.unlink()
    left = {p.name: p.read_bytes() for p in halfway.glob("*.parquet")}
    shortest = min(pd.read_parquet(p)["trial_s"].iloc[0] for p in halfway.glob("*.t*.parquet"))
    brief = stop.Deadline(at=shortest / 2, source="a test", clock=lambda: 0.0)
    with pytest.raises(stop.Stopped, match=r"no trial fits .* so its engine did not start"):
        runner.run_job(plan, out, halfway, log=lambda m: None, deadline=brief)
    assert {p.name: p.read_bytes() for p in halfway.glob("*.parquet")} == left
    monkeypatch.setattr(runner, "make_backend", fake)
    table = runner.run_job(plan, out, journal, log=lambda m: None)
    assert len(table) == len(plan.points) and table["trials"].ge(2).all()


def test_a_deadline_is_the_earliest_of_stop_by_the_environment_and_slurms_time_limit():
    from llm_energy.errors import LlmEnergyError
    from llm_energy.measure.stop import deadline_from

    relative = deadline_from("+90", environ={})
    assert 89 < relative.left_s() <= 90 and relative.source == "--stop-by +90"
    import datetime as dt

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=600)
    absolute = deadline_from(soon.strftime("%Y-%m-%dT%H:%M:%SZ"), environ={})
    assert 595 < absolute.left_s() <= 600
    assert deadline_from(None, environ={}) is None
    # Under Slurm, the job's end as squeue gives it; none where it has no limit.
    at = dt.datetime.now().timestamp() + 3600
    slurm = deadline_from(None, environ={"SLURM_JOB_ID": "7"}, slurm_end=lambda job: at)
    assert 3595 < slurm.left_s() <= 3600 and slurm.source == "Slurm job 7's time limit"
    assert deadline_from(None, environ={"SLURM_JOB_ID": "7"}, slurm_end=lambda job: None) is None
    for bad in ("+soon", "+-5", "tomorrow"):
        with pytest.raises(LlmEnergyError, match="--stop-by"):
            deadline_from(bad, environ={})
    # The environment sets one end for every job a workflow starts; --stop-by comes first.
    shared = {"LLM_ENERGY_STOP_BY": "+120"}
    from_env = deadline_from(None, environ=shared)
    assert 119 < from_env.left_s() <= 120 and from_env.source == "LLM_ENERGY_STOP_BY +120"
    assert deadline_from("+90", environ=shared).source == "--stop-by +90"
    with pytest.raises(LlmEnergyError, match="LLM_ENERGY_STOP_BY soon"):
        deadline_from(None, environ={"LLM_ENERGY_STOP_BY": "soon"})
    # Under Slurm, whichever ends first.
    both = {**shared, "SLURM_JOB_ID": "7"}
    assert deadline_from(None, environ=both, slurm_end=lambda job: at).source.startswith("LLM")
    early = dt.datetime.now().timestamp() + 60
    first = deadline_from("+90", environ=both, slurm_end=lambda job: early)
    assert first.source == "Slurm job 7's time limit" and first.left_s() <= 60


def test_a_runs_control_points_are_filed_under_the_runs_record(tiny_config, fake_backend, tmp_path):
    from llm_energy.measure import runs
    from llm_energy.measure.store import Journal

    tiny_config["protocol"].update(min_trials=1, control_point=True)
    journal = tmp_path / "journal"
    with runs.recorded(journal, "2026-12-05T02:00:00.000+00:00"):
        runner.run_job(_plan(tiny_config), tmp_path / "out.parquet", journal, log=lambda m: None)
    controls = Journal(journal).controls()
    assert sorted(controls["edge"]) == ["end", "start"]
    assert set(controls["run_started"]) == {r["started_utc"] for r in Journal(journal).runs()}


def test_a_long_trial_says_in_the_log_what_it_is_doing_while_it_runs(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    """A trial longer than a heartbeat logs lines while it runs: which trial, its phase."""
    import threading

    from llm_energy.measure import heartbeat

    monkeypatch.setattr(heartbeat, "HEARTBEAT_S", 0.01)
    beat = threading.Event()

    def slow_generate(self, prepared, output_tokens, decoding):
        beat.wait(2)  # until a heartbeat has logged, a couple of seconds at most
        return prepared * output_tokens

    monkeypatch.setattr(FakeBackend, "generate", slow_generate)
    messages: list[str] = []

    def log(message: str) -> None:
        messages.append(message)
        if message.startswith("... still at"):
            beat.set()

    plan = _plan(tiny_config, batch_sizes=(1,))
    runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=log)
    beats = [m for m in messages if m.startswith("... still at trial 1 batch=1 in=")]
    assert beats and ", warm-up: " in beats[0] and " min so far" in beats[0]


def test_a_trial_that_would_not_fit_is_passed_over_and_the_trials_that_fit_are_measured(
    tiny_config, fake_backend, tmp_path, monkeypatch
):
    """A point whose trial would end after the job's time is passed over for the run, said in
    the log, and the others' trials go on while they fit; the job then stops with the passed
    over point named, and where its trial is longer than the whole run's time, says that no run
    as long ever measures it."""
    from llm_energy.measure import stop

    tiny_config["protocol"].update(min_trials=1, control_point=False)
    plan = _plan(tiny_config)
    now = {"s": 0.0}
    real_generate = fake_backend.generate

    def generate(self, prepared, output_tokens, decoding):
        now["s"] += 1.0
        return real_generate(self, prepared, output_tokens, decoding)

    monkeypatch.setattr(fake_backend, "generate", generate)
    long_point = plan.points[0]
    expected = {p.key: 3.0 for p in plan.points} | {long_point.key: 100.0}
    deadline = stop.Deadline(at=60.0, source="a test", clock=lambda: now["s"])
    journal, messages = tmp_path / "journal", []
    with pytest.raises(stop.Stopped) as stopped:
        runner.run_job(
            plan,
            tmp_path / "out.parquet",
            journal,
            log=messages.append,
            deadline=deadline,
            expected_trial_s=expected,
        )
    passed = [m for m in messages if m.startswith("passed over for this run: ")]
    assert len(passed) == 1 and "expected to take 100 s each by the plan's estimate" in passed[0]
    assert "longer than the whole 60 s this run had" in passed[0]
    # Each trial's line sets its time against the plan's estimate of its point's trial.
    against = [m for m in messages if "of the plan's 3 s; pass ends in" in m]
    assert len(against) == len(plan.points) - 1
    assert "give the job a longer time limit" in str(stopped.value)
    # Every other point was measured; the long one has no trial.
    measured = {p.name.split(".t")[0] for p in journal.glob("*.t*.parquet")}
    assert len(measured) == len(plan.points) - 1
    ids = runner.point_ids(plan)
    assert ids[long_point.key] not in measured
    assert {ids[p.key] for p in plan.points[1:]} == measured


def test_a_searched_shape_whose_largest_batch_would_not_fit_in_time_is_passed_over_whole(
    tiny_config, fake_backend, tmp_path
):
    """Where the largest batch of a shape searched largest first would end after the job's
    time, its smaller batches are not measured in its stead: the shape waits for a run with
    time for it, and the other shapes are measured."""
    from llm_energy.measure import stop
    from llm_energy.measure.bounds import shape_key

    plan = _plan(tiny_config, batch_sizes=(1, 2))
    tags = tuple(sorted({t for p in plan.points for t in p.experiments}))
    plan = dataclasses.replace(plan, largest_feasible_only=tags)
    slow = next(p for p in plan.points if p.batch_size == 2)
    expected = {p.key: 0.0 for p in plan.points} | {slow.key: 1e6}
    deadline = stop.Deadline(at=1e5, source="a test")
    journal = tmp_path / "journal"
    with pytest.raises(stop.Stopped, match="longer than the whole"):
        runner.run_job(
            plan,
            tmp_path / "out.parquet",
            journal,
            log=lambda m: None,
            deadline=deadline,
            expected_trial_s=expected,
        )
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, measure=False)
    ids = runner.point_ids(plan)
    same_shape = {ids[p.key] for p in plan.points if shape_key(p) == shape_key(slow)}
    assert not same_shape & set(table["point_id"])
    others = {ids[p.key] for p in plan.points if shape_key(p) != shape_key(slow)}
    assert others <= set(table["point_id"])


def test_the_host_cpu_is_read_from_cpuinfo_and_falls_back_without_it(tmp_path):
    from llm_energy.measure.provenance import host_cpu

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core "
        "Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
    )
    cpu = host_cpu(info)
    assert cpu["host_cpu_model"] == "AMD EPYC 9654 96-Core Processor"
    assert 1 <= cpu["host_cpu_cores"] <= (os.cpu_count() or 1)
    missing = host_cpu(tmp_path / "absent")["host_cpu_model"]
    assert missing and missing != cpu["host_cpu_model"]
