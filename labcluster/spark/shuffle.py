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

from collections.abc import Callable
from typing import Any

import labcluster.spark.plan as p

from .keyed import Partitioner
from .rdd import RDD, _failed
from .tasks import Bucketer


class ShuffledRDD(RDD):
    kind = "ShuffledRDD"

    def __init__(self, parent: RDD, n: int, partition_func: Callable[[Any], int], aggregator: p.Aggregator | None,
                 op: str, group: bool = False) -> None:
        super().__init__(parent.ctx, n, op, [parent])
        self.partitioner = Partitioner(n, partition_func)
        self.aggregator, self.group = aggregator, group
        self._buckets: list[list[Any]] | None = None  # [map task][reduce partition] -> its object

    def _shuffles(self) -> bool:
        return True

    def _forget_failed(self) -> None:
        super()._forget_failed()
        if self._buckets is not None and any(_failed(ref) for bucket in self._buckets for ref in bucket):
            self._buckets = None

    def _map_outputs(self) -> list[list[Any]]:
        if self._buckets is None:
            parent = self.parents[0]
            bucketer = Bucketer(self._n, self.partitioner.partitionFunc, self.aggregator, self.op,
                                f"{self.op!r} ({self.kind}[{self._id}]), map side")
            self._buckets = self.ctx._stages.shuffle_map([parent._partition(m) for m in range(parent._n)],
                                                         bucketer, self.op)
        return self._buckets

    def _plan(self, i: int) -> p.Plan:
        buckets = self._map_outputs()
        merge = p.Merge(0, len(buckets), self.aggregator, self.group, self._where(i))
        return p.Plan(tuple(b[i] for b in buckets), merge, (self.op,))
