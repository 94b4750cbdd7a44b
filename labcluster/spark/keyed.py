"""The picklable pieces of the key-value operations: partitioners, combiners, the grouped values' type, the range
partitioning of ``sortByKey``, and the per-element functions of ``pairs.py``. Nothing here knows RDDs: the tasks
run these.

>>> Partitioner(4)("spark") == Partitioner(4)("spark"), RangePartition([10, 20], abs, True)(15)
(True, 1)
"""

from __future__ import annotations

import bisect
import copy
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import labcluster.spark.plan as p

from .tasks import _not_a_pair, _pair, portable_hash


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


def local_group(index: int, it: Iterator[Any]) -> Iterator[tuple[Any, list[Any]]]:
    """``groupByKey`` on an RDD already partitioned by the same partitioner: each partition's keys grouped where
    they are, no shuffle."""
    return iter(p.group_values(it).items())


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


class Part:
    def __init__(self, i: int, op: str) -> None:
        self.i, self.op = i, op

    def __call__(self, kv: Any) -> Any:
        return _pair(kv, self.op)[self.i]


class Values:
    def __init__(self, f: Callable[[Any], Any], op: str, flat: bool) -> None:
        self.f, self.op, self.flat = f, op, flat

    def __call__(self, kv: Any) -> Any:
        k, v = _pair(kv, self.op)
        return ((k, w) for w in self.f(v)) if self.flat else (k, self.f(v))


class KeyIs:
    def __init__(self, key: Any) -> None:
        self.key = key

    def __call__(self, kv: Any) -> bool:
        return bool(_pair(kv, "lookup")[0] == self.key)


class Grouped:
    def __call__(self, kv: tuple[Any, list[Any]]) -> tuple[Any, Any]:

        return kv[0], ResultIterable(kv[1])


class Tag:
    def __init__(self, side: int, op: str) -> None:
        self.side, self.op = side, op

    def __call__(self, kv: Any) -> tuple[Any, tuple[int, Any]]:
        try:
            k, v = kv
        except (TypeError, ValueError):
            raise _not_a_pair(kv, self.op) from None
        return k, (self.side, v)


class Split:
    def __call__(self, kv: tuple[Any, list[tuple[int, Any]]]) -> tuple[Any, tuple[Any, Any]]:

        sides: defaultdict[int, list[Any]] = defaultdict(list)
        for side, v in kv[1]:
            sides[side].append(v)
        return kv[0], (ResultIterable(sides[0]), ResultIterable(sides[1]))


class Join:
    """The pairs of a key's tagged values, one of each side (``None`` for a missing side of an outer join)."""

    def __init__(self, all_left: bool, all_right: bool) -> None:
        self.all_left, self.all_right = all_left, all_right

    def __call__(self, kv: tuple[Any, list[tuple[int, Any]]]) -> list[tuple[Any, tuple[Any, Any]]]:
        k, tagged = kv
        lefts = [v for side, v in tagged if side == 0] or ([None] if self.all_right else [])
        rights = [v for side, v in tagged if side == 1] or ([None] if self.all_left else [])
        return [(k, (a, b)) for a in lefts for b in rights]
