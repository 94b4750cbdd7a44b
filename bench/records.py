"""Task records (issue 4): throughput with recording on vs off, and memory for 100,000 recorded tasks.

``python -m bench.records [rounds]`` times batches of 2,000 no-op tasks on one cluster (one CPU worker process,
2 threads) with the records plugin attached and detached in turn: each round runs one batch each way, in
alternating order, and the loss is the median over rounds of 1 - (on / off) -- paired, so drift and noise hit
both sides alike; the spread across rounds (IQR) is printed with it, and so is the noise floor: the spread of
the same setting measured twice in a row. A batch is timed until the scheduler forgot its tasks, so that
releasing them is counted where it belongs. On ``lc.init()``'s cluster as it ships (the scheduler and the
worker's Nanny in the cluster's head process). Then it records 100,000 real tasks and reports what the
scheduler's store holds (``RecordStore.nbytes()``), cross-checked with ``tracemalloc`` on a store filled the same
way in this process. Writes ``bench/results/records.{json,md}``.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
import tracemalloc
from typing import Any

from .core import noop, save, start_labcluster

BATCH = 2_000
N_TASKS = 5_000
N_RECORDED = 100_000


async def _forgotten(timeout: float = 60, dask_scheduler: Any = None) -> int:
    """Run on the scheduler: wait until it holds no task (every result released and forgotten)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while dask_scheduler.tasks and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    return len(dask_scheduler.tasks)


def _rate(session: Any, fn: Any, n: int) -> tuple[float, float]:
    """Tasks/s over each task's whole life -- submitted, run, fetched, released and forgotten by the scheduler --
    and CPU microseconds per task spent in this process (the driver and its client).

    Timing up to ``lc.get`` alone would leave the release of a batch's results (a good part of the scheduler's
    work per task) to land in whichever batch runs next, or in the gap before it: a bias between paired batches.
    """
    import labcluster as lc

    cpu, t = time.process_time(), time.perf_counter()
    lc.get([fn.remote() for _ in range(n)])  # the refs go when this returns: their results are released
    left = session.client.run_on_scheduler(_forgotten)
    if left:
        raise RuntimeError(f"the scheduler still holds {left} tasks 60 s after the batch")
    return n / (time.perf_counter() - t), (time.process_time() - cpu) / n * 1e6


def _detach(dask_scheduler: Any = None) -> None:
    from labcluster.diagnostics.recorder import RecordsPlugin

    dask_scheduler._labcluster_bench_records = dask_scheduler.plugins.pop(RecordsPlugin.name)


def _attach(dask_scheduler: Any = None) -> None:
    from labcluster.diagnostics.recorder import RecordsPlugin

    dask_scheduler.plugins[RecordsPlugin.name] = dask_scheduler._labcluster_bench_records


def paired(session: Any, rounds: int) -> dict[str, float]:
    """Rounds of one batch with the records plugin attached and one without (alternating which goes first)."""
    import labcluster as lc

    fn = lc.remote(noop)
    _rate(session, fn, BATCH)  # warm-up: connections, function cache
    runs: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    order: list[tuple[str, float]] = []
    for i in range(rounds):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            if mode == "off":
                session.client.run_on_scheduler(_detach)
            try:
                runs[mode].append(_rate(session, fn, BATCH))
                order.append((mode, runs[mode][-1][0]))
            finally:
                if mode == "off":
                    session.client.run_on_scheduler(_attach)
    ratios = [on[0] / off[0] for on, off in zip(runs["on"], runs["off"], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    # the noise floor: rounds alternate their order, so the last batch of a round and the first of the next run
    # with the same setting; their "loss" is pure noise
    same = [1 - b / a for (m1, a), (m2, b) in itertools.pairwise(order) if m1 == m2]
    n1, _, n3 = statistics.quantiles(same, n=4) if len(same) > 1 else (0.0, 0.0, 0.0)

    def median(mode: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[mode])

    return {"tasks_per_s_on": median("on", 0), "tasks_per_s_off": median("off", 0),
            "loss_percent": (1 - statistics.median(ratios)) * 100, "loss_iqr_low": (1 - q3) * 100,
            "loss_iqr_high": (1 - q1) * 100, "driver_cpu_us_per_task_on": median("on", 1),
            "driver_cpu_us_per_task_off": median("off", 1), "rounds": rounds, "batch": BATCH,
            "noise_iqr_low": n1 * 100, "noise_iqr_high": n3 * 100}


def local(rounds: int) -> dict[str, float]:
    """``lc.init()``'s cluster as it ships: the scheduler in the cluster's head process."""
    import labcluster as lc

    session = start_labcluster()
    try:
        return paired(session, rounds)
    finally:
        lc.shutdown()


def plugin_cost(n: int = 50_000) -> float:
    """The records plugin's own cost per task: the transitions of a no-op task, on a stand-in scheduler."""
    import uuid
    from types import SimpleNamespace

    from labcluster.diagnostics.recorder import RecordsPlugin

    plugin = RecordsPlugin(100_000)
    worker = SimpleNamespace(address="tcp://127.0.0.1:1")
    keys = [f"noop-{uuid.uuid4().hex}" for _ in range(n)]
    plugin.scheduler = SimpleNamespace(workers={worker.address: worker}, tasks={
        k: SimpleNamespace(key=k, dependencies=(), annotations={}, resource_restrictions={"CPU": 1.0},
                           processing_on=worker, nbytes=16, who_has=None) for k in keys})
    compute = [{"action": "compute", "start": 1.0, "stop": 2.0}]
    t = time.perf_counter()
    for k in keys:
        plugin.transition(k, "released", "waiting")
        plugin.transition(k, "waiting", "processing")
        plugin.transition(k, "processing", "memory", worker=worker.address, thread=1234, startstops=compute)
        plugin.transition(k, "memory", "released")
        plugin.transition(k, "released", "forgotten")
    return (time.perf_counter() - t) / n * 1e6


def store_bytes(dask_scheduler: Any = None) -> dict[str, int]:
    plugin = dask_scheduler.extensions["labcluster"].records  # the extension's recorder (None: records off)
    assert plugin is not None
    return {"rows": len(plugin.store), "bytes": plugin.store.nbytes()}


def memory() -> dict[str, float]:
    import labcluster as lc
    from labcluster.diagnostics.record_store import RecordStore

    fn = lc.remote(noop)
    session = start_labcluster()
    try:
        for _ in range(N_RECORDED // N_TASKS):
            lc.get([fn.remote() for _ in range(N_TASKS)])
        real = session.client.run_on_scheduler(store_bytes)
    finally:
        lc.shutdown()
    tracemalloc.start()
    store = RecordStore(maxlen=N_RECORDED)
    keys = [f"noop-{i:032x}" for i in range(N_RECORDED)]
    before = tracemalloc.get_traced_memory()[0]
    for i, key in enumerate(keys):
        index = store.open(key, "noop", resources={"CPU": 1.0}, submitted=1.0)
        store.update(index, state="memory", worker="tcp://127.0.0.1:1", thread=140000000000000 + i % 2, nbytes=16,
                     started=1.5, finished=2.0)
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"rows": real["rows"], "store_mb": real["bytes"] / 1e6, "bytes_per_row": real["bytes"] / real["rows"],
            "tracemalloc_mb_same_rows": traced / 1e6}


def _loss_line(title: str, r: dict[str, Any]) -> str:
    return (f"| {title}: tasks/s on / off, loss (median of {r['rounds']} paired rounds of {r['batch']:,} tasks; IQR; "
            f"IQR of the same setting twice in a row) | {r['tasks_per_s_on']:,.0f} / {r['tasks_per_s_off']:,.0f}, "
            f"**{r['loss_percent']:.1f}%** ({r['loss_iqr_low']:.1f} to {r['loss_iqr_high']:.1f}%; noise "
            f"{r['noise_iqr_low']:.1f} to {r['noise_iqr_high']:.1f}%) |")


def markdown(res: dict[str, Any]) -> str:
    own = res["local"]
    lines = [
        "| metric | value |", "|---|---|",
        _loss_line("`lc.init()` as it ships (scheduler in the head process)", own),
        f"| driver CPU per task, on / off | {own['driver_cpu_us_per_task_on']:.0f} / "
        f"{own['driver_cpu_us_per_task_off']:.0f} us |",
        f"| the plugin's own cost per task (a no-op task's transitions, stand-in scheduler) | "
        f"{res['plugin_us_per_task']:.1f} us |",
    ]
    if "memory" in res:
        m = res["memory"]
        lines += [
            f"| rows recorded | {m['rows']:,} |",
            f"| store size for them (`RecordStore.nbytes`) | {m['store_mb']:.1f} MB ({m['bytes_per_row']:.0f} B/row) |",
            f"| tracemalloc, same number of rows filled in-process | {m['tracemalloc_mb_same_rows']:.1f} MB |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 20
    result: dict[str, Any] = {"local": local(rounds), "plugin_us_per_task": plugin_cost()}
    if "--no-memory" in sys.argv:  # the throughput half alone, printed, not saved (the memory half takes ~2 min)
        print(markdown(result))
        sys.exit(0)
    result["memory"] = memory()
    print(save("records", result, markdown(result)))
