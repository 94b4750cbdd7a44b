"""Actor method calls, side by side in one run: labcluster actors, raw Dask actors (``actor=True``), Ray.

5,000 async calls (submit all, then wait for all) and the sync round trip of one call, on one cluster
shape (one worker process, 2 threads). ``python -m bench.actors`` writes ``bench/results/actors.{json,md}``.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from typing import Any

from .core import save, start_labcluster

N_ASYNC = 5_000
N_SYNC = 300


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def _measure(call_async: Any, call_sync: Any, repeat: int) -> dict[str, float]:
    call_async(200)
    for _ in range(20):
        call_sync()
    rates, rtts = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        call_async(N_ASYNC)
        rates.append(N_ASYNC / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(N_SYNC):
            call_sync()
        rtts.append((time.perf_counter() - t) / N_SYNC * 1e3)
    return {"calls_per_s": statistics.median(rates), "round_trip_ms": statistics.median(rtts)}


def run(repeat: int = 3) -> dict[str, dict[str, float]]:
    import labcluster as lc

    results: dict[str, dict[str, float]] = {}
    session = start_labcluster()
    try:
        actor = lc.remote(Counter).remote()
        results["labcluster"] = _measure(lambda n: lc.get([actor.incr.remote() for _ in range(n)]),
                                         lambda: lc.get(actor.incr.remote()), repeat)
        client = session.client
        dask_actor = client.submit(Counter, actor=True).result()
        results["dask-actor"] = _measure(lambda n: [f.result() for f in [dask_actor.incr() for _ in range(n)]],
                                         lambda: dask_actor.incr().result(), repeat)
    finally:
        lc.shutdown()
    if importlib.util.find_spec("ray") is not None:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            ray_actor: Any = ray.remote(Counter).remote()
            results["ray"] = _measure(lambda n: ray.get([ray_actor.incr.remote() for _ in range(n)]),
                                      lambda: ray.get(ray_actor.incr.remote()), repeat)
        finally:
            ray.shutdown()
    return results


def markdown(results: dict[str, dict[str, float]]) -> str:
    systems = list(results)
    lines = ["| metric | " + " | ".join(systems) + " | labcluster / dask-actor |", "|---" * (len(systems) + 2) + "|"]
    for key, label in (("calls_per_s", "async actor calls/s (5,000)"), ("round_trip_ms", "sync call round trip (ms)")):
        cells = [f"{results[s][key]:.3g}" for s in systems]
        a, b = results.get("labcluster", {}).get(key), results.get("dask-actor", {}).get(key)
        lines.append(f"| {label} | " + " | ".join(cells) + (f" | {a / b:.2f}x |" if a and b else " | - |"))
    return "\n".join(lines)


if __name__ == "__main__":
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    res = run(repeat)
    print(save("actors", res, markdown(res)))
