"""How long naming a job's points takes: :func:`llm_energy.measure.point_ids.point_ids`, which
hashes the job's setup once, against hashing it again for every point (``point_id`` one point at
a time), and against that with the whole plan, its points included, turned into plain data for
every point (what computing an id cost before the setup's hash left the points out), on the plans
of the given configuration.

    python benchmarks/point_ids.py config/h200.yaml config/h200_workloads.yaml [--repeat 3]

Every consumer of a job's ids (resuming from a journal, seeding it from shipped rows, the
GPU-time plan's trials left, the workload parts' split) calls ``point_ids`` once per table and
id version, so its cost grows with the points times the tables. Prints, per job, its points
and the best of ``--repeat`` timings of the three ways, and checks that they give the same ids. A
benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import time

from llm_energy.config import load_config
from llm_energy.measure.job import plain
from llm_energy.measure.plan import plan_study
from llm_energy.measure.point_ids import point_id, point_ids


def _best_of(repeat: int, call) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configfiles", nargs="+")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    plans = plan_study(load_config(*args.configfiles))
    print("| job | points | setup hashed once (s) | per point (s) | per point, whole plan (s) |")
    print("|---|---|---|---|---|")
    for group, plan in sorted(plans.items()):
        once_s, once = _best_of(args.repeat, lambda plan=plan: point_ids(plan))
        each_s, each = _best_of(
            args.repeat, lambda plan=plan: {p.key: point_id(plan, p) for p in plan.points}
        )
        whole_s, whole = _best_of(
            1,
            lambda plan=plan: {p.key: (plain(plan), point_id(plan, p))[1] for p in plan.points},
        )
        if not once == each == whole:
            raise SystemExit(f"{group}: the ways name the points differently")
        print(f"| {group} | {len(plan.points)} | {once_s:.4f} | {each_s:.3f} | {whole_s:.2f} |")


if __name__ == "__main__":
    main()
