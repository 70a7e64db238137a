"""Command line: ``llm-energy measure|plan|validate-config|aggregate|figure|table|...``.

Each Snakemake rule runs one of these commands, and the same command works by hand. Each
command lives in one module, its arguments beside its handler: :mod:`.measure` (a job's
measurements), :mod:`.planning` (jobs and their estimated cost), :mod:`.data` (traces, tasks,
PG-19, model summaries) and :mod:`.outputs` (aggregate, figures, tables, claims).
"""

from __future__ import annotations

import argparse
import sys

from llm_energy.cli import data, measure, outputs, planning
from llm_energy.errors import LlmEnergyError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-energy",
        description="Measure the energy of LLM inference and draw the study's figures and tables "
        "from the rows. Each Snakemake rule runs one of these commands; each works by hand too.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for module in (measure, planning, data, outputs):
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from llm_energy.measure.stop import EXIT_STOPPED, Stopped

    try:
        args.func(args)
    except Stopped as exc:
        print(f"llm-energy: {exc}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except LlmEnergyError as exc:
        print(f"llm-energy: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
