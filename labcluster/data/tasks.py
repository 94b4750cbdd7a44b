"""What runs on the workers for a Dataset: the stage task, the stage actor, and the all-to-all tasks.

Each block a stage makes is reported to the driver as an event (``Worker.log_event`` on the driver session's topic,
``labcluster/data/reports.py``): its rows, bytes, wall and CPU time. That is how the driver counts rows (``limit``,
``count``), bounds the bytes in flight, and fills ``stats()`` without fetching a block.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import labcluster.data.blocks as blocks

from .operators import Step, run_steps
from .sources import ReadTask

# blocks that arrive unpickled have buffers Arrow's query engine (group_by) calls "poorly aligned" and warns about,
# once per block, on stderr: let it copy them instead (read when that engine first runs in this process)
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")


def report(topic: str, block_id: str, block: pa.Table, wall0: float, cpu0: float, wall: float = 0.0,
           cpu: float = 0.0, rows: int | None = None) -> None:
    """Say what a block task made (``wall``, ``cpu``: seconds spent for it elsewhere, e.g. its all-to-all task;
    ``rows``: the rows it stands for, where not the block's own: a write's rows written)."""
    from distributed import get_worker

    get_worker().log_event(topic, {"id": block_id, "rows": block.num_rows if rows is None else rows,
                                   "bytes": blocks.size(block),
                                   "wall": time.perf_counter() - wall0 + wall,
                                   "cpu": time.thread_time() - cpu0 + cpu})


def _run(steps: Sequence[Step], read: ReadTask | None, block: pa.Table | None, index: int, block_id: str,
         topic: str) -> pa.Table:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    if read is not None:
        block = read.read()
    assert block is not None
    out = run_steps(steps, block, index)
    written = int(pc.sum(out.column("rows")).as_py() or 0) if steps and steps[-1].kind == "write" and \
        "rows" in out.column_names else None  # a write's block names its files: its rows are those written
    report(topic, block_id, out, wall0, cpu0, rows=written)
    return out


def step_sources(steps: Sequence[Step]) -> tuple[Any, ...]:
    """The source of the user's functions and classes in ``steps``, for remote tracebacks with source lines."""
    from ..api.runner import source_of

    out: list[Any] = []
    for step in steps:
        if step.fn is not None and not getattr(step.fn, "__module__", "").startswith("labcluster."):
            out.extend(source_of(step.fn) or ())
    return tuple(out)


class StageTask:
    """A stage's task function: one block in, one block out (the steps pickled once, with the function)."""

    def __init__(self, steps: Sequence[Step], topic: str, name: str) -> None:
        self.steps, self.topic, self.__name__ = tuple(steps), topic, name
        self._labcluster_sources = step_sources(steps)

    def __call__(self, read: ReadTask | None, block: pa.Table | None, index: int, block_id: str) -> pa.Table:
        return _run(self.steps, read, block, index, block_id, self.topic)


class StageActor:
    """An actor of a class stage: builds the user's class once, then runs the steps per block."""

    #: its blocks stay on its worker, for the next stage to fetch from there (not through the driver)
    _labcluster_inline_result_bytes = 0

    def __init__(self, steps: Sequence[Step], topic: str) -> None:
        self.steps = [s.construct() for s in steps]
        self.topic = topic

    def process(self, read: ReadTask | None, block: pa.Table | None, index: int, block_id: str) -> pa.Table:
        return _run(self.steps, read, block, index, block_id, self.topic)


def all_to_all(fn: Any, args: tuple[Any, ...], num_outputs: int, *parts: pa.Table
               ) -> tuple[list[pa.Table], float, float]:
    """Every block of the stage's input at once -> the output blocks (one object, split by :func:`pick`), with
    the wall and CPU seconds it took (the first output's report carries them: the stage's work)."""
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    out = list(fn(list(parts), num_outputs, *args))
    return out, time.perf_counter() - wall0, time.thread_time() - cpu0


def pick(whole: tuple[list[pa.Table], float, float], i: int, block_id: str, topic: str) -> pa.Table:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    outputs, wall, cpu = whole
    block = outputs[i]
    report(topic, block_id, block, wall0, cpu0, *((wall, cpu) if i == 0 else ()))
    return block


def slice_block(block: pa.Table, n: int, block_id: str, topic: str) -> pa.Table:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    out = block.slice(0, n)
    report(topic, block_id, out, wall0, cpu0)
    return out


# -- all-to-all operators ----------------------------------------------------------------------------------------

def _split_evenly(table: pa.Table, n: int) -> list[pa.Table]:
    base, extra = divmod(table.num_rows, n)
    out, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        out.append(table.slice(start, size))
        start += size
    return out


def repartition(parts: list[pa.Table], n: int) -> list[pa.Table]:
    return _split_evenly(blocks.concat(parts), n)


def random_shuffle(parts: list[pa.Table], n: int, seed: int | None) -> list[pa.Table]:
    table = blocks.concat(parts)
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    return _split_evenly(table.take(pa.array(order, pa.int64())) if order else table, n)


def sort(parts: list[pa.Table], n: int, keys: list[str], descending: list[bool]) -> list[pa.Table]:
    table = blocks.concat(parts)
    if not table.num_rows:  # nothing to sort (whose columns may be unknown: every block came out empty)
        return _split_evenly(table, n)
    blocks.require_columns(table, keys, "sort", "the dataset")
    keyed = blocks.decoded(table, keys)  # categorical columns sort by their values
    order = pc.sort_indices(keyed, sort_keys=[(k, "descending" if d else "ascending") for k, d in
                                              zip(keys, descending, strict=True)])  # nulls last
    return _split_evenly(table.take(order), n)


def aggregate(parts: list[pa.Table], n: int, keys: list[str], aggs: list[tuple[Any, ...]]) -> list[pa.Table]:
    """``aggs``: (column, pyarrow function, output name[, ddof of a variance or stddev]); keys [] aggregates the
    whole dataset."""
    table = blocks.concat(parts)
    if not table.num_rows and not keys:  # no rows (maybe no columns either): Ray's empty aggregates
        return [pa.table({a[2]: pa.array([0 if a[1] == "count_all" else None]) for a in aggs})]
    if not table.num_rows:  # no groups
        return [pa.table({})]
    blocks.require_columns(table, [*keys, *(a[0] for a in aggs if a[0])], "groupby" if keys else "aggregate",
                           "the dataset")
    table = blocks.decoded(table, keys)  # categorical keys group by their values
    specs = [(a[0] or [], a[1], pc.VarianceOptions(ddof=a[3])) if len(a) > 3 else (a[0] or [], a[1]) for a in aggs]
    grouped = table.group_by(keys).aggregate(specs)  # column None: count_all
    named = {(f"{a[0]}_{a[1]}" if a[0] else a[1]): a[2] for a in aggs}  # pyarrow's names -> ours
    out = grouped.rename_columns([named.get(n, n) for n in grouped.column_names])
    out = out.select([*keys, *(a[2] for a in aggs)])
    if keys:
        out = out.sort_by([(k, "ascending") for k in keys])
    return _split_evenly(out, max(1, min(n, out.num_rows)))


def write_block(block: pa.Table, index: int, path: str, fmt: str) -> pa.Table:
    """Write one block as ``<path>/<index>-<random>.<fmt>`` (on the worker); a row naming the file comes back."""
    import uuid

    import fsspec

    arrays = blocks.tensor_columns(block) if fmt == "csv" else []
    if arrays:  # before the file is opened: no empty file is left behind
        raise TypeError(f"write_csv: a CSV file cannot hold the array column(s) {', '.join(map(repr, arrays))} "
                        f"(an n-d array a row); use write_parquet, or drop_columns them first")
    name = f"{path.rstrip('/')}/{index:06d}-{uuid.uuid4().hex[:8]}.{fmt}"
    with fsspec.open(name, "wb") as f:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(block, f)
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(block, f)
    return pa.table({"path": [name], "rows": [block.num_rows]})
