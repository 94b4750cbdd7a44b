"""The key-value operations of an RDD of ``(key, value)`` pairs (Spark's ``PairRDDFunctions``), mixed into
:class:`~labcluster.spark.rdd.RDD`.

The aggregating ones (``reduceByKey``, ``aggregateByKey``, ``foldByKey``, ``groupByKey``) are ``combineByKey``
with Spark's map-side combine; the joins are ``cogroup`` of the two sides, tagged, as PySpark builds them.
An RDD partitioned already by the partitioner asked for is combined where it is, without a shuffle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import labcluster.spark.functions as functions
import labcluster.spark.keyed as keyed
import labcluster.spark.plan as p

from .checks import checked, partitions
from .tasks import _pair, identity, portable_hash

if TYPE_CHECKING:
    from .context import SparkContext
    from .rdd import RDD


class PairFunctions:
    """Mixed into RDD; what it uses of RDD is declared here for the type checker."""

    if TYPE_CHECKING:
        ctx: SparkContext
        _n: int
        partitioner: Any

        def _narrow(self, op: str, fn: p.PartitionFn, kind: str = ..., keep_partitioner: bool = ...) -> RDD: ...
        def union(self, other: RDD) -> RDD: ...
        def filter(self, f: Callable[[Any], Any]) -> RDD: ...
        def count(self) -> int: ...
        def collect(self) -> list[Any]: ...
        def sample(self, withReplacement: bool, fraction: float, seed: int | None = None) -> RDD: ...

    def _rdd(self) -> RDD:
        return cast("RDD", self)

    def _default(self, n: int | None) -> int:
        """A shuffle's partitions: as asked, else as many as this RDD has (one for an empty RDD)."""
        return n if n is not None else max(self._n, 1)

    def mapValues(self, f: Callable[[Any], Any]) -> RDD:

        return self._narrow("mapValues", p.Map(keyed.Values(checked(f, "mapValues"), "mapValues", flat=False)),
                            "PythonRDD", keep_partitioner=True)

    def flatMapValues(self, f: Callable[[Any], Iterable[Any]]) -> RDD:

        return self._narrow("flatMapValues",
                            p.FlatMap(keyed.Values(checked(f, "flatMapValues"), "flatMapValues", flat=True)),
                            "PythonRDD", keep_partitioner=True)

    def keys(self) -> RDD:
        return self._narrow("keys", p.Map(keyed.Part(0, "keys")), "PythonRDD")

    def values(self) -> RDD:
        return self._narrow("values", p.Map(keyed.Part(1, "values")), "PythonRDD")

    def partitionBy(self, numPartitions: int | None,
                    partitionFunc: Callable[[Any], int] = portable_hash) -> RDD:

        n = partitions(self._default(numPartitions), "partitionBy")
        if self.partitioner == keyed.Partitioner(n, partitionFunc):
            return self._rdd()
        return self.ctx._shuffled(self._rdd(), n, partitionFunc, None, "partitionBy")

    def combineByKey(self, createCombiner: Callable[[Any], Any],
                     mergeValue: Callable[[Any, Any], Any],
                     mergeCombiners: Callable[[Any, Any], Any],
                     numPartitions: int | None = None,
                     partitionFunc: Callable[[Any], int] = portable_hash, *,
                     _op: str = "combineByKey") -> RDD:

        agg = p.Aggregator(checked(createCombiner, _op), checked(mergeValue, _op), checked(mergeCombiners, _op))
        n = partitions(self._default(numPartitions), _op)
        if self.partitioner == keyed.Partitioner(n, partitionFunc):
            return self._narrow(_op, keyed.LocalCombine(agg), "PythonRDD", keep_partitioner=True)
        return self.ctx._shuffled(self._rdd(), n, partitionFunc, agg, _op)

    def reduceByKey(self, func: Callable[[Any, Any], Any], numPartitions: int | None = None,
                    partitionFunc: Callable[[Any], int] = portable_hash) -> RDD:
        return self.combineByKey(identity, func, func, numPartitions, partitionFunc, _op="reduceByKey")

    def foldByKey(self, zeroValue: Any, func: Callable[[Any, Any], Any],
                  numPartitions: int | None = None,
                  partitionFunc: Callable[[Any], int] = portable_hash) -> RDD:

        return self.combineByKey(keyed.ZeroThen(zeroValue, func), func, func, numPartitions, partitionFunc,
                                 _op="foldByKey")

    def aggregateByKey(self, zeroValue: Any, seqFunc: Callable[[Any, Any], Any],
                       combFunc: Callable[[Any, Any], Any], numPartitions: int | None = None,
                       partitionFunc: Callable[[Any], int] = portable_hash) -> RDD:

        return self.combineByKey(keyed.ZeroThen(zeroValue, seqFunc), seqFunc, combFunc, numPartitions, partitionFunc,
                                 _op="aggregateByKey")

    def groupByKey(self, numPartitions: int | None = None,
                   partitionFunc: Callable[[Any], int] = portable_hash) -> RDD:
        """Every value of a key, as a :class:`ResultIterable` (``mapValues(list)`` for lists)."""
        grouped = self._grouped(numPartitions, partitionFunc, "groupByKey")
        return grouped._narrow("groupByKey", p.Map(keyed.Grouped()), "PythonRDD", keep_partitioner=True)

    def groupBy(self, f: Callable[[Any], Any], numPartitions: int | None = None,
                partitionFunc: Callable[[Any], int] = portable_hash) -> RDD:
        """The elements grouped by ``f(x)``: ``(key, ResultIterable of elements)``."""
        keyed_by = self._narrow("groupBy", p.Map(functions.KeyBy(checked(f, "groupBy"))), "PythonRDD")
        return keyed_by.groupByKey(numPartitions, partitionFunc)

    def _grouped(self, n: int | None, partition_func: Callable[[Any], int], op: str) -> RDD:
        """``(key, [values])``. No map-side combine, as Spark's groupByKey: a list per key in every map task would
        only add objects to the shuffle (a join's keys are mostly distinct)."""
        count = partitions(self._default(n), op)
        if self.partitioner == keyed.Partitioner(count, partition_func):
            return self._narrow(op, keyed.local_group, "PythonRDD", keep_partitioner=True)
        return self.ctx._shuffled(self._rdd(), count, partition_func, None, op, group=True)

    def sortByKey(self, ascending: bool = True, numPartitions: int | None = None,
                  keyfunc: Callable[[Any], Any] = identity) -> RDD:
        """Sorted by key: range partitions from a sample of the keys (a job of its own, as in Spark), each
        partition sorted."""

        n = partitions(self._default(numPartitions), "sortByKey")
        bounds: list[Any] = []
        if n > 1:
            size = self.count()
            fraction = min(n * 20.0 / max(size, 1), 1.0)
            keys = self.sample(False, fraction, 1).map(keyed.Part(0, "sortByKey")).collect()
            samples = sorted(map(checked(keyfunc, "sortByKey"), keys))
            bounds = [samples[int(len(samples) * (i + 1) / n)] for i in range(n - 1)] if samples else []
        shuffled = self.ctx._shuffled(self._rdd(), n, keyed.RangePartition(bounds, keyfunc, ascending), None,
                                      "sortByKey")
        return shuffled._narrow("sortByKey", keyed.SortPartition(keyfunc, ascending), "PythonRDD")

    def cogroup(self, other: RDD, numPartitions: int | None = None) -> RDD:
        """Per key, the values of each side: ``(key, (ResultIterable, ResultIterable))``."""
        grouped = self._tagged_groups(other, numPartitions, "cogroup")
        return grouped._narrow("cogroup", p.Map(keyed.Split()), "PythonRDD", keep_partitioner=True)

    def _tagged_groups(self, other: RDD, n: int | None, op: str) -> RDD:
        """``(key, [(side, value), ...])``: both sides' values tagged 0 or 1, shuffled into one partitioning."""
        self.ctx._check_same(other, op)
        tagged = self._narrow(op, p.Map(keyed.Tag(0, op)), "PythonRDD").union(
            other._narrow(op, p.Map(keyed.Tag(1, op)), "PythonRDD"))
        # by default as many partitions as both sides have together, as PySpark's join and cogroup
        return tagged._grouped(n if n is not None else max(self._n + other._n, 1), portable_hash, op)

    def groupWith(self, other: RDD) -> RDD:
        return self.cogroup(other)

    def join(self, other: RDD, numPartitions: int | None = None) -> RDD:
        return self._joined(other, numPartitions, "join", False, False)

    def leftOuterJoin(self, other: RDD, numPartitions: int | None = None) -> RDD:
        return self._joined(other, numPartitions, "leftOuterJoin", True, False)

    def rightOuterJoin(self, other: RDD, numPartitions: int | None = None) -> RDD:
        return self._joined(other, numPartitions, "rightOuterJoin", False, True)

    def fullOuterJoin(self, other: RDD, numPartitions: int | None = None) -> RDD:
        return self._joined(other, numPartitions, "fullOuterJoin", True, True)

    def _joined(self, other: RDD, n: int | None, op: str, all_left: bool, all_right: bool) -> RDD:
        """``all_left``: every key of this side is kept (None where the other has none); ``all_right`` alike."""
        grouped = self._tagged_groups(other, n, op)
        return grouped._narrow(op, p.FlatMap(keyed.Join(all_left, all_right)), "PythonRDD", keep_partitioner=True)

    # -- actions -----------------------------------------------------------------------------------------------
    def countByKey(self) -> dict[Any, int]:
        return self.keys().countByValue()

    def collectAsMap(self) -> dict[Any, Any]:
        return dict(_pair(x, "collectAsMap") for x in self.collect())

    def lookup(self, key: Any) -> list[Any]:
        return self.filter(keyed.KeyIs(key)).values().collect()
