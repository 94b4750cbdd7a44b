"""The picklable pieces of the key-value operations: partitioners, combiners, the grouped values' type, and the
range partitioning of ``sortByKey``. Nothing here knows RDDs: the tasks run these.

>>> Partitioner(4)("spark") == Partitioner(4)("spark"), RangePartition([10, 20], identity, True)(15)
(True, 1)
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Iterator
from typing import Any

import labcluster.spark.plan as p

from .tasks import identity, portable_hash

__all__ = ["identity"]


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
