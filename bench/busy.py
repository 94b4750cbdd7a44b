"""A busy notebook cell: how much of the cluster's work goes on while the driver's own Python is busy.

``python -m bench.busy [rounds]`` submits 3,000 no-op tasks, then spins pure Python in this process for 2 s (a
cell doing its own work), and counts the tasks the scheduler has finished by then. Once with ``lc.init()`` as it
ships (the scheduler and the worker's Nanny in the cluster's head process, a worker process of their own) and once
with ``lc.init(processes=False)`` (the scheduler and a thread worker in this process, sharing its GIL). Writes
``bench/results/busy.{json,md}``.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from .core import noop, save, start_labcluster

N_TASKS = 3_000
BUSY_S = 2.0


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(1_000):
            x += i


def _finished(dask_scheduler: Any = None) -> int:
    return sum(1 for ts in dask_scheduler.tasks.values() if ts.state == "memory")


def measure(processes: bool, rounds: int) -> dict[str, Any]:
    import labcluster as lc

    session = start_labcluster(processes)
    try:
        fn = lc.remote(noop)
        lc.get([fn.remote() for _ in range(500)])  # warm-up
        done = []
        for _ in range(rounds):
            refs = [fn.remote() for _ in range(N_TASKS)]
            _spin(BUSY_S)
            done.append(session.client.run_on_scheduler(_finished))
            lc.get(refs)
            del refs
        return {"finished_while_busy": statistics.median(done), "each": done, "tasks": N_TASKS, "busy_s": BUSY_S}
    finally:
        lc.shutdown()


def markdown(res: dict[str, Any]) -> str:
    rows = [("`lc.init()` as it ships (scheduler in the head process)", res["head_process"]),
            ("`lc.init(processes=False)` (scheduler and thread worker in this process)", res["in_process"])]
    lines = ["| layout | tasks finished during a busy cell (median; each round) |", "|---|---|"]
    for title, r in rows:
        lines.append(f"| {title} | {r['finished_while_busy']:,.0f} of {r['tasks']:,} in {r['busy_s']:g} s; "
                     f"{', '.join(f'{d:,}' for d in r['each'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    result = {"head_process": measure(True, rounds), "in_process": measure(False, rounds)}
    print(save("busy", result, markdown(result)))
