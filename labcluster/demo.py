"""``labcluster demo``: a small heterogeneous pipeline (CPU decode -> GPU inference -> CPU post-process).

GPUs are simulated when the machine has none. Until the Dataset executors land this runs the
pipeline as plain tasks and prints the cluster, the results and where each stage ran.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import labcluster as lc

from .diagnostics import nvml


@lc.remote(num_cpus=1)
def decode(i: int) -> list[float]:
    time.sleep(0.05)  # stands in for reading and decoding one image
    return [float((i * 7 + j) % 11) for j in range(64)]


@lc.remote(num_gpus=1)
def infer(batch: list[float]) -> dict[str, Any]:
    time.sleep(0.02)  # stands in for one forward pass on the GPU
    ctx = lc.get_runtime_context()
    return {"score": sum(batch) / len(batch), "gpu": lc.get_gpu_ids(), "mode": ctx.gpu_mode}


@lc.remote(num_cpus=1)
def postprocess(pred: dict[str, Any]) -> dict[str, Any]:
    return {**pred, "label": "high" if pred["score"] > 5 else "low"}


def run(n: int = 24, out: Any = print) -> list[dict[str, Any]]:
    """Run the demo pipeline on ``n`` items and print what happened."""
    probe = nvml.probe()
    started = time.perf_counter()
    simulate = None if probe.count else 1
    with lc.init(simulate_gpus=simulate) as session:
        out(f"GPUs: {probe.count} found ({probe.state.value})" + ("; simulating 1" if simulate else ""))
        out(repr(session))
        from .cluster.info import workers_table

        out(workers_table(session.workers()))
        refs = [postprocess.remote(infer.remote(decode.remote(i))) for i in range(n)]
        pending = list(refs)
        while pending:
            _, pending = lc.wait(pending, num_returns=len(pending), timeout=0.5)
            out(f"  {n - len(pending)}/{n} items done")
        results = lc.get(refs, timeout=120)
        wall = time.perf_counter() - started
    labels = Counter(r["label"] for r in results)
    modes = Counter(r["mode"] for r in results)
    out(f"first result: {results[0]}")
    out(f"{n} items through decode (CPU) -> infer (GPU: {dict(modes)}) -> postprocess (CPU) in {wall:.2f}s "
        f"including cluster start; labels {dict(labels)}")
    return results
