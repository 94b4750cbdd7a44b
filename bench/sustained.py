"""Sustained throughput: does a long session slow down? (the batched streams' message log, cluster/tuning.py)

``python -m bench.sustained [batches]`` starts the same local cluster twice -- once with Dask's message log
(each batched stream keeps its last 1,000 sent payloads) and once with labcluster's
(``labcluster.stream-message-log``, 16) -- and on each times ``batches`` (default 20) batches of 5,000 no-op
tasks in a row. Per batch: tasks/s and the seconds Python's garbage collector ran in this process (the driver
and its client; the scheduler runs in the cluster's head process); at the end, how many objects the collector
tracks. Writes
``bench/results/sustained.{json,md}``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from typing import Any

import dask

from .core import noop, save, start_labcluster

N_TASKS = 5_000


class _GCTimer:
    """Seconds spent in garbage collection, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


def run(message_log: int, batches: int) -> dict[str, Any]:
    import labcluster as lc

    with dask.config.set({"labcluster.stream-message-log": message_log}):
        start_labcluster()
    fn = lc.remote(noop)
    timer = _GCTimer()
    gc.callbacks.append(timer)
    rates, gc_share = [], []
    try:
        lc.get([fn.remote() for _ in range(N_TASKS)])  # warm-up
        for _ in range(batches):
            before, t = timer.seconds, time.perf_counter()
            lc.get([fn.remote() for _ in range(N_TASKS)])
            wall = time.perf_counter() - t
            rates.append(N_TASKS / wall)
            gc_share.append((timer.seconds - before) / wall)
        tracked = len(gc.get_objects())
    finally:
        gc.callbacks.remove(timer)
        lc.shutdown()
    return {"message_log": message_log, "tasks_per_s": rates, "gc_share": gc_share, "tracked_objects_at_end": tracked,
            "first3_tasks_per_s": statistics.median(rates[:3]), "last3_tasks_per_s": statistics.median(rates[-3:]),
            "first3_gc_share": statistics.median(gc_share[:3]), "last3_gc_share": statistics.median(gc_share[-3:])}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"{res['batches']} batches of {N_TASKS:,} no-op tasks in a row on one `lc.init(num_cpus=2)` cluster.", "",
             "| message log per stream | tasks/s, first 3 batches | tasks/s, last 3 | GC share of the driver's wall "
             "time, first 3 / last 3 | objects the GC tracks at the end |", "|---|---|---|---|---|"]
    for r in (res["dask"], res["labcluster"]):
        lines.append(f"| {r['message_log']:,} payloads | {r['first3_tasks_per_s']:,.0f} | "
                     f"{r['last3_tasks_per_s']:,.0f} | {r['first3_gc_share']:.0%} / {r['last3_gc_share']:.0%} | "
                     f"{r['tracked_objects_at_end']:,} |")
    ratio = res["labcluster"]["last3_tasks_per_s"] / res["dask"]["last3_tasks_per_s"]
    lines += ["", f"Last 3 batches, labcluster's setting / Dask's: **{ratio:.2f}x** tasks/s."]
    return "\n".join(lines)


if __name__ == "__main__":
    from labcluster import config  # (imports distributed, whose defaults hold Dask's length)

    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    result = {"batches": batches, "dask": run(int(dask.config.get("distributed.admin.low-level-log-length")), batches),
              "labcluster": run(int(config.get("stream-message-log")), batches)}
    print(save("sustained", result, markdown(result)))
