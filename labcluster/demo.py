"""``labcluster demo``: one heterogeneous pipeline, run Spark-style (bulk) and Ray-style (pipelined), compared.

The canonical pipeline (:func:`pipeline`): CPU decode of generated arrays (real single-threaded numpy work) ->
model inference in a GPU actor pool (the model is built once per actor; a sleep stands in for the forward pass)
-> CPU post-processing. GPUs are simulated when the machine has none, and the demo says so. It prints a progress
line per mode, the comparison table and where the HTML report is.

>>> ds = pipeline(items=8, decode_ms=1, infer_ms=1, post_ms=1, payload_kb=4)   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import labcluster as lc

from .diagnostics import nvml

#: float64s one unit of work touches: 2 MiB, in a core's L2 cache, and long enough per numpy call (~0.2 ms) that two
#: threads of one worker hand the GIL over ~100 times in a 20 ms task, not ~800 as over 256 KB (bench/RESULTS.md)
_UNIT = 1 << 18
_scratch = threading.local()  # each thread's 2 MiB, allocated once: no page faults per call, whatever malloc trims


def _work(x: np.ndarray, units: int) -> float:
    """``units`` passes of numpy arithmetic over 2 MiB seeded from ``x``: CPU work, the same amount on a busy machine,
    that runs in parallel with other threads (numpy releases the GIL inside each call). Returns a number from the
    result.

    >>> round(_work(np.ones(4), 2), 6)  # sqrt(sqrt(1 * 1 + 1) ** 2 + 1)
    1.732051
    """
    y = getattr(_scratch, "y", None)
    if y is None:
        y = _scratch.y = np.empty(_UNIT)
    y.fill(float(np.mean(x)))
    for _ in range(units):  # in place: no allocation, so the worker's malloc settings do not change the cost
        np.multiply(y, y, out=y)
        y += 1.0
        np.sqrt(y, out=y)
    return float(y[-1])


def calibrate(ms: float) -> int:
    """How many units of :func:`_work` take ``ms`` milliseconds here (median of five tries, measured once)."""
    if ms <= 0:
        return 0
    x = np.ones(_UNIT)
    probe = 200
    tries = []
    for _ in range(5):
        t = time.perf_counter()
        _work(x, probe)
        tries.append(time.perf_counter() - t)
    per_unit = sorted(tries)[2] / probe
    return max(1, round(ms / 1000 / per_unit))


def decode(batch: dict[str, np.ndarray], units: int, payload: int) -> dict[str, np.ndarray]:
    """Stands in for reading and decoding one image: CPU work, then an array of ``payload`` bytes per row."""
    images = []
    for i in batch["id"]:
        _work(np.full(1, float(i)), units)
        images.append(np.full(payload // 8, float(i)))
    return {"id": batch["id"], "image": np.stack(images)}


class Model:
    """Stands in for a model on a GPU: built once per actor, then a forward pass per batch."""

    def __init__(self, infer_ms: float) -> None:
        self.infer_s = infer_ms / 1000
        self.device = f"GPU {lc.get_gpu_ids()} ({lc.get_runtime_context().gpu_mode})"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.infer_s * len(batch["id"]))
        return {"id": batch["id"], "image": batch["image"], "score": batch["image"].mean(axis=1) % 11}


def post(batch: dict[str, np.ndarray], units: int) -> dict[str, np.ndarray]:
    """Stands in for post-processing: CPU work, then a label per row (the image is dropped)."""
    for v in batch["image"]:
        _work(v, units)
    return {"id": batch["id"], "score": batch["score"], "label": np.where(batch["score"] > 5, "high", "low")}


#: items a block holds in the canonical pipeline: a task per block per stage, so its overhead (a few ms of CPU in
#: the driver, the scheduler and the workers) is paid per block, not per item (bench/RESULTS.md: 64 items as 64
#: blocks ran 2.4x the ideal bound on 2 cores, as 16 blocks of 4 about 1.3x)
ROWS_PER_BLOCK = 4


def pipeline(items: int = 64, *, decode_ms: float = 20, infer_ms: float = 20, post_ms: float = 10,
             payload_kb: int = 256, gpus: int = 1, rows_per_block: int = ROWS_PER_BLOCK) -> lc.data.Dataset:
    """The canonical pipeline over ``items`` rows (one image each), ``rows_per_block`` rows a block.

    >>> pipeline(64).num_blocks(), pipeline(64, rows_per_block=1).num_blocks()
    (16, 64)
    """
    if rows_per_block < 1:
        raise ValueError(f"rows_per_block must be >= 1, got {rows_per_block}")
    for name, ms in (("decode_ms", decode_ms), ("infer_ms", infer_ms), ("post_ms", post_ms)):
        if not 0 <= ms < float("inf"):  # nan too
            raise ValueError(f"{name} must be a number of milliseconds >= 0, got {ms!r}")
    return (lc.data.range(items, override_num_blocks=max(1, math.ceil(items / rows_per_block)))
            .map_batches(decode, fn_kwargs={"units": calibrate(decode_ms), "payload": payload_kb * 1024})
            .map_batches(Model, fn_constructor_args=(infer_ms,), num_gpus=1, concurrency=gpus)
            .map_batches(post, fn_kwargs={"units": calibrate(post_ms)}))


class Progress:
    """One terminal line per execution, labelled by its mode: a bar per stage, its blocks done out of its total.

    >>> Progress().bar(3, 8)
    '###.....  3/8'
    """

    WIDTH = 8

    def bar(self, done: int, total: int | None) -> str:
        if not total:
            return f"{done}/?"
        filled = min(self.WIDTH, round(self.WIDTH * done / total))
        return "#" * filled + "." * (self.WIDTH - filled) + f" {done:>2}/{total}"

    def __init__(self, out: Callable[[str], Any] = print, stream: Any = None) -> None:
        self.out = out
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done: set[str] = set()  # executions whose last line is out

    def __call__(self, ex: Any) -> None:
        parts = []
        for stats, total in zip(ex.stats, ex.totals, strict=True):
            name = stats.name.split("->")[-1].removeprefix("MapBatches(").rstrip(")")
            parts.append(f"{name} {self.bar(stats.blocks, total)}")
        line = f"  {ex.mode:<9} " + " | ".join(parts) + f"  {time.perf_counter() - ex.started:5.1f}s"
        finished = ex.ended != 0.0
        if ex.id in self.done:
            return
        if self.tty:
            self.stream.write("\r" + line + ("\n" if finished else ""))
            self.stream.flush()
        elif finished:
            self.out(line)
        if finished:
            self.done.add(ex.id)


def check_output(path: str) -> str:
    """``path`` if a report can be written there, else ``ValueError`` naming why.

    >>> check_output("/no/such/dir/report.html")
    Traceback (most recent call last):
    ...
    ValueError: cannot write '/no/such/dir/report.html': no directory '/no/such/dir'; create it, or give another path
    """
    where = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path!r}: it is a directory; give a file name, e.g. {path}/report.html")
    if not os.path.isdir(where):
        raise ValueError(f"cannot write {path!r}: no directory {where!r}; create it, or give another path")
    if not os.access(where, os.W_OK):
        raise ValueError(f"cannot write {path!r}: the directory {where!r} is not writable; give another path")
    return path


def run(items: int = 64, *, decode_ms: float = 20, infer_ms: float = 20, post_ms: float = 10, payload_kb: int = 256,
        rows_per_block: int = ROWS_PER_BLOCK, modes: tuple[str, ...] = ("bulk", "pipelined"),
        output: str = "labcluster-demo.html", out: Callable[[str], Any] = print) -> Any:
    """Start a local CPU + GPU cluster, run the pipeline in each mode, print the comparison, write the report."""
    from .data import progress

    check_output(output)  # before the run: a report with nowhere to go is a minute lost
    probe = nvml.probe()
    simulate = None if probe.count else 1
    started = time.perf_counter()
    with lc.init(simulate_gpus=simulate) as session:
        out(f"GPUs: {probe.count} found ({probe.state.value})" + ("; simulating 1 GPU worker" if simulate else ""))
        out(repr(session))
        ds = pipeline(items, decode_ms=decode_ms, infer_ms=infer_ms, post_ms=post_ms, payload_kb=payload_kb,
                      gpus=max(1, probe.count), rows_per_block=rows_per_block)
        out(ds.explain())
        out(f"running {items} items in {ds.num_blocks()} blocks: decode {decode_ms:g} ms (CPU) -> infer {infer_ms:g} "
            f"ms (GPU) -> post {post_ms:g} ms (CPU) an item, {payload_kb} KB between stages")
        with progress.watching(Progress(out)):
            report = lc.compare(ds, modes=modes)
        out(repr(report))
        path = report.to_html(output)
        out(f"wrote {path} (open it in a browser: both timelines and the utilisation, no network needed); "
            f"{time.perf_counter() - started:.1f} s in all, cluster start included")
    return report
