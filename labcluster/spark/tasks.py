"""The task functions an RDD job submits, and the map side of a shuffle (on the workers).

- :func:`compute`: a partition, kept as an object (a persisted RDD, the input of a later stage).
- :func:`act`: an action's work on one partition (count it, reduce it, take its first rows...): only that small
  result travels back to the driver, as Spark's ``runJob`` runs a function per partition.
- :func:`shuffle_map`: a map-side task of a shuffle. It splits its partition into one bucket per reduce partition
  (``num_returns``: each bucket is an object of its own, kept on the worker that made it), combining values of a
  key first where the shuffle aggregates (``reduceByKey``). A reduce-side task takes one bucket of every map task.

Each of them sends what the task added to accumulators before it returns (``shared.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import labcluster.spark.shared as shared

from .plan import Aggregator, Node, note


def compute(node: Node, *inputs: Any) -> list[Any]:
    with shared.task_scope():
        return list(node.run(inputs))


def act(node: Node, action: Callable[[Iterator[Any]], Any], *inputs: Any) -> Any:
    with shared.task_scope():
        return action(node.run(inputs))


def shuffle_map(node: Node, bucketer: Bucketer, index: int, *inputs: Any) -> Any:
    with shared.task_scope():
        return bucketer.split(node.run(inputs), index)


def identity(x: Any) -> Any:
    return x


def portable_hash(x: Any) -> int:
    """A hash that every worker process agrees on (Python salts ``hash`` of ``str`` and ``bytes`` per process, so
    PySpark asks for ``PYTHONHASHSEED``; here strings hash by CRC-32 instead). Tuples hash by their items.

    >>> portable_hash("spark") == portable_hash("spark"), portable_hash(None), portable_hash(7)
    (True, 0, 7)
    """
    if x is None:
        return 0
    if isinstance(x, str):
        return zlib.crc32(x.encode("utf-8", "surrogatepass"))
    if isinstance(x, (bytes, bytearray, memoryview)):
        return zlib.crc32(x)
    if isinstance(x, tuple):
        h = 0x345678
        for item in x:
            h ^= portable_hash(item)
            h *= 1000003
            h &= 0xFFFFFFFFFFFFFFFF
        return h ^ len(x)
    return hash(x)


def _not_a_pair(x: Any, op: str) -> TypeError:
    return TypeError(f"{op} needs an RDD of (key, value) pairs, got an element {x!r} ({type(x).__name__}); make "
                     f"pairs first, e.g. rdd.map(lambda x: (x, 1))")


def _pair(x: Any, op: str) -> tuple[Any, Any]:
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    raise _not_a_pair(x, op)


@dataclass(frozen=True)
class Bucketer:
    """Splits a map task's elements into ``n`` buckets by key (``partition_func(key) % n``)."""

    n: int
    partition_func: Callable[[Any], int]
    #: with one, the values of a key are combined in the task first (reduceByKey); without, every value travels
    aggregator: Aggregator | None
    op: str
    where: str

    def bucket(self, key: Any) -> int:
        return int(self.partition_func(key)) % self.n

    def split(self, elements: Iterator[Any], index: int) -> Any:
        try:
            buckets = self._plain(elements) if self.aggregator is None else self._combined(elements, self.aggregator)
        except Exception as e:
            note(e, f"{self.where}, partition {index}")
            raise
        return tuple(buckets) if self.n > 1 else buckets[0]  # one bucket: the task's one object

    def _plain(self, elements: Iterator[Any]) -> list[list[Any]]:
        buckets: list[list[Any]] = [[] for _ in range(self.n)]
        bucket, op = self.bucket, self.op
        for x in elements:
            try:
                k, v = x
            except (TypeError, ValueError):
                raise _not_a_pair(x, op) from None
            buckets[bucket(k)].append((k, v))
        return buckets

    def _combined(self, elements: Iterator[Any], agg: Aggregator) -> list[list[Any]]:
        """Spark's map-side combine: every value of a key merged into one combiner first, then each key (not
        each element) hashed to its bucket."""
        create, merge, op = agg.create, agg.merge_value, self.op
        merged: dict[Any, Any] = {}
        for x in elements:
            try:
                k, v = x
            except (TypeError, ValueError):
                raise _not_a_pair(x, op) from None
            merged[k] = merge(merged[k], v) if k in merged else create(v)
        buckets: list[list[Any]] = [[] for _ in range(self.n)]
        bucket = self.bucket
        for kc in merged.items():
            buckets[bucket(kc[0])].append(kc)
        return buckets
