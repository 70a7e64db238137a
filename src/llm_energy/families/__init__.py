"""The experiment families, one module each. A module of this package that defines a
:class:`~llm_energy.families.base.Family` subclass is a family: its configuration block,
points, derived engines, checks and outputs are found here by the planner, the schema, the
workflow's rules and the report. Adding a family is adding one module (and a caption per
output under ``workflow/report/``)."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from llm_energy.families.base import Family, Output, Rows, table

__all__ = ["Family", "Output", "Rows", "families", "outputs", "tag_family"]

# Outputs of the study as a whole rather than of one family.
STUDY_OUTPUTS = (
    table(
        "table5",
        "hardware.csv",
        "Table 5: the hardware and software the rows were measured on",
        "Study",
        Rows(("any family",), ()),
        "llm_energy.analysis.hardware_table:hardware_table",
    ),
    # Written by the claims rule (workflow/rules/aggregate.smk) from the measurements table.
    table(
        "claims",
        "results/claims/{hardware}.csv",
        "The study's eight claims, computed from the rows",
        "Claims",
        Rows(("any family",), ()),
        None,
    ),
    # How much a point moves between fresh engine starts (benchmarks/engine_instances.py).
    Output(
        "fig_engine_instances",
        "figure",
        "engine_instances",
        "The same points after fresh engine starts",
        "Measurement method",
        None,
        "llm_energy.figures.engine_instances:fig_engine_instances",
        source="resources/engine_instances/{hardware}/rows.parquet",
    ),
    Output(
        "table_engine_instances",
        "table",
        "engine_instances.csv",
        "Spread between engine starts against spread within one",
        "Measurement method",
        None,
        "llm_energy.figures.engine_instances:table_engine_instances",
        source="resources/engine_instances/{hardware}/rows.parquet",
    ),
)


@functools.cache
def families() -> dict[str, Family]:
    """Every family of this package, by configuration key, in module order."""
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Family)
                and value is not Family
                and value.__module__ == module.__name__
            ):
                found[value.name] = value()
    return found


def outputs() -> dict[str, Output]:
    """Every figure and table, by target name."""
    found = {o.name: o for f in families().values() for o in f.outputs}
    found.update({o.name: o for o in STUDY_OUTPUTS})
    return found


def tag_family(tag: str) -> Family:
    """The family whose rows carry experiment tag ``tag``."""
    for family in families().values():
        if tag in family.tags:
            return family
    raise KeyError(tag)
