"""A retried measurement job that failed on its input stops at once with the first failure;
one that failed otherwise is tried again (src/llm_energy/measure/attempts.py, through the CLI).
The same under a real Slurm: tests/test_slurm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from llm_energy import backends, cli
from llm_energy.config import validate
from llm_energy.errors import BackendError, InputError, LlmEnergyError, MissingExtraError
from llm_energy.measure import attempts
from llm_energy.measure.plan import plan_study
from llm_energy.measure.point_ids import point_ids


@pytest.fixture
def plan_file(tiny_config, tmp_path) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(plan_study(validate(tiny_config))["tiny__pytorch"].to_json())
    return path


class Require:
    """backends.require that raises the given error, counting its calls."""

    def __init__(self, error: Exception | None) -> None:
        self.error, self.calls = error, 0

    def __call__(self, backend: str, engine: str | None = None) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def _measure(plan_file: Path, attempt: int) -> int:
    journal = plan_file.parent / "journal"
    out = plan_file.parent / "out.parquet"
    argv = ["measure", "--plan", str(plan_file), "--out", str(out), "--journal", str(journal)]
    return cli.main([*argv, "--attempt", str(attempt)])


def test_a_retry_of_a_job_that_failed_on_its_input_stops_at_once(plan_file, monkeypatch, capsys):
    missing = Require(MissingExtraError("the pytorch engine needs pip install 'llm-energy[x]'"))
    monkeypatch.setattr(backends, "require", missing)
    assert _measure(plan_file, 1) == 2
    record = json.loads((plan_file.parent / "journal" / attempts.RECORD).read_text())
    assert record["error"] == "MissingExtraError" and record["attempt"] == 1
    capsys.readouterr()

    # Attempts 2 and 3 do not start the job: the same message, and why they stopped.
    for attempt in (2, 3):
        assert _measure(plan_file, attempt) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            "llm-energy: error: the pytorch engine needs pip install 'llm-energy[x]'\n"
        )
        assert f"(attempt {attempt} stops at once: attempt 1 failed so at " in err
        assert "with a MissingExtraError, which a retry cannot change" in err
    assert missing.calls == 1

    # A new run (attempt 1) forgets the record: the fixed environment is tried.
    fixed = Require(BackendError("the model did not load"))
    monkeypatch.setattr(backends, "require", fixed)
    assert _measure(plan_file, 1) == 2
    assert fixed.calls == 1
    # That failure is one a retry may change: no record, and attempt 2 runs the job again.
    assert not (plan_file.parent / "journal" / attempts.RECORD).exists()
    assert _measure(plan_file, 2) == 2
    assert fixed.calls == 2


def test_a_record_of_another_plan_does_not_stop_the_job(plan_file, tmp_path):
    journal = tmp_path / "journal"
    attempts.record(journal, "another plan", 1, InputError("malformed trace x.csv, line 3"))
    attempts.check(journal, plan_file.read_text(), 2)  # runs
    with pytest.raises(LlmEnergyError, match=r"malformed trace x\.csv, line 3"):
        attempts.check(journal, "another plan", 2)
    # A failure a retry may change is not written down.
    attempts.record(tmp_path / "other", "plan", 1, BackendError("server not healthy"))
    assert not (tmp_path / "other").exists()


def test_a_malformed_end_of_the_jobs_time_is_a_failure_a_retry_cannot_change(
    plan_file, monkeypatch, capsys
):
    monkeypatch.setenv("LLM_ENERGY_STOP_BY", "at noon")
    engine = Require(None)
    monkeypatch.setattr(backends, "require", engine)
    assert _measure(plan_file, 1) == 2
    assert "LLM_ENERGY_STOP_BY at noon: expected +SECONDS or an ISO 8601 time" in (
        capsys.readouterr().err
    )
    record = json.loads((plan_file.parent / "journal" / attempts.RECORD).read_text())
    assert record["error"] == "ConfigError"
    assert _measure(plan_file, 2) == 2 and engine.calls == 0
    assert "(attempt 2 stops at once" in capsys.readouterr().err


def test_the_time_model_rows_for_a_deadline_are_read_before_the_engine_starts(
    plan_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("LLM_ENERGY_STOP_BY", "+600")
    engine = Require(BackendError("the model did not load"))
    monkeypatch.setattr(backends, "require", engine)
    journal, out = tmp_path / "journal", tmp_path / "out.parquet"
    argv = ["measure", "--plan", str(plan_file), "--out", str(out), "--journal", str(journal)]
    # A table that is not there is the input's failure, before any engine.
    missing = str(tmp_path / "missing.parquet")
    assert cli.main([*argv, "--time-model-rows", missing]) == 2
    assert "--time-model-rows: " in capsys.readouterr().err and engine.calls == 0
    # A table that is no job table says what it lacks.
    other = tmp_path / "other.parquet"
    pd.DataFrame({"model": ["another"], "engine": ["vllm"]}).to_parquet(other)
    assert cli.main([*argv, "--time-model-rows", str(other)]) == 2
    assert "the tables lack the column" in capsys.readouterr().err and engine.calls == 0
    # Rows of another model and engine time nothing here: the log says so, and the job goes on.
    shipped = Path(__file__).parents[1] / "resources/measurements/h200"
    rows = str(shipped / "grid__llama-3.1-8b__vllm.parquet")
    assert cli.main([*argv, "--time-model-rows", rows]) == 2
    said = capsys.readouterr().out
    assert "estimate" in said and "for the job's deadline" in said
    assert engine.calls == 1


def test_a_deadline_times_a_task_stream_by_the_lengths_the_job_is_given(
    tiny_config, tmp_path, monkeypatch, capsys
):
    """With a deadline, a classical task's stream that no row measured is timed by the
    requests the job draws from --task-lengths, not at the task's length caps."""
    from test_estimate import GENERATION_AT_BATCH_1, TRUE, _rows

    config = {**tiny_config, "experiments": {"classical_tasks": GENERATION_AT_BATCH_1}}
    plan = plan_study(validate(config))["tiny__pytorch"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    tasks = tmp_path / "task_lengths"
    tasks.mkdir()
    pd.DataFrame({"input_tokens": [20, 30], "output_tokens": [5, 7]}).to_parquet(
        tasks / "generation.parquet"
    )
    rows = tmp_path / "rows.parquet"
    _rows(TRUE).to_parquet(rows)
    monkeypatch.setenv("LLM_ENERGY_STOP_BY", "+600")
    monkeypatch.setattr(backends, "require", Require(BackendError("the model did not load")))
    argv = ["measure", "--plan", str(plan_file), "--out", str(tmp_path / "out.parquet")]
    argv += ["--journal", str(tmp_path / "journal"), "--time-model-rows", str(rows)]
    assert cli.main([*argv, "--task-lengths", str(tasks)]) == 2
    assert "1 request stream by its requests' own lengths" in (capsys.readouterr().out)
    # The run's record keeps what the plan expected of each point's trial, by point id.
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "journal").glob("run.*.json")]
    assert list(record["expected_trial_s"]) == list(point_ids(plan).values())
    assert all(seconds > 0 for seconds in record["expected_trial_s"].values())
    assert "1 request stream by its requests' own lengths" in record["expected_basis"]
    assert cli.main([*argv, "--task-lengths", str(tmp_path / "none")]) == 2
    assert "1 request stream as batches at its length caps, an upper bound" in (
        capsys.readouterr().out
    )
