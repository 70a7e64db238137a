"""Draw a registered figure or table by its target name, as the workflow's rules do."""

from __future__ import annotations

from typing import Any

from llm_energy.families import outputs


def draw(name: str, measurements: Any) -> Any:
    return outputs()[name].make(measurements)
