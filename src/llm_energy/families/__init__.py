"""The experiment families, one module each. A module of this package that defines a
:class:`~llm_energy.families.base.Family` subclass is a family: its configuration block,
points, derived engines, checks and outputs are found here by the planner, the schema, the
workflow's rules and the report. Adding a family is adding one module (and a caption per
output under ``workflow/report/``)."""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re

from llm_energy.families.base import Family, Output, Rows, table

__all__ = [
    "Family",
    "Output",
    "Rows",
    "families",
    "outputs",
    "report_categories",
    "tag_family",
]

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


def _paper_number(name: str, kind: str) -> int | None:
    match = re.fullmatch(rf"{kind}(\d+)", name)
    return int(match.group(1)) if match else None


@functools.cache
def report_categories() -> dict[str, str]:
    """Each output's category in ``snakemake --report``, named so that the report's
    alphabetical order of categories is the paper's: the claims first, then each paper figure
    in a category of its own, numbered as in the paper, with the tables of its family (a table
    beside the figure whose file it names, else its family's first figure; a family without
    figures beside the first figure of its category), then the rest by category."""
    found = outputs()
    numbered = {n: _paper_number(n, "fig") for n in found}
    figure_of: dict[str, str] = {}  # output -> the paper figure it is filed with
    by_category: dict[str, list[str]] = {}
    for family in families().values():
        figures = sorted(
            (o.name for o in family.outputs if numbered[o.name] is not None),
            key=lambda n: numbered[n],
        )
        for o in family.outputs:
            if numbered[o.name] is not None:
                figure_of[o.name] = o.name
            elif figures:
                stem = o.file.rsplit("/", 1)[-1].removesuffix(".csv")
                named = [f for f in figures if found[f].file.endswith(stem)]
                figure_of[o.name] = (named or figures)[0]
        by_category.setdefault(family.outputs[0].category if family.outputs else "", []).extend(
            figures
        )
    categories = {}
    rest = sorted({o.category for n, o in found.items() if n not in figure_of} - {"Claims"})
    for name, o in found.items():
        figure = figure_of.get(name)
        if figure is None and by_category.get(o.category):
            figure = min(by_category[o.category], key=lambda n: numbered[n])
        if name == "claims":
            categories[name] = f"00 · {o.title}"
        elif figure is not None:
            categories[name] = f"{numbered[figure]:02d} · {found[figure].title}"
        else:
            number = max(n for n in numbered.values() if n is not None) + 1
            categories[name] = f"{number + rest.index(o.category):02d} · {o.category}"
    return categories
