"""Where a Dataset run's time goes, from its task records: per stage, and the GPU slot's idle gaps.

``python -m bench.stages [rows_per_block] [mode] [runs]`` runs the canonical pipeline (``labcluster.demo.pipeline``,
64 items) on a 2-CPU, 1-simulated-GPU local cluster and prints, per run: the wall time; per stage its tasks, their
median time from submission to start and their median duration; when the GPU slot first started, how long it sat
idle between its blocks (and the longest gap), and how long the run went on after its last GPU block. With
``--tasks`` it lists every task (stage, submitted, started, finished, seconds since the run's first submission).
This is how the out-of-turn blocks fixed by ``fifo_timeout=0`` were found (bench/RESULTS.md). A measurement tool:
nothing here is asserted.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import labcluster as lc
from labcluster.api.history import next_index
from labcluster.demo import pipeline


def _seconds(rows: Sequence[dict[str, Any]], start: str, end: str) -> list[float]:
    return [r[end] - r[start] for r in rows if r.get(start) is not None and r.get(end) is not None]


def summary(rows: Sequence[dict[str, Any]], wall: float) -> list[str]:
    """Lines about one run's records (``lc.list_tasks`` rows of its stages)."""
    rows = [r for r in rows if r["stage"] and r["started"] is not None and r["finished"] is not None]
    t0 = min(r["submitted"] for r in rows)
    lines = [f"wall {wall:.2f} s"]
    stages: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        stages.setdefault(str(r["stage"]), []).append(r)
    for name, rs in stages.items():
        waited, ran = _seconds(rs, "submitted", "started"), _seconds(rs, "started", "finished")
        lines.append(f"  {name}: {len(rs)} tasks, submitted -> started {statistics.median(waited) * 1000:.0f} ms, "
                     f"running {statistics.median(ran) * 1000:.0f} ms (medians)")
    gpu = sorted((r for r in rows if "GPU" in (r.get("resources") or {}) or r.get("kind") == "actor call"),
                 key=lambda r: r["started"])
    if gpu:
        gaps = [b["started"] - a["finished"] for a, b in itertools.pairwise(gpu)]
        last = max(r["finished"] for r in rows)
        lines.append(f"  GPU: first block at {gpu[0]['started'] - t0:.2f} s, idle between blocks "
                     f"{sum(max(0.0, g) for g in gaps):.2f} s (longest {max(gaps, default=0.0) * 1000:.0f} ms), "
                     f"{last - gpu[-1]['finished']:.2f} s after its last block")
    return lines


def tasks(rows: Sequence[dict[str, Any]]) -> list[str]:
    rows = sorted((r for r in rows if r["stage"] and r["started"] is not None), key=lambda r: r["started"])
    t0 = min(r["submitted"] for r in rows)
    return [f"  {str(r['stage'])[:32]:32} submitted {r['submitted'] - t0:6.3f}  started {r['started'] - t0:6.3f}  "
            f"finished {r['finished'] - t0:6.3f}" for r in rows]


def main(argv: Sequence[str]) -> None:
    args = [a for a in argv if not a.startswith("--")]
    rows_per_block = int(args[0]) if args else 4
    mode = args[1] if len(args) > 1 else "pipelined"
    runs = int(args[2]) if len(args) > 2 else 3
    with lc.init(num_cpus=2, num_gpus=1, simulate_gpus=True, include_dashboard=False):
        ds = pipeline(64, rows_per_block=rows_per_block)
        ds.count(mode=mode)  # warm-up
        for _ in range(runs):
            since = next_index()
            t = time.perf_counter()
            ds.count(mode=mode)
            wall = time.perf_counter() - t
            time.sleep(0.3)  # the last records reach the scheduler
            rows = lc.list_tasks(since=since)
            print("\n".join(summary(rows, wall)))
            if "--tasks" in argv:
                print("\n".join(tasks(rows)))


if __name__ == "__main__":
    main(sys.argv[1:])
