"""Where a model's architecture (config.json) and weights come from.

The real source is the Hugging Face hub. A mirror directory laid out as ``ORG__NAME/`` (the
layout of ``../shared/data/models``) is read first when it is configured, so that clusters
without hub access, and CI, run the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_energy.errors import ConfigError, InputError
from llm_energy.measure.job import JobPlan, ModelSpec, stable_hash

# Keys that do not change the computation (so do not change the architecture hash).
_VOLATILE_KEYS = {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures"}


def mirror_dir_name(hub_id: str) -> str:
    return hub_id.replace("/", "__")


def own_config_folder(config: str) -> Path:
    """The folder of a model's own ``config``, given as its config.json or as the folder."""
    path = Path(config)
    return path.parent if path.name == "config.json" else path


def resolve_model_dir(spec: ModelSpec, mirror: str | None) -> Path:
    """A local folder holding the model's config.json (and its weights when pretrained)."""
    if spec.config:
        folder = own_config_folder(spec.config)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model '{spec.name}': no config.json at {spec.config}")
        return folder
    if mirror:
        folder = Path(mirror) / mirror_dir_name(spec.hub_id)
        if (folder / "config.json").is_file():
            if spec.weights == "pretrained" and not any(folder.glob("*.safetensors")):
                raise ConfigError(
                    f"model '{spec.name}': the mirror {folder} has no weights (*.safetensors); "
                    "use weights: random or download the checkpoint"
                )
            return folder
    return _download(spec)


def local_config_path(spec: ModelSpec, mirror: str | None) -> Path | None:
    """The model's config.json where it already lies on this machine (its own ``config``, the
    mirror, the hub's cache), never fetched; None where it lies nowhere."""
    if spec.config:
        path = own_config_folder(spec.config) / "config.json"
        return path if path.is_file() else None
    if mirror:
        path = Path(mirror) / mirror_dir_name(spec.hub_id) / "config.json"
        if path.is_file():
            return path
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    cached = huggingface_hub.try_to_load_from_cache(
        spec.hub_id, "config.json", revision=spec.revision
    )
    return Path(cached) if isinstance(cached, str) else None


def missing_configs(jobs: Iterable[JobPlan]) -> list[str]:
    """Models of the jobs whose local ``config`` holds no config.json. (A model without one is
    read from the mirror or the hub when its job starts, which a plan made offline cannot
    check.)"""
    missing = []
    for job in jobs:
        for spec in (job.model, job.draft_model):
            if spec is None or not spec.config:
                continue
            where = own_config_folder(spec.config) / "config.json"
            line = f"model '{spec.name}': no config.json at {where}"
            if not where.is_file() and line not in missing:
                missing.append(line)
    return missing


def _download(spec: ModelSpec) -> Path:
    """Fetch from the hub: config.json alone for random weights, the snapshot otherwise."""
    try:
        import huggingface_hub
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            f"model '{spec.name}' is not in the mirror and huggingface_hub is not installed"
        ) from exc
    try:
        if spec.weights == "random":
            path = huggingface_hub.hf_hub_download(
                spec.hub_id, "config.json", revision=spec.revision
            )
            return Path(path).parent
        return Path(huggingface_hub.snapshot_download(spec.hub_id, revision=spec.revision))
    except Exception as exc:
        raise ConfigError(
            f"model '{spec.name}': could not fetch {spec.hub_id} from the hub ({exc}); "
            "set mirror.models to a folder holding ORG__NAME/config.json"
        ) from exc


def load_config_dict(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable config.json ({exc})") from exc


def architecture_hash(config: dict[str, Any]) -> str:
    """Hash of the architecture: config.json without keys that do not change the computation."""
    return stable_hash({k: v for k, v in config.items() if k not in _VOLATILE_KEYS})
