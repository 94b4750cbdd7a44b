"""Wide transformations: the shuffle, as tasks and objects.

A :class:`ShuffledRDD` is a stage boundary. Its map side is one task per partition of its parent (fused with the
narrow transformations before it) that splits the partition into one object per reduce partition, by
``partitionFunc(key) % numPartitions``, combining the values of a key first where the shuffle aggregates
(``reduceByKey``: Spark's map-side combine). Its reduce side is one task per partition that takes one object from
every map task and merges them. The map outputs are kept while the RDD lives, as Spark keeps shuffle files, so a
second action on it runs the reduce side only; a lost one is rebuilt by Dask from its map task.

``sortByKey`` samples the keys first (a job, as in Spark) to pick range bounds, so the partitions come out in
order.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Iterator
from typing import Any

from . import plan as p
from .rdd import RDD
from .tasks import Bucketer, portable_hash


class Partitioner:
    """Which partition a key goes to: ``partitionFunc(key) % numPartitions`` (PySpark's class)."""

    def __init__(self, numPartitions: int, partitionFunc: Callable[[Any], int] = portable_hash) -> None:
        self.numPartitions, self.partitionFunc = numPartitions, partitionFunc

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Partitioner) and other.numPartitions == self.numPartitions
                and other.partitionFunc == self.partitionFunc)

    def __hash__(self) -> int:
        return hash((self.numPartitions, self.partitionFunc))

    def __call__(self, k: Any) -> int:
        return self.partitionFunc(k) % self.numPartitions

    def __repr__(self) -> str:
        name = getattr(self.partitionFunc, "__name__", type(self.partitionFunc).__name__)
        return f"Partitioner({self.numPartitions}, {name})"


class ShuffledRDD(RDD):
    kind = "ShuffledRDD"

    def __init__(self, parent: RDD, n: int, partition_func: Callable[[Any], int], aggregator: p.Aggregator | None,
                 op: str, combine: bool = True) -> None:
        super().__init__(parent.ctx, n, op, [parent])
        self.partitioner = Partitioner(n, partition_func)
        self.aggregator, self.combine = aggregator, combine and aggregator is not None
        self._buckets: list[list[Any]] | None = None  # [map task][reduce partition] -> its object

    def _shuffles(self) -> bool:
        return True

    def _map_outputs(self) -> list[list[Any]]:
        if self._buckets is None:
            parent = self.parents[0]
            bucketer = Bucketer(self._n, self.partitioner.partitionFunc, self.aggregator, self.combine, self.op,
                                f"{self.op!r} ({self.kind}[{self.id}]), map side")
            self._buckets = self.ctx._stages.shuffle_map([parent._partition(m) for m in range(parent._n)],
                                                         bucketer, self.op)
        return self._buckets

    def _plan(self, i: int) -> p.Plan:
        buckets = self._map_outputs()
        return p.Plan(tuple(b[i] for b in buckets), p.Merge(0, len(buckets), self.aggregator, self.combine,
                                                            self._where(i)), (self.op,))


class ResultIterable:
    """The values of one key after ``groupByKey`` or ``cogroup`` (PySpark's class): iterable, with a length."""

    def __init__(self, data: list[Any]) -> None:
        self.data = data
        self.maxindex = len(data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultIterable) and other.data == self.data

    def __repr__(self) -> str:
        return f"ResultIterable({self.data!r})"


# -- picklable pieces -----------------------------------------------------------------------------------------------

class ZeroThen:
    """``foldByKey`` / ``aggregateByKey``'s first combiner of a key: ``f(copy of zero, value)``."""

    def __init__(self, zero: Any, f: Callable[[Any, Any], Any]) -> None:
        self.zero, self.f = zero, f

    def __call__(self, v: Any) -> Any:
        return self.f(copy.deepcopy(self.zero), v)


def to_list(v: Any) -> list[Any]:
    return [v]


def append(values: list[Any], v: Any) -> list[Any]:
    values.append(v)
    return values


def extend(a: list[Any], b: list[Any]) -> list[Any]:
    a.extend(b)
    return a


GROUP = p.Aggregator(to_list, append, extend)


class LocalCombine:
    """``combineByKey`` on an RDD already partitioned by the same partitioner: no shuffle, each partition's keys
    combined where they are (as Spark does)."""

    def __init__(self, aggregator: p.Aggregator) -> None:
        self.aggregator = aggregator

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        agg, out = self.aggregator, dict[Any, Any]()
        for k, v in it:
            out[k] = agg.merge_value(out[k], v) if k in out else agg.create(v)
        return iter(out.items())


class RangePartition:
    """``sortByKey``'s partitions: key ranges between sampled bounds (reversed when descending)."""

    def __init__(self, bounds: list[Any], keyfunc: Callable[[Any], Any], ascending: bool) -> None:
        self.bounds, self.keyfunc, self.ascending = bounds, keyfunc, ascending

    def __call__(self, k: Any) -> int:
        i = bisect.bisect_left(self.bounds, self.keyfunc(k))
        return i if self.ascending else len(self.bounds) - i


class SortPartition:
    def __init__(self, keyfunc: Callable[[Any], Any], ascending: bool) -> None:
        self.keyfunc, self.ascending = keyfunc, ascending

    def __call__(self, index: int, it: Iterator[Any]) -> list[Any]:
        return sorted(it, key=lambda kv: self.keyfunc(kv[0]), reverse=not self.ascending)
