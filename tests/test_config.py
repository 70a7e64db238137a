"""Configuration loading and validation: defaults, unknown keys, types and cross-references."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_energy.config import load_config, validate
from llm_energy.errors import ConfigError


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# --- defaults -----------------------------------------------------------------------------------


def test_empty_config_gets_every_default():
    cfg = validate({})
    assert cfg["protocol"]["min_duration_s"] == 2.0
    assert cfg["protocol"]["min_repetitions"] == 3
    assert cfg["protocol"]["max_repetitions"] == 1000
    assert cfg["protocol"]["measure_prefill"] is True
    assert cfg["hardware"] == "cpu"
    assert cfg["device"] == "cpu"
    assert cfg["dtype"] == "float32"
    assert cfg["meter"]["primary"] == "auto"
    assert cfg["meter"]["cross_check"] == []
    assert cfg["meter"]["codecarbon"]["country_iso_code"] == "USA"
    assert cfg["mirror"] == {"models": None, "data": None}
    assert cfg["decoding"] == {
        "greedy": {
            "strategy": "greedy",
            "num_beams": 1,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
    }
    sweeps = cfg["experiments"]["controlled_sweeps"]
    assert sweeps["enabled"] is False
    assert sweeps["batch_sizes"] == [1, 8, 64]
    assert sweeps["input_sweep"]["output_tokens"] == [8]
    assert sweeps["output_sweep"]["input_tokens"] == [512]


def test_validate_does_not_modify_its_argument(tiny_config):
    before = copy.deepcopy(tiny_config)
    filled = validate(tiny_config)
    assert tiny_config == before
    assert "max_repetitions" not in tiny_config["protocol"]
    assert filled["protocol"]["max_repetitions"] == 1000


def test_given_values_are_kept_and_defaults_filled_beside_them(tiny_config):
    cfg = validate(tiny_config)
    assert cfg["protocol"]["min_repetitions"] == 2
    assert cfg["protocol"]["min_duration_s"] == 0.0
    assert cfg["protocol"]["seed"] == 0
    assert cfg["models"]["tiny"]["revision"] is None
    assert cfg["engines"]["pytorch"]["torch_compile"] is False
    assert cfg["engines"]["pytorch"]["tensor_parallel_size"] == 1
    assert cfg["experiments"]["controlled_sweeps"]["batch_sizes"] == [1, 2]


# --- unknown keys and wrong types ---------------------------------------------------------------


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match="unknown key") as exc:
        validate({"protocoll": {}})
    assert "'protocoll'" in str(exc.value)


def test_misspelled_nested_key_is_named_with_its_path(tiny_config):
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["batchsizes"] = sweeps.pop("batch_sizes")
    with pytest.raises(ConfigError) as exc:
        validate(tiny_config)
    msg = str(exc.value)
    assert "experiments.controlled_sweeps.batchsizes" in msg
    assert "batch_sizes" in msg  # the allowed keys are listed


def test_unknown_key_inside_a_model_is_named(tiny_config):
    tiny_config["models"]["tiny"]["weight"] = "random"
    with pytest.raises(ConfigError, match=r"models\.tiny\.weight"):
        validate(tiny_config)


def test_wrong_type_names_the_key(tiny_config):
    tiny_config["protocol"]["min_repetitions"] = "3"
    with pytest.raises(ConfigError, match=r"protocol\.min_repetitions") as exc:
        validate(tiny_config)
    assert "integer" in str(exc.value)


def test_value_out_of_range_names_the_key(tiny_config):
    tiny_config["experiments"]["controlled_sweeps"]["batch_sizes"] = [1, 0]
    with pytest.raises(ConfigError, match=r"experiments\.controlled_sweeps\.batch_sizes"):
        validate(tiny_config)


def test_bad_enum_value_names_the_key(tiny_config):
    tiny_config["meter"]["primary"] = "rapl"
    with pytest.raises(ConfigError, match=r"meter\.primary"):
        validate(tiny_config)


def test_missing_required_key_is_reported(tiny_config):
    del tiny_config["models"]["tiny"]["hub_id"]
    with pytest.raises(ConfigError, match="hub_id"):
        validate(tiny_config)


# --- cross-references ---------------------------------------------------------------------------


def test_experiment_naming_an_undefined_model(tiny_config):
    tiny_config["experiments"]["controlled_sweeps"]["models"] = ["tiny", "huge"]
    with pytest.raises(ConfigError, match=r"experiments\.controlled_sweeps\.models") as exc:
        validate(tiny_config)
    assert "'huge'" in str(exc.value)


def test_only_experiments_keeps_the_families_it_names_and_turns_the_others_off(tiny_config):
    """A layer that measures part of a configuration names the families it keeps; a name that
    is no family is one clear error."""
    tiny_config["experiments"]["engine_optimisations"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1],
    }
    both = validate(tiny_config)["experiments"]
    assert both["controlled_sweeps"]["enabled"] and both["engine_optimisations"]["enabled"]
    kept = validate({**tiny_config, "only_experiments": ["engine_optimisations"]})
    assert not kept["experiments"]["controlled_sweeps"]["enabled"]
    assert kept["experiments"]["engine_optimisations"]["batch_sizes"] == [1]
    assert not kept["experiments"]["architectures"]["enabled"]
    with pytest.raises(ConfigError, match="only_experiments names 'sweeps', not an experiment"):
        validate({**tiny_config, "only_experiments": ["sweeps"]})


def test_experiment_naming_an_undefined_engine(tiny_config):
    tiny_config["experiments"]["controlled_sweeps"]["engines"] = ["vllm"]
    with pytest.raises(ConfigError, match=r"experiments\.controlled_sweeps\.engines") as exc:
        validate(tiny_config)
    assert "'vllm'" in str(exc.value)


def test_experiment_naming_an_undefined_decoding_strategy(tiny_config):
    tiny_config["experiments"]["decoding_strategies"] = {
        "models": ["tiny"],
        "engines": ["pytorch"],
        "strategies": ["greedy", "beam"],
    }
    with pytest.raises(ConfigError, match=r"experiments\.decoding_strategies\.strategies") as exc:
        validate(tiny_config)
    assert "'beam'" in str(exc.value)


def test_speculative_pair_naming_an_undefined_draft(tiny_config):
    tiny_config["experiments"]["speculative_decoding"] = {
        "pairs": [{"target": "tiny", "draft": "tinier"}]
    }
    with pytest.raises(ConfigError, match="draft 'tinier'"):
        validate(tiny_config)


def test_defined_decoding_strategy_is_accepted(tiny_config):
    tiny_config["decoding"] = {
        "greedy": {"strategy": "greedy"},
        "beam": {"strategy": "beam", "num_beams": 4},
    }
    tiny_config["experiments"]["decoding_strategies"] = {
        "models": ["tiny"],
        "engines": ["pytorch"],
        "strategies": ["greedy", "beam"],
    }
    cfg = validate(tiny_config)
    assert cfg["decoding"]["beam"]["num_beams"] == 4
    assert cfg["experiments"]["decoding_strategies"]["input_tokens"] == 512


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smoke.yaml", "h100.yaml", "config.yaml"])
def test_shipped_configs_load(root, name):
    cfg = load_config(root / "config" / name)
    assert cfg["experiments"]["controlled_sweeps"]["enabled"] is True
    assert cfg["protocol"]["max_repetitions"] >= cfg["protocol"]["min_repetitions"]


def test_shipped_config_values(root):
    smoke = load_config(root / "config" / "smoke.yaml")
    assert smoke["device"] == "cpu"
    assert smoke["meter"]["primary"] == "codecarbon"
    assert smoke["protocol"]["min_duration_s"] == 0.3
    assert smoke["protocol"]["max_repetitions"] == 1000  # default filled in
    h100 = load_config(root / "config" / "h100.yaml")
    assert h100["device"] == "cuda"
    assert h100["dtype"] == "bfloat16"
    assert h100["meter"]["primary"] == "nvml"


def test_later_files_update_earlier_ones(tmp_path, tiny_config):
    base = _write(tmp_path / "base.yaml", tiny_config)
    override = _write(
        tmp_path / "override.yaml",
        {
            "protocol": {"min_duration_s": 1.5},
            "experiments": {"controlled_sweeps": {"batch_sizes": [4]}},
        },
    )
    cfg = load_config(base, override)
    # the overridden keys take the later value ...
    assert cfg["protocol"]["min_duration_s"] == 1.5
    assert cfg["experiments"]["controlled_sweeps"]["batch_sizes"] == [4]  # lists are replaced
    # ... and their siblings in the earlier file survive (deep merge, not replacement)
    assert cfg["protocol"]["min_repetitions"] == 2
    assert cfg["protocol"]["warmup_repetitions"] == 1
    assert cfg["experiments"]["controlled_sweeps"]["models"] == ["tiny"]
    assert cfg["experiments"]["controlled_sweeps"]["input_sweep"]["input_tokens"] == [8, 16]
    assert cfg["models"]["tiny"]["hub_id"] == "local/tiny"


def test_later_file_order_matters(tmp_path):
    a = _write(tmp_path / "a.yaml", {"hardware": "first"})
    b = _write(tmp_path / "b.yaml", {"hardware": "second"})
    assert load_config(a, b)["hardware"] == "second"
    assert load_config(b, a)["hardware"] == "first"


def test_missing_file_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(missing)


def test_file_without_a_mapping_is_a_config_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_empty_file_loads_as_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path)["protocol"]["min_duration_s"] == 2.0


# --- command line -------------------------------------------------------------------------------


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [sys.executable, "-m", "llm_energy", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_validate_config_rejects_a_misspelled_key(root, tmp_path, tiny_config):
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["batchsizes"] = sweeps.pop("batch_sizes")
    path = _write(tmp_path / "bad.yaml", tiny_config)
    proc = _cli(root, "validate-config", str(path))
    assert proc.returncode == 2
    assert "experiments.controlled_sweeps.batchsizes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_validate_config_accepts_a_good_config(root, tmp_path, tiny_config):
    path = _write(tmp_path / "good.yaml", tiny_config)
    proc = _cli(root, "validate-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "config is valid: 1 measurement jobs, 6 points" in proc.stdout


def test_booleans_given_as_strings_on_the_command_line_are_read_as_booleans():
    """`snakemake --config shipped_measurements=true` passes the string 'true'."""
    assert validate({"shipped_measurements": "true"})["shipped_measurements"] is True
    assert validate({"shipped_measurements": "False"})["shipped_measurements"] is False
    with pytest.raises(ConfigError, match="shipped_measurements"):
        validate({"shipped_measurements": "yes"})


@pytest.mark.parametrize("value", [1, 8, None])
def test_points_in_flight_is_a_positive_integer_or_null(tiny_config, value):
    assert validate(tiny_config)["protocol"]["points_in_flight"] is None  # the default
    tiny_config["protocol"]["points_in_flight"] = value
    assert validate(tiny_config)["protocol"]["points_in_flight"] == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "0 is less than the minimum of 1"),
        (-2, "-2 is less than the minimum of 1"),
        ("8", "'8' is not of type 'integer', 'null'"),
        (2.5, "2.5 is not of type 'integer', 'null'"),
        (True, "True is not of type 'integer', 'null'"),
    ],
)
def test_points_in_flight_of_another_value_is_one_error_naming_it(tiny_config, value, says):
    tiny_config["protocol"]["points_in_flight"] = value
    with pytest.raises(ConfigError) as exc:
        validate(tiny_config)
    assert str(exc.value) == f"config: 'protocol.points_in_flight' {says}"


def test_points_in_flight_orders_a_whole_job_so_a_family_protocol_does_not_take_it(tiny_config):
    tiny_config["experiments"]["controlled_sweeps"]["protocol"] = {"points_in_flight": 2}
    with pytest.raises(ConfigError) as exc:
        validate(tiny_config)
    assert str(exc.value).startswith(
        "config: unknown key 'experiments.controlled_sweeps.protocol.points_in_flight'"
    )


def test_the_backends_and_meters_a_configuration_may_name_are_the_packages_own():
    """The schema's choices come from the backends and meters the package holds: a new one
    is a choice as soon as its folder or module is there, and a derived backend is none."""
    from llm_energy import backends, meters
    from llm_energy.config import load_schema

    schema = load_schema()["properties"]
    backend = schema["engines"]["additionalProperties"]["properties"]["backend"]
    assert backend["enum"] == backends.configurable() == ["transformers", "vllm"]
    meter = schema["meter"]["properties"]
    assert meter["primary"]["enum"] == ["auto", *meters.METERS]
    assert "none" in meters.METERS and "none" not in meter["cross_check"]["items"]["enum"]
    assert set(meter["cross_check"]["items"]["enum"]) == {"nvml", "codecarbon"}
