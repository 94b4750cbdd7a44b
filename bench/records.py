"""Task records (issue 4): throughput with recording on vs off, and memory for 100,000 recorded tasks.

``python -m bench.records [repeat]`` starts two clusters of the same shape (one CPU worker process, 2 threads),
one with ``labcluster.records.enabled`` off, and times 5,000 no-op tasks on each, alternating on/off runs so
drift hits both alike. Then it records 100,000 real tasks and reports what the scheduler's store holds
(``RecordStore.nbytes()``), cross-checked with ``tracemalloc`` on a store filled the same way in this process.
Writes ``bench/results/records.{json,md}``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import dask

from .core import save

N_TASKS = 5_000
N_RECORDED = 100_000


def noop() -> None:
    return None


def _rate(lc: Any, fn: Any) -> tuple[float, float]:
    """Tasks/s, and CPU microseconds per task spent in this process (driver, client and in-process scheduler)."""
    cpu, t = time.process_time(), time.perf_counter()
    lc.get([fn.remote() for _ in range(N_TASKS)])
    return N_TASKS / (time.perf_counter() - t), (time.process_time() - cpu) / N_TASKS * 1e6


def throughput(repeat: int) -> dict[str, float]:
    import labcluster as lc

    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpus: dict[str, list[float]] = {"on": [], "off": []}
    fn = lc.remote(noop)
    for i in range(repeat):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):  # neither mode always goes first
            with dask.config.set({"labcluster.records.enabled": mode == "on"}):
                lc.init(num_cpus=2, include_dashboard=False)
            try:
                _rate(lc, fn)  # warm-up: connections, function cache
                for _ in range(2):
                    rate, cpu = _rate(lc, fn)
                    rates[mode].append(rate)
                    cpus[mode].append(cpu)
            finally:
                lc.shutdown()
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {"tasks_per_s_on": on, "tasks_per_s_off": off, "loss_percent": (1 - on / off) * 100,
            "driver_cpu_us_per_task_on": statistics.median(cpus["on"]),
            "driver_cpu_us_per_task_off": statistics.median(cpus["off"]), "plugin_us_per_task": plugin_cost()}


def _detach(dask_scheduler: Any = None) -> None:
    from labcluster.cluster.records import RECORDS_PLUGIN

    dask_scheduler._labcluster_bench_records = dask_scheduler.plugins.pop(RECORDS_PLUGIN)


def _attach(dask_scheduler: Any = None) -> None:
    from labcluster.cluster.records import RECORDS_PLUGIN

    dask_scheduler.plugins[RECORDS_PLUGIN] = dask_scheduler._labcluster_bench_records


def separate_scheduler(repeat: int) -> dict[str, float]:
    """The same A/B with the scheduler in its own process (``labcluster scheduler``/``worker``), toggling the
    records plugin between batches: the plugin's cost without sharing a GIL with the driver."""
    import signal
    import subprocess

    import labcluster as lc

    exe = str(Path(sys.executable).parent / "labcluster")
    scheduler = subprocess.Popen([exe, "scheduler", "--port", "0", "--dashboard-address", ""],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert scheduler.stdout is not None
    address = scheduler.stdout.readline().split()[-1]
    worker = subprocess.Popen([exe, "worker", address, "--nthreads", "2", "--gpus", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    try:
        session = lc.init(address)
        deadline = time.monotonic() + 60
        while not lc.nodes() and time.monotonic() < deadline:
            time.sleep(0.1)
        fn = lc.remote(noop)
        _rate(lc, fn)
        for i in range(2 * repeat):
            for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                if mode == "off":
                    session.client.run_on_scheduler(_detach)
                rates[mode].append(_rate(lc, fn)[0])
                if mode == "off":
                    session.client.run_on_scheduler(_attach)
        lc.shutdown()
    finally:
        for process in (worker, scheduler):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {"tasks_per_s_on": on, "tasks_per_s_off": off, "loss_percent": (1 - on / off) * 100}


def plugin_cost(n: int = 50_000) -> float:
    """The records plugin's own cost per task: the five transitions of a no-op task, on a stand-in scheduler."""
    import uuid
    from types import SimpleNamespace

    from labcluster.cluster.records import RecordsPlugin

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
    from labcluster.cluster.records import plugin_of

    plugin = plugin_of(dask_scheduler)
    assert plugin is not None
    return {"rows": len(plugin.store), "bytes": plugin.store.nbytes()}


def memory() -> dict[str, float]:
    import labcluster as lc
    from labcluster.cluster.records import RecordStore

    fn = lc.remote(noop)
    session = lc.init(num_cpus=2, include_dashboard=False)
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


def markdown(res: dict[str, Any]) -> str:
    t, m, sep = res["throughput"], res["memory"], res["separate_scheduler"]
    return "\n".join([
        "| metric | value |", "|---|---|",
        f"| no-op tasks/s, records on | {t['tasks_per_s_on']:,.0f} |",
        f"| no-op tasks/s, records off | {t['tasks_per_s_off']:,.0f} |",
        f"| throughput loss from recording | {t['loss_percent']:.1f}% |",
        f"| driver CPU per task (client + in-process scheduler), on / off | {t['driver_cpu_us_per_task_on']:.0f} / "
        f"{t['driver_cpu_us_per_task_off']:.0f} us |",
        f"| the plugin's own cost per task (5 transitions, stand-in scheduler) | {t['plugin_us_per_task']:.1f} us |",
        f"| scheduler in its own process: tasks/s on / off | {sep['tasks_per_s_on']:,.0f} / "
        f"{sep['tasks_per_s_off']:,.0f} ({sep['loss_percent']:.1f}% loss) |",
        f"| rows recorded | {m['rows']:,} |",
        f"| store size for them (`RecordStore.nbytes`) | {m['store_mb']:.1f} MB ({m['bytes_per_row']:.0f} B/row) |",
        f"| tracemalloc, same number of rows filled in-process | {m['tracemalloc_mb_same_rows']:.1f} MB |",
    ])


if __name__ == "__main__":
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    result = {"throughput": throughput(repeat), "separate_scheduler": separate_scheduler(repeat)}
    if "--no-memory" in sys.argv:  # the throughput half alone (the memory half records 100,000 tasks: ~2 min)
        print(json.dumps(result, indent=2))
        sys.exit(0)
    result["memory"] = memory()
    print(save("records", result, markdown(result)))
