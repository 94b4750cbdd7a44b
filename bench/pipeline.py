"""The canonical heterogeneous pipeline, side by side in one run: labcluster bulk and pipelined, raw Dask futures
chained and stage by stage, and (when importable) Ray tasks chained, Ray Data streaming and PySpark.

64 items: stage 1 ~20 ms of real single-threaded numpy work on a CPU slot, stage 2 a 20 ms sleep in the one GPU slot
(simulated), stage 3 ~10 ms of CPU work; 256 KB carried from stage to stage. The ideal bound on 2 cores is
max(64 x 20 ms, 64 x 30 ms / 2) = 1.28 s; the ideal bulk time 0.64 + 1.28 + 0.32 = 2.24 s. Every system runs it at
two grains, like for like: one item a task (64 blocks of one row; 192 tasks) and four items a task (16 blocks of
four rows, chained tasks over four items; 48 tasks). Printed per system and grain: the median wall time, its ratio
to the bound (bulk also to its own), the GPU slot's busy fraction (64 x 20 ms over the wall time), and labcluster's
peak bytes of blocks held. Then 10,000 small rows through 3 operators: rows/s, labcluster against Ray Data. Runs
alternate within each cluster (A B A B); each cluster is started once.

``python -m bench.pipeline [repeats] [labcluster|ray|pyspark]`` writes ``bench/results/pipeline.{json,md}``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from labcluster.demo import _work, calibrate
from labcluster.text import plural

from .core import HostCPU, pyspark_context, save, threads_slowdown

ITEMS, DECODE_MS, INFER_MS, POST_MS, PAYLOAD = 64, 20.0, 20.0, 10.0, 256 * 1024
BOUND = max(ITEMS * INFER_MS, ITEMS * (DECODE_MS + POST_MS) / 2) / 1000
BULK_BOUND = (ITEMS * DECODE_MS / 2 + ITEMS * INFER_MS + ITEMS * POST_MS / 2) / 1000
SMALL_ROWS = 10_000
#: items a task: every system runs the pipeline at each grain
GRAINS = (1, 4)


def named(system: str, grain: int) -> str:
    return f"{system}, {plural(grain, 'item')} a task"


# -- one item at a time (chained tasks) --------------------------------------------------------------------------

def decode_item(i: int, units: int) -> np.ndarray:
    _work(np.full(1, float(i)), units)
    return np.full(PAYLOAD // 8, float(i))


def infer_item(image: np.ndarray) -> np.ndarray:
    time.sleep(INFER_MS / 1000)
    return image


def post_item(image: np.ndarray, units: int) -> float:
    _work(image, units)
    return float(image.mean())


def decode_items(items: list[int], units: int) -> np.ndarray:
    return np.stack([decode_item(i, units) for i in items])


def infer_items(images: np.ndarray) -> np.ndarray:
    time.sleep(INFER_MS / 1000 * len(images))
    return images


def post_items(images: np.ndarray, units: int) -> list[float]:
    return [post_item(v, units) for v in images]


def chunks(grain: int) -> list[list[int]]:
    return [list(range(i, min(i + grain, ITEMS))) for i in range(0, ITEMS, grain)]


def fused_items(items: list[int], units: tuple[int, int], gpu_lock: str) -> list[float]:
    """The three stages fused in one task, as Spark runs narrow transformations; the one GPU is a file lock, held
    by one Python worker at a time for its inference."""
    import fcntl

    images = decode_items(items, units[0])
    with open(gpu_lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            images = infer_items(images)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return post_items(images, units[1])


# -- small rows --------------------------------------------------------------------------------------------------

def add_one(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "v": row["id"] + 1}


def even(row: dict[str, Any]) -> bool:
    return bool(row["v"] % 2 == 0)


def square(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "sq": row["v"] * row["v"]}


def _drain(data: Any) -> int:
    """A Ray Dataset run to its end: its rows."""
    return sum(len(b["id"]) for b in data.iter_batches(batch_size=None))


def _spark_count(sc: Any, grain: int, fused: Callable[[list[int]], list[float]]) -> int:
    parts = chunks(grain)
    return int(sc.parallelize(parts, len(parts)).map(fused).count())


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_labcluster(repeat: int, units: tuple[int, int]) -> dict[str, dict[str, float]]:
    import labcluster as lc
    from labcluster.demo import pipeline

    lc.init(num_cpus=2, num_gpus=1, simulate_gpus=True, include_dashboard=False)
    try:
        client = lc.current_session().client
        datasets = {g: pipeline(ITEMS, decode_ms=DECODE_MS, infer_ms=INFER_MS, post_ms=POST_MS,
                                payload_kb=PAYLOAD // 1024, rows_per_block=g) for g in GRAINS}

        def dask_chained(grain: int) -> None:
            refs = []
            for items in chunks(grain):
                a = client.submit(decode_items, items, units[0], resources={"CPU": 1}, pure=False)
                b = client.submit(infer_items, a, resources={"GPU": 1}, pure=False)
                refs.append(client.submit(post_items, b, units[1], resources={"CPU": 1}, pure=False))
            client.gather(refs)

        def dask_stages(grain: int) -> None:
            """Spark-style with raw Dask futures: each stage's tasks all finish before the next stage's start.
            The floor a bulk executor can reach on this machine (the same work, Dask's scheduling only)."""
            from distributed import wait

            a = [client.submit(decode_items, items, units[0], resources={"CPU": 1}, pure=False)
                 for items in chunks(grain)]
            wait(a)
            b = [client.submit(infer_items, x, resources={"GPU": 1}, pure=False) for x in a]
            wait(b)
            client.gather([client.submit(post_items, x, units[1], resources={"CPU": 1}, pure=False) for x in b])

        small = lc.data.range(SMALL_ROWS).map(add_one).filter(even).map(square)
        for ds in datasets.values():
            ds.count()  # warm-up: the workers import pyarrow and the stage functions once
        walls: dict[str, list[float]] = {}
        peaks: dict[str, list[float]] = {}
        small_rates = []
        for r in range(repeat):
            print(f"labcluster round {r + 1}/{repeat}", file=sys.stderr, flush=True)
            for grain, ds in datasets.items():
                for mode in ("bulk", "pipelined"):
                    name = named(f"labcluster {mode}", grain)
                    walls.setdefault(name, []).append(_timed(functools.partial(ds.count, mode=mode)))
                    peaks.setdefault(name, []).append(ds.stats().peak_bytes)
                walls.setdefault(named("dask futures chained", grain), []).append(
                    _timed(functools.partial(dask_chained, grain)))
                walls.setdefault(named("dask futures stage by stage (bulk)", grain), []).append(
                    _timed(functools.partial(dask_stages, grain)))
            small_rates.append(SMALL_ROWS / _timed(small.count))
        out = {name: {"wall": statistics.median(w)} for name, w in walls.items()}
        for name, p in peaks.items():
            out[name]["peak_bytes"] = statistics.median(p)
        out[named("labcluster pipelined", 1)]["small_rows_per_s"] = statistics.median(small_rates)
        return out
    finally:
        lc.shutdown()


def run_ray(repeat: int, units: tuple[int, int]) -> dict[str, dict[str, float]]:
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        dec = ray.remote(num_cpus=1)(decode_items)
        # Ray's GPU tasks default to max_calls=1 (a fresh worker process per call, to free GPU memory): 194 s for
        # this job in one run; max_calls=0 reuses workers, as a pipeline would
        inf = ray.remote(num_cpus=0, num_gpus=1, max_calls=0)(infer_items)
        pst = ray.remote(num_cpus=1)(post_items)

        def tasks_chained(grain: int) -> None:
            ray.get([pst.remote(inf.remote(dec.remote(items, units[0])), units[1]) for items in chunks(grain)])

        out: dict[str, dict[str, float]] = {}
        runs: dict[str, Callable[[], Any]] = {named("ray tasks chained", g): functools.partial(tasks_chained, g)
                                              for g in GRAINS}
        small = None
        if importlib.util.find_spec("ray.data") is not None:
            import logging

            import ray.data

            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            context.print_on_execution_start = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)

            class RayModel:
                def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                    time.sleep(INFER_MS / 1000 * len(batch["id"]))
                    return batch

            def ray_decode(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                return {"id": batch["id"], "image": np.stack([decode_item(int(i), units[0]) for i in batch["id"]])}

            def ray_post(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                return {"id": batch["id"], "score": np.array([post_item(v, units[1]) for v in batch["image"]])}

            for g in GRAINS:
                data = (ray.data.range(ITEMS, override_num_blocks=ITEMS // g).map_batches(ray_decode, batch_size=g)
                        .map_batches(RayModel, batch_size=g, num_gpus=1, num_cpus=0, concurrency=1)
                        .map_batches(ray_post, batch_size=g))
                runs[named("ray data streaming", g)] = functools.partial(_drain, data)
            small = ray.data.range(SMALL_ROWS).map(add_one).filter(even).map(square)
        for fn in runs.values():
            fn()  # warm-up
        walls: dict[str, list[float]] = {name: [] for name in runs}
        rates = []
        for r in range(repeat):
            print(f"ray round {r + 1}/{repeat}", file=sys.stderr, flush=True)
            for name, fn in runs.items():
                walls[name].append(_timed(fn))
            if small is not None:
                rates.append(SMALL_ROWS / _timed(small.count))
        out = {name: {"wall": statistics.median(w)} for name, w in walls.items()}
        if rates:
            out[named("ray data streaming", 1)]["small_rows_per_s"] = statistics.median(rates)
        return out
    finally:
        ray.shutdown()


def run_pyspark(repeat: int, units: tuple[int, int]) -> dict[str, dict[str, float]]:
    """PySpark ``local[2]``: a partition per task, the stages fused (the GPU a lock); its JVM start left out."""
    import tempfile

    sc, _ = pyspark_context("bench-pipeline")
    fd, lock = tempfile.mkstemp(prefix="labcluster-bench-gpu-")
    os.close(fd)
    try:
        fused = functools.partial(fused_items, units=units, gpu_lock=lock)
        runs = {named("pyspark fused, GPU a lock", g): functools.partial(_spark_count, sc, g, fused) for g in GRAINS}
        for fn in runs.values():
            fn()  # warm-up
        walls: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(repeat):
            print(f"pyspark round {r + 1}/{repeat}", file=sys.stderr, flush=True)
            for name, fn in runs.items():
                walls[name].append(_timed(fn))
        return {name: {"wall": statistics.median(w)} for name, w in walls.items()}
    finally:
        sc.stop()
        os.unlink(lock)


def markdown(results: dict[str, dict[str, float]], load: tuple[float, float], cpu: HostCPU | None = None,
             threads: float | None = None) -> str:
    host = f"; {cpu.text()}" if cpu is not None else ""
    if threads is not None:
        host += f"; the decode's work in two threads of one process {threads:.2f}x its time alone"
    lines = [f"canonical pipeline, {ITEMS} items; ideal bound {BOUND:.2f} s (bulk: {BULK_BOUND:.2f} s); load average "
             f"{load[0]:.2f} before, {load[1]:.2f} after{host}", "",
             "| system | wall (s) | x bound | x bulk bound | GPU busy | peak blocks held |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        bulk = f"{r['wall'] / BULK_BOUND:.2f}x" if "bulk" in name else "-"
        peak = f"{r['peak_bytes'] / 2**20:.1f} MiB" if "peak_bytes" in r else "-"
        lines.append(f"| {name} | {r['wall']:.2f} | {r['wall'] / BOUND:.2f}x | {bulk} | "
                     f"{ITEMS * INFER_MS / 1000 / r['wall']:.0%} | {peak} |")
    rates = {n: r["small_rows_per_s"] for n, r in results.items() if "small_rows_per_s" in r}
    if rates:
        lines += ["", f"{SMALL_ROWS:,} small rows through map -> filter -> map (each system's default blocks): " +
                  ", ".join(f"{n.split(',')[0]} {v:,.0f} rows/s" for n, v in rates.items())]
        if len(rates) == 2:
            a, b = rates.values()
            lines[-1] += f" ({a / b:.2f}x)"
    if importlib.util.find_spec("pyspark") is None:
        lines.append("PySpark: not installed (-)")
    if importlib.util.find_spec("ray") is None:
        lines.append("Ray: not installed (-)")
    return "\n".join(lines)


def run(repeat: int = 3, only: str = "") -> tuple[dict[str, dict[str, float]], str]:
    units = (calibrate(DECODE_MS), calibrate(POST_MS))
    x = np.ones(1 << 15)
    threads = threads_slowdown(lambda: _work(x, units[0]))  # 1.0: the CPU worker's two slots run in parallel
    load0, cpu = os.getloadavg()[0], HostCPU()
    results = run_labcluster(repeat, units) if only in ("", "labcluster") else {}
    print(markdown(results, (load0, os.getloadavg()[0]), cpu, threads), file=sys.stderr, flush=True)  # Ray may hang
    if importlib.util.find_spec("ray") is not None and only in ("", "ray"):
        results.update(run_ray(repeat, units))
    if importlib.util.find_spec("pyspark") is not None and only in ("", "pyspark"):
        try:
            results.update(run_pyspark(repeat, units))
        except Exception as e:  # no Java, say: keep what the others measured
            print(f"PySpark did not run: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
    md = markdown(results, (load0, os.getloadavg()[0]), cpu, threads)
    return results, md


if __name__ == "__main__":
    res, md = run(int(sys.argv[1]) if len(sys.argv) > 1 else 3, sys.argv[2] if len(sys.argv) > 2 else "")
    print(save("pipeline", res, md))
