"""Load and validate the study configuration against its JSON schema.

Validation fills in every default the schema declares and turns the first problem into one
:class:`ConfigError` that names the key, before any job starts.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from llm_energy.errors import ConfigError
from llm_energy.measure.job import ProtocolSpec

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"


def load_schema(path: Path | None = None) -> dict[str, Any]:
    """The configuration's JSON schema: the study-wide keys of ``schema.yaml``, and under
    ``experiments`` one block per family, each from its own module (:mod:`llm_energy.families`)
    with the keys that every family has."""
    from llm_energy import backends, meters
    from llm_energy.families import families

    path = Path(path or SCHEMA_PATH)
    if not path.is_file():
        raise ConfigError(f"config schema not found at {path}")
    schema = yaml.safe_load(path.read_text())
    # The backends and meters a configuration may name are those the package holds.
    engine = schema["properties"]["engines"]["additionalProperties"]["properties"]
    engine["backend"]["enum"] = backends.configurable()
    meter = schema["properties"]["meter"]["properties"]
    meter["primary"]["enum"] = ["auto", *meters.METERS]
    meter["cross_check"]["items"]["enum"] = list(meters.ENERGY_METERS)
    # The protocol's defaults are written once, in ProtocolSpec.
    protocol = schema["properties"]["protocol"]["properties"]
    for f in dataclasses.fields(ProtocolSpec):
        protocol[f.name]["default"] = f.default
    common = schema["definitions"]["sweep_common"]
    blocks = {}
    for family in families().values():
        properties = {**copy.deepcopy(common), **family.properties()}
        if "batch_sizes" not in family.properties():
            properties["batch_sizes"] = {
                **properties["batch_sizes"],
                "default": list(family.default_batch_sizes),
            }
        blocks[family.name] = {
            "type": "object",
            "additionalProperties": False,
            "description": family.description,
            "default": {},
            "properties": properties,
        }
    schema["properties"]["experiments"]["properties"] = blocks
    return schema


def load_config(*paths: Path | str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read YAML files (later ones update earlier ones) and validate the result."""
    config: dict[str, Any] = {}
    for p in paths:
        try:
            data = yaml.safe_load(Path(p).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping at its top level")
        _deep_update(config, data)
    return validate(config, schema)


def _filling(validator_class: Any) -> Any:
    """``validator_class`` that sets each missing property's default as it validates (the
    jsonschema documentation's own pattern), so that a default object's own defaults are set
    too, and reads ``snakemake --config key=true``'s string as the boolean it names."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
                value = instance.get(key)
                if sub.get("type") == "boolean" and str(value).lower() in ("true", "false"):
                    instance[key] = str(value).lower() == "true"
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties_with_defaults})


FillingValidator = _filling(jsonschema.Draft7Validator)


def validate(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a validated copy of ``config`` with every schema default filled in."""
    schema = schema if schema is not None else load_schema()
    filled = copy.deepcopy(config)
    errors = sorted(
        FillingValidator(schema).iter_errors(filled), key=lambda e: (len(e.path), list(e.path))
    )
    if errors:
        raise ConfigError(_describe(errors[0]))
    _keep_only(filled)
    _check_references(filled)
    return filled


def _keep_only(config: dict[str, Any]) -> None:
    """``only_experiments``: every other family off, each named one as configured."""
    keep = config.get("only_experiments") or []
    experiments = config.get("experiments", {})
    unknown = sorted(set(keep) - set(experiments))
    if unknown:
        raise ConfigError(
            f"config: only_experiments names {', '.join(map(repr, unknown))}, not an experiment "
            f"family (known: {', '.join(sorted(experiments))})"
        )
    for name, block in experiments.items():
        if keep and name not in keep:
            block["enabled"] = False


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _dotted(error.path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if error.path else ""
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        return f"config: unknown key {names} (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        return f"config: {where} is missing a required key: {error.message}"
    return f"config: '{where}' {error.message}"


def _check_references(config: dict[str, Any]) -> None:
    """Names used by experiments must be defined under models, engines and decoding."""
    models, engines = config.get("models", {}), config.get("engines", {})
    decoding = config.get("decoding", {})
    for family, exp in config.get("experiments", {}).items():
        where = f"experiments.{family}"
        for m in exp.get("models", []):
            if m not in models:
                raise ConfigError(f"config: {where}.models names '{m}', which is not under models")
        for e in exp.get("engines", []):
            if e not in engines:
                raise ConfigError(
                    f"config: {where}.engines names '{e}', which is not under engines"
                )
        for d in exp.get("strategies", []):
            if d not in decoding:
                raise ConfigError(
                    f"config: {where}.strategies names '{d}', which is not under decoding"
                )
        for pair in exp.get("pairs", []):
            for role in ("target", "draft"):
                if pair.get(role) not in models:
                    raise ConfigError(
                        f"config: {where}.pairs {role} '{pair.get(role)}' is not under models"
                    )
