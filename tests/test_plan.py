"""Planning: one job per (model, engine), shared points measured once, JSON round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from llm_energy.config import load_config, validate
from llm_energy.errors import ConfigError
from llm_energy.measure.job import DecodingSpec, JobPlan, PointSpec, stable_hash
from llm_energy.measure.plan import plan_study, resolve_meter, trace_inputs
from llm_energy.measure.point_ids import id_with_setup, measurement_hash, point_ids


def _plan(config: dict) -> dict[str, JobPlan]:
    return plan_study(validate(config))


def _by_shape(job: JobPlan) -> dict[tuple[int, int, int], PointSpec]:
    return {(p.batch_size, p.input_tokens, p.output_tokens): p for p in job.points}


def test_tiny_config_gives_one_group(tiny_config):
    jobs = _plan(tiny_config)
    assert list(jobs) == ["tiny__pytorch"]
    job = jobs["tiny__pytorch"]
    assert job.group == "tiny__pytorch"
    assert job.model.name == "tiny"
    assert job.model.hub_id == "local/tiny"
    assert job.engine.name == "pytorch"
    assert job.engine.backend == "transformers"
    assert job.device == "cpu"
    assert job.meter.primary == "none"
    assert job.protocol.min_repetitions == 2
    assert job.protocol.max_repetitions == 1000


def test_points_shared_by_both_sweeps_appear_once_with_both_tags(tiny_config):
    job = _plan(tiny_config)["tiny__pytorch"]
    # input sweep: b in {1,2} x in {8,16} at out 4; output sweep: b in {1,2} x out {4,8} at in 8
    shapes = _by_shape(job)
    assert sorted(shapes) == [
        (1, 8, 4),
        (1, 8, 8),
        (1, 16, 4),
        (2, 8, 4),
        (2, 8, 8),
        (2, 16, 4),
    ]
    assert len(job.points) == len(shapes)  # no duplicates
    for b in (1, 2):
        assert shapes[(b, 8, 4)].experiments == ("input_sweep", "output_sweep")
        assert shapes[(b, 16, 4)].experiments == ("input_sweep",)
        assert shapes[(b, 8, 8)].experiments == ("output_sweep",)
    assert all(p.decoding == DecodingSpec() for p in job.points)


def test_points_are_sorted_by_key(tiny_config):
    job = _plan(tiny_config)["tiny__pytorch"]
    keys = [p.key for p in job.points]
    assert keys == sorted(keys)


def test_disabled_families_add_no_points(tiny_config):
    baseline = _plan(tiny_config)["tiny__pytorch"].points
    tiny_config["experiments"]["architectures"] = {
        "enabled": False,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [32],
    }
    assert _plan(tiny_config)["tiny__pytorch"].points == baseline


def test_disabled_controlled_sweeps_give_no_jobs(tiny_config):
    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    assert _plan(tiny_config) == {}


def test_enabled_family_adds_its_points_with_its_tag(tiny_config):
    tiny_config["experiments"]["architectures"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1, 32],
        "input_tokens": 8,
        "output_tokens": 4,
    }
    shapes = _by_shape(_plan(tiny_config)["tiny__pytorch"])
    assert shapes[(32, 8, 4)].experiments == ("architectures",)
    assert shapes[(1, 8, 4)].experiments == ("architectures", "input_sweep", "output_sweep")
    assert len(shapes) == 7


def test_decoding_strategies_are_separate_points(tiny_config):
    tiny_config["decoding"] = {
        "greedy": {"strategy": "greedy"},
        "beam": {"strategy": "beam", "num_beams": 2},
    }
    tiny_config["experiments"]["decoding_strategies"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "strategies": ["greedy", "beam"],
        "batch_sizes": [1],
        "input_tokens": 8,
        "output_tokens": 4,
    }
    job = _plan(tiny_config)["tiny__pytorch"]
    at_shape = [
        p for p in job.points if (p.batch_size, p.input_tokens, p.output_tokens) == (1, 8, 4)
    ]
    by_name = {p.decoding.name: p for p in at_shape}
    assert sorted(by_name) == ["beam", "greedy"]
    assert by_name["beam"].decoding.num_beams == 2
    assert by_name["beam"].experiments == ("decoding",)
    assert set(by_name["greedy"].experiments) == {"decoding", "input_sweep", "output_sweep"}


def test_one_job_per_model_and_engine(tiny_config):
    tiny_config["models"]["tiny2"] = dict(tiny_config["models"]["tiny"])
    tiny_config["engines"]["compiled"] = {"backend": "transformers", "torch_compile": True}
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["models"] = ["tiny", "tiny2"]
    sweeps["engines"] = ["pytorch", "compiled"]
    jobs = _plan(tiny_config)
    assert sorted(jobs) == [
        "tiny2__compiled",
        "tiny2__pytorch",
        "tiny__compiled",
        "tiny__pytorch",
    ]
    assert jobs["tiny__compiled"].engine.torch_compile is True
    assert jobs["tiny__pytorch"].engine.torch_compile is False
    assert {len(j.points) for j in jobs.values()} == {6}


def test_vllm_engine_is_planned_with_the_job_sizing_its_engine(tiny_config):
    tiny_config["engines"]["vllm"] = {"backend": "vllm", "cuda_graphs": True}
    tiny_config["experiments"]["controlled_sweeps"]["engines"] = ["pytorch", "vllm"]
    jobs = _plan(tiny_config)
    assert sorted(jobs) == ["tiny__pytorch", "tiny__vllm"]
    assert jobs["tiny__vllm"].engine.backend == "vllm"
    assert jobs["tiny__vllm"].points == jobs["tiny__pytorch"].points


def test_beam_search_on_vllm_fails_at_planning(tiny_config):
    tiny_config["engines"]["vllm"] = {"backend": "vllm"}
    tiny_config["decoding"] = {"greedy": {"strategy": "greedy"}, "beam": {"strategy": "beam"}}
    tiny_config["experiments"]["decoding_strategies"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["vllm"],
        "strategies": ["greedy", "beam"],
    }
    with pytest.raises(ConfigError, match="beam") as exc:
        _plan(tiny_config)
    assert "experiments.decoding_strategies.engines: 'vllm'" in str(exc.value)


def test_online_serving_plans_offline_and_online_streams_of_the_same_requests(tiny_config):
    tiny_config["engines"]["vllm"] = {"backend": "vllm"}
    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    tiny_config["experiments"]["online_serving"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["vllm"],
        "batch_sizes": [2, 8],
        "requests": 24,
        "trace": "azure_code",
        "input_tokens": 32,
        "max_output_tokens": 64,
    }
    job = _plan(tiny_config)["tiny__vllm"]
    assert trace_inputs(job) == ["azure_code"]
    streams = {(p.batch_size, p.stream.serving) for p in job.points}
    assert streams == {(2, "offline"), (2, "online"), (8, "offline"), (8, "online")}
    assert {(p.stream.requests, p.input_tokens, p.output_tokens) for p in job.points} == {
        (24, 32, 64)
    }
    ids = {id_with_setup(p, measurement_hash(job, 1), 1) for p in job.points}
    assert len(ids) == 4 and all("azure_code-n24" in i for i in ids)
    again = JobPlan.from_json(job.to_json())
    assert again == job and again.config_hash == job.config_hash


def test_online_serving_on_transformers_fails_at_planning(tiny_config):
    tiny_config["experiments"]["online_serving"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
    }
    with pytest.raises(ConfigError, match="continuous batching"):
        _plan(tiny_config)


def test_batch_point_ids_do_not_change_with_request_streams():
    """Journals written before request streams existed stay valid."""
    p = PointSpec(8, 512, 64)
    assert p.key == (8, 512, 64, "greedy")
    assert id_with_setup(p, "abc", 1) == "b8_i512_o64_greedy_" + stable_hash(
        [dataclasses.asdict(DecodingSpec()), "abc"], 8
    )


def test_defined_but_unused_vllm_engine_is_fine(tiny_config):
    tiny_config["engines"]["vllm"] = {"backend": "vllm"}
    assert list(_plan(tiny_config)) == ["tiny__pytorch"]


# --- meters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cuda", "nvml"), ("cuda:1", "nvml"), ("cpu", "codecarbon")],
)
def test_auto_meter_resolves_by_device(tiny_config, device, expected):
    tiny_config["device"] = device
    tiny_config["meter"] = {"primary": "auto"}
    assert resolve_meter("auto", device) == expected
    assert _plan(tiny_config)["tiny__pytorch"].meter.primary == expected


def test_named_meter_is_kept(tiny_config):
    assert resolve_meter("none", "cuda") == "none"
    assert resolve_meter("codecarbon", "cuda") == "codecarbon"
    tiny_config["meter"] = {"primary": "none", "cross_check": ["codecarbon"]}
    meter = _plan(tiny_config)["tiny__pytorch"].meter
    assert meter.primary == "none"
    assert meter.cross_check == ("codecarbon",)
    assert meter.codecarbon["country_iso_code"] == "USA"


# --- JSON round trip and hashes -----------------------------------------------------------------


def test_job_plan_json_round_trip(tiny_config):
    tiny_config["decoding"] = {
        "greedy": {"strategy": "greedy"},
        "hot": {"strategy": "sample", "temperature": 0.7, "top_p": 0.9},
    }
    tiny_config["experiments"]["decoding_strategies"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "strategies": ["hot"],
        "batch_sizes": [1],
        "input_tokens": 8,
        "output_tokens": 4,
    }
    tiny_config["meter"] = {"primary": "none", "cross_check": ["codecarbon"]}
    job = _plan(tiny_config)["tiny__pytorch"]
    again = JobPlan.from_json(job.to_json())
    assert again == job
    assert again.config_hash == job.config_hash
    assert isinstance(again.points, tuple)
    assert isinstance(again.points[0].experiments, tuple)
    assert isinstance(again.meter.cross_check, tuple)
    assert again.to_json() == job.to_json()


def test_config_hash_changes_with_a_protocol_setting(tiny_config):
    h1 = _plan(tiny_config)["tiny__pytorch"].config_hash
    assert _plan(tiny_config)["tiny__pytorch"].config_hash == h1  # deterministic
    tiny_config["protocol"]["min_repetitions"] = 5
    h2 = _plan(tiny_config)["tiny__pytorch"].config_hash
    assert h2 != h1


def test_config_hash_changes_with_protocol_on_the_plan_itself(tiny_config):
    job = _plan(tiny_config)["tiny__pytorch"]
    changed = dataclasses.replace(
        job, protocol=dataclasses.replace(job.protocol, min_duration_s=1.0)
    )
    assert changed.config_hash != job.config_hash
    same = dataclasses.replace(job, protocol=dataclasses.replace(job.protocol))
    assert same.config_hash == job.config_hash


def test_point_id_is_stable_and_depends_on_decoding():
    greedy = PointSpec(4, 128, 16)
    assert id_with_setup(greedy, "abc", 1) == id_with_setup(PointSpec(4, 128, 16), "abc", 1)
    assert id_with_setup(greedy, "abc", 1).startswith("b4_i128_o16_greedy_")
    beam = PointSpec(4, 128, 16, DecodingSpec(name="beam", strategy="beam", num_beams=4))
    assert id_with_setup(beam, "abc", 1) != id_with_setup(greedy, "abc", 1)
    assert id_with_setup(beam, "abc", 1).startswith("b4_i128_o16_beam_")
    # same name, different parameters: still a different point
    beam8 = PointSpec(4, 128, 16, DecodingSpec(name="beam", strategy="beam", num_beams=8))
    assert id_with_setup(beam8, "abc", 1) != id_with_setup(beam, "abc", 1)
    # the tags do not change the identity, the configuration hash does
    tagged = PointSpec(4, 128, 16, experiments=("input_sweep",))
    assert id_with_setup(tagged, "abc", 1) == id_with_setup(greedy, "abc", 1)
    assert id_with_setup(greedy, "xyz", 1) != id_with_setup(greedy, "abc", 1)


def test_a_plans_ids_hash_its_setup_without_its_points(tiny_config):
    """The setup hash leaves the points out, so every point's id is its own point under the
    same setup: ``point_ids`` (the setup hashed once) names each point as ``point_id`` does,
    and a plan of fewer points keeps the ids of those it holds."""
    from llm_energy.measure.point_ids import point_id

    plan = next(iter(_plan(tiny_config).values()))
    assert len(plan.points) > 2
    for version in (1, 2):
        ids = point_ids(plan, version)
        assert ids == {p.key: point_id(plan, p, version) for p in plan.points}
        fewer = dataclasses.replace(plan, points=plan.points[:2])
        assert point_ids(fewer, version) == {p.key: ids[p.key] for p in plan.points[:2]}


def _speculative(tiny_config: dict, engine: str = "vllm") -> dict:
    tiny_config["engines"]["vllm"] = {"backend": "vllm"}
    tiny_config["models"]["draft"] = {"hub_id": "local/draft", "config": "x/config.json"}
    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    tiny_config["experiments"]["speculative_decoding"] = {
        "enabled": True,
        "engines": [engine],
        "pairs": [{"target": "tiny", "draft": "draft", "speculative_tokens": 3}],
        "batch_sizes": [1, 16],
        "input_tokens": 32,
        "output_tokens": 8,
    }
    return tiny_config


def test_speculative_decoding_plans_the_engine_with_and_without_its_draft(tiny_config):
    jobs = _plan(_speculative(tiny_config))
    assert sorted(jobs) == ["tiny__vllm", "tiny__vllm-spec-draft-k3"]
    spec, plain = jobs["tiny__vllm-spec-draft-k3"], jobs["tiny__vllm"]
    assert (spec.engine.draft, spec.engine.speculative_tokens) == ("draft", 3)
    assert spec.draft_model is not None and spec.draft_model.hub_id == "local/draft"
    assert plain.engine.draft is None and plain.draft_model is None
    for job in (spec, plain):
        assert [(p.batch_size, p.experiments) for p in job.points] == [
            (1, ("speculative",)),
            (16, ("speculative",)),
        ]
    assert JobPlan.from_json(spec.to_json()) == spec
    assert measurement_hash(spec, 1) != measurement_hash(plain, 1)


def test_forced_acceptance_plans_a_third_engine_whose_hash_is_its_own(tiny_config):
    config = _speculative(tiny_config)
    config["experiments"]["speculative_decoding"]["acceptance"] = ["measured", "forced"]
    jobs = _plan(config)
    assert sorted(jobs) == [
        "tiny__vllm",
        "tiny__vllm-spec-draft-k3",
        "tiny__vllm-spec-draft-k3-forced",
    ]
    measured, forced = jobs["tiny__vllm-spec-draft-k3"], jobs["tiny__vllm-spec-draft-k3-forced"]
    assert forced.engine.forced_acceptance and not measured.engine.forced_acceptance
    assert measurement_hash(forced, 1) != measurement_hash(measured, 1)
    assert JobPlan.from_json(forced.to_json()) == forced
    # the measured engine's identity is the one it had before forced acceptance existed
    assert measurement_hash(measured, 1) == measurement_hash(
        _plan(_speculative(tiny_config))[measured.group], 1
    )


def test_forced_acceptance_refuses_pretrained_weights(tiny_config):
    config = _speculative(tiny_config)
    config["models"]["draft"]["weights"] = "pretrained"
    config["experiments"]["speculative_decoding"]["acceptance"] = ["forced"]
    with pytest.raises(ConfigError, match="the draft 'draft' has pretrained weights"):
        _plan(config)


def test_padded_draft_vocabulary_is_part_of_the_engine(tiny_config):
    config = _speculative(tiny_config)
    plain = _plan(_speculative(tiny_config))["tiny__vllm-spec-draft-k3"]
    config["experiments"]["speculative_decoding"]["pairs"][0]["pad_draft_vocabulary"] = True
    padded = _plan(config)["tiny__vllm-spec-draft-k3"]
    assert padded.engine.pad_draft_vocabulary and not plain.engine.pad_draft_vocabulary
    assert measurement_hash(padded, 1) != measurement_hash(plain, 1)
    assert JobPlan.from_json(padded.to_json()) == padded
    config["models"]["draft"]["weights"] = "pretrained"
    with pytest.raises(ConfigError, match="pad_draft_vocabulary changes the draft's weights"):
        _plan(config)


def test_speculative_decoding_on_transformers_fails_at_planning(tiny_config):
    with pytest.raises(ConfigError, match="assisted generation serves batch 1 only"):
        _plan(_speculative(tiny_config, engine="pytorch"))


def test_a_family_protocol_makes_points_of_their_own_and_leaves_the_others_alone(tiny_config):
    before = {
        id_with_setup(p, measurement_hash(j, 1), 1)
        for j in _plan(tiny_config).values()
        for p in j.points
    }
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    tiny_config["experiments"]["engine_optimisations"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1],
        "input_tokens": sweeps["input_sweep"]["input_tokens"][0],
        "output_tokens": sweeps["input_sweep"]["output_tokens"][0],
        "protocol": {"min_repetitions": 1, "measure_prefill": False},
    }
    job = _plan(tiny_config)["tiny__pytorch"]
    own = [p for p in job.points if p.protocol is not None]
    assert [p.experiments for p in own] == [("engine_optimisations",)]
    assert own[0].protocol.min_repetitions == 1 and not own[0].protocol.measure_prefill
    # The top-level protocol fills in what the family leaves out.
    assert own[0].protocol.min_duration_s == job.protocol.min_duration_s
    # The same shape under the job's protocol stays a point of its own, with its old id.
    others = {
        id_with_setup(p, measurement_hash(job, 1), 1) for p in job.points if p.protocol is None
    }
    assert others == before
    assert id_with_setup(own[0], measurement_hash(job, 1), 1) not in before
    assert type(job).from_json(job.to_json()) == job


def test_a_draft_with_another_vocabulary_is_refused_before_the_engine_starts(tmp_path):
    from llm_energy.backends.vllm.backend import check_draft_vocabulary

    # The study's second pair as the mirror has it: R1-Distill-Qwen-32B and its 1.5B draft.
    for name, vocab in (("target", 152064), ("draft", 151936), ("same", 152064)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"vocab_size": vocab}))
    check_draft_vocabulary("vllm-spec", str(tmp_path / "target"), str(tmp_path / "same"))
    with pytest.raises(ConfigError, match=r"draft's vocabulary \(151936 tokens\) differs"):
        check_draft_vocabulary("vllm-spec", str(tmp_path / "target"), str(tmp_path / "draft"))
    from llm_energy.backends.vllm.backend import padded_draft_config

    (tmp_path / "padded").mkdir()
    sizes = padded_draft_config(
        str(tmp_path / "target"), str(tmp_path / "draft"), str(tmp_path / "padded")
    )
    assert sizes == (151936, 152064)
    check_draft_vocabulary("vllm-spec", str(tmp_path / "target"), str(tmp_path / "padded"))
    with pytest.raises(ConfigError, match="cannot be padded"):
        padded_draft_config(
            str(tmp_path / "draft"), str(tmp_path / "target"), str(tmp_path / "padded")
        )


def test_only_jobs_of_engines_with_cuda_graphs_share_the_host_and_only_when_allowed():
    config = load_config(Path(__file__).resolve().parents[1] / "config/h200.yaml")
    shared = {g: p.host_shared for g, p in plan_study(config).items()}
    assert shared["llama-3.1-8b__vllm"] and shared["llama-3.1-8b__vllm-tp2"]
    assert not shared["llama-3.1-8b__vllm-eager"] and not shared["llama-3.1-8b__pytorch"]
    config["side_by_side"] = "never"
    assert not any(p.host_shared for p in plan_study(config).values())
    served = load_config(Path(__file__).resolve().parents[1] / "config/h200_serving.yaml")
    shared = {g: p.host_shared for g, p in plan_study(served).items()}
    assert shared["llama-3.1-8b__vllm-served-s64"]
    assert not shared["llama-3.1-8b__vllm-eager-served-s64"]


def test_the_fig11_layer_plans_a_part_of_the_grids_job_with_the_same_point_ids():
    """config/h200_fig11.yaml on config/h200_grid.yaml: Llama-3.1-8B on vLLM at batch 1 over
    the full ranges; its points carry the grid job's ids, so its journal is the grid's."""

    root = Path(__file__).resolve().parents[1] / "config"
    grid = plan_study(load_config(root / "h200_grid.yaml"))
    assert sorted(grid) == [
        "llama-3.1-8b__pytorch",
        "llama-3.1-8b__vllm",
        "qwen1.5-32b__pytorch",
        "qwen1.5-32b__vllm",
    ]
    part = plan_study(load_config(root / "h200_grid.yaml", root / "h200_fig11.yaml"))
    assert list(part) == ["llama-3.1-8b__vllm"]
    job = part["llama-3.1-8b__vllm"]
    assert {p.batch_size for p in job.points} == {1} and len(job.points) == 42
    assert max(p.input_tokens for p in job.points) == 32768
    assert max(p.output_tokens for p in job.points) == 4096
    ids = point_ids(job)
    whole = point_ids(grid["llama-3.1-8b__vllm"])
    assert len(ids) == len(job.points) and set(ids.values()) <= set(whole.values())


def test_a_session_of_the_batch_8_tasks_plans_points_of_the_whole_layer(tmp_path):
    """config/h200_tasks_batch8.yaml is measured in sessions of a few tasks each, each adding
    a layer that lists its tasks: every session's points carry the whole layer's ids, on both
    engines, so the rows of all sessions are points of that one layer."""
    root = Path(__file__).resolve().parents[1] / "config"
    layers = [root / n for n in ("h200.yaml", "h200_three_trials.yaml", "h200_tasks_batch8.yaml")]
    whole = plan_study(load_config(*layers))
    assert sorted(whole) == ["llama-3.1-8b__pytorch", "llama-3.1-8b__vllm"]
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("experiments:\n  classical_tasks:\n    tasks: [summarization]\n")
    session = plan_study(load_config(*layers, tasks))
    for group, job in whole.items():
        assert {p.batch_size for p in job.points} == {8} and len(job.points) == 4
        (point,) = session[group].points
        assert point.stream.trace == "summarization"
        assert point_ids(session[group])[point.key] == point_ids(job)[point.key]


def _beside_fig11(layer: str) -> tuple[JobPlan, JobPlan, int]:
    """Fig 11's job with a comparison layer on it, the job itself, and how many of the job's
    shapes the layer measures (each one of the job's)."""
    root = Path(__file__).resolve().parents[1] / "config"
    base = (root / "h200_grid.yaml", root / "h200_fig11.yaml")
    layered = plan_study(load_config(*base, root / layer))["llama-3.1-8b__vllm"]
    job = plan_study(load_config(*base))["llama-3.1-8b__vllm"]
    assert _shapes(layered) <= _shapes(job)
    return layered, job, len(_shapes(layered))


def _shapes(job: JobPlan) -> set[tuple[int, int, int]]:
    return {(p.batch_size, p.input_tokens, p.output_tokens) for p in job.points}


def test_the_warm_up_comparison_layer_plans_six_of_fig11s_points_warmed_up_every_trial():
    """config/h200_warmup_ab.yaml measures six shapes of the Fig 11 job with a warm-up before
    every trial, so that benchmarks/warmup_ab.py can set them beside the same shapes of the
    Fig 11 job, which warms each point up once, as the whole grid does."""
    every, once, shapes = _beside_fig11("h200_warmup_ab.yaml")
    assert shapes == 6
    assert every.protocol.warmup_every_trial and not once.protocol.warmup_every_trial


def test_the_window_comparison_layers_plan_nine_of_fig11s_points_in_2_and_6_s_windows():
    """config/h200_window_ab.yaml measures nine shapes of the Fig 11 job in its 2 s windows,
    under the Fig 11 job's own point ids; config/h200_window_6s.yaml layered on it measures the
    same shapes in windows of at least 6 s, under ids of their own, so that
    benchmarks/trial_spread.py --against can set the two beside each other."""
    shorter, job, shapes = _beside_fig11("h200_window_ab.yaml")
    assert shapes == 9
    assert set(point_ids(shorter).values()) <= set(point_ids(job).values())
    root = Path(__file__).resolve().parents[1] / "config"
    layers = ("h200_grid.yaml", "h200_fig11.yaml", "h200_window_ab.yaml", "h200_window_6s.yaml")
    (longer,) = plan_study(load_config(*(root / name for name in layers))).values()
    assert (longer.protocol.min_duration_s, shorter.protocol.min_duration_s) == (6.0, 2.0)
    assert not set(point_ids(longer).values()) & set(point_ids(shorter).values())
    assert _shapes(longer) == _shapes(shorter)


def test_the_claim6_and_tasks_layers_plan_their_families_alone():
    """config/h200_claim6.yaml: claim 6's ten points (offline and online at five batch sizes)
    in one vLLM job, the same points as config/h200.yaml's; config/h200_tasks.yaml: the four
    classical tasks at batch 8 and 128, 1,024 examples each, on both engines."""
    root = Path(__file__).resolve().parents[1] / "config"
    full = plan_study(load_config(root / "h200.yaml"))
    (claim6,) = plan_study(load_config(root / "h200.yaml", root / "h200_claim6.yaml")).values()
    assert len(claim6.points) == 10
    assert {p.experiments for p in claim6.points} == {("online_serving",)}
    assert {p.stream.serving for p in claim6.points} == {"offline", "online"}
    assert set(point_ids(claim6).values()) <= set(point_ids(full[claim6.group]).values())
    tasks = plan_study(load_config(root / "h200.yaml", root / "h200_tasks.yaml"))
    assert sorted(tasks) == ["llama-3.1-8b__pytorch", "llama-3.1-8b__vllm"]
    for job in tasks.values():
        assert len(job.points) == 8
        assert {p.batch_size for p in job.points} == {8, 128}
        assert {p.stream.requests for p in job.points} == {1024}
        assert set(point_ids(job).values()) <= set(point_ids(full[job.group]).values())


def test_the_workloads_layer_plans_every_bin_searched_for_its_largest_batch():
    """config/h200_workloads.yaml: claim 8's points alone, the bins of both Azure traces on
    both engines, each shape searched for its largest feasible batch, and the replay on vLLM;
    the same points as config/h200.yaml's."""
    root = Path(__file__).resolve().parents[1] / "config"
    full = plan_study(load_config(root / "h200.yaml"))
    jobs = plan_study(load_config(root / "h200.yaml", root / "h200_workloads.yaml"))
    assert sorted(jobs) == ["llama-3.1-8b__pytorch", "llama-3.1-8b__vllm"]
    for job in jobs.values():
        experiments = {e for p in job.points for e in p.experiments}
        assert experiments <= {"workload_estimates", "trace_replay"}
        assert job.largest_feasible_only == ("workload_estimates",)
        assert {p.batch_size for p in job.points if p.stream is None} == {
            16,
            32,
            64,
            128,
            256,
            512,
            1024,
        }
        assert set(point_ids(job).values()) <= set(point_ids(full[job.group]).values())
    assert any(p.stream is not None for p in jobs["llama-3.1-8b__vllm"].points)


def test_the_workloads_parts_and_the_replay_are_the_workloads_layers_points():
    """config/h200_workloads_parts/partN.yaml (written by estimate-gpu-hours
    --workload-parts) and config/h200_replay.yaml: each bin in one part, on both engines, and
    together with the replay the points of config/h200_workloads.yaml, with its ids."""
    root = Path(__file__).resolve().parents[1] / "config"
    base = (root / "h200.yaml", root / "h200_workloads.yaml")
    whole = plan_study(load_config(*base))
    ids = {g: set(point_ids(job).values()) for g, job in whole.items()}
    parts = sorted((root / "h200_workloads_parts").glob("part*.yaml"))
    assert len(parts) > 1
    covered: dict[str, set[str]] = {g: set() for g in whole}
    bins_of_parts = []
    for part in parts:
        jobs = plan_study(load_config(*base, part))
        assert sorted(jobs) == sorted(whole)
        bins = {(p.input_tokens, p.output_tokens) for p in jobs["llama-3.1-8b__vllm"].points}
        assert {
            (p.input_tokens, p.output_tokens) for p in jobs["llama-3.1-8b__pytorch"].points
        } == bins
        bins_of_parts.append(bins)
        for g, job in jobs.items():
            covered[g] |= set(point_ids(job).values())
    every = set().union(*bins_of_parts)
    assert sum(map(len, bins_of_parts)) == len(every) == 56
    replay = plan_study(load_config(root / "h200.yaml", root / "h200_replay.yaml"))
    assert sorted(replay) == ["llama-3.1-8b__vllm"]
    covered["llama-3.1-8b__vllm"] |= set(point_ids(replay["llama-3.1-8b__vllm"]).values())
    assert covered == ids


def test_points_in_flight_names_no_point_and_no_setup():
    """Point keys (which seed prompts), point ids of both versions and the configuration hash
    are those computed before points_in_flight existed, whatever its value: journals and
    shipped rows stay valid."""
    from llm_energy.measure.job import EngineSpec, MeterSpec, ModelSpec, ProtocolSpec
    from llm_energy.measure.point_ids import point_id

    window = ProtocolSpec(min_repetitions=1, measure_prefill=False)
    plan = JobPlan(
        group="m__e",
        hardware="h200",
        device="cuda",
        dtype="bfloat16",
        model=ModelSpec("m", "org/m"),
        engine=EngineSpec("e", "vllm", cuda_graphs=True),
        meter=MeterSpec(),
        protocol=ProtocolSpec(),
        points=(PointSpec(8, 512, 64), PointSpec(16, 256, 32, protocol=window)),
    )
    for n in (None, 1, 8):
        scheduled = dataclasses.replace(
            plan,
            protocol=dataclasses.replace(plan.protocol, points_in_flight=n),
            points=(
                plan.points[0],
                dataclasses.replace(
                    plan.points[1], protocol=dataclasses.replace(window, points_in_flight=n)
                ),
            ),
        )
        assert scheduled.config_hash == "4ddbd00d8eae"
        plain_point, windowed = scheduled.points
        assert stable_hash(list(plain_point.key)) == "61c19c75cc47"
        assert stable_hash(list(windowed.key)) == "02f4a13cb703"
        assert point_id(scheduled, plain_point, 1) == "b8_i512_o64_greedy_39c069f2"
        assert point_id(scheduled, plain_point, 2) == "b8_i512_o64_greedy_v2_333d2f60"
        assert point_id(scheduled, windowed, 1) == "b16_i256_o32_greedy_04659b91"
        assert point_id(scheduled, windowed, 2) == "b16_i256_o32_greedy_v2_8d9e8e5b"


def test_points_in_flight_is_the_jobs_and_no_familys(tiny_config):
    tiny_config["protocol"]["points_in_flight"] = 4
    tiny_config["experiments"]["controlled_sweeps"]["protocol"] = {"min_repetitions": 1}
    job = _plan(tiny_config)["tiny__pytorch"]
    assert job.protocol.points_in_flight == 4
    assert {p.protocol.points_in_flight for p in job.points} == {None}
    assert {p.protocol.min_repetitions for p in job.points} == {1}
    again = JobPlan.from_json(job.to_json())
    assert again == job and again.protocol.points_in_flight == 4
