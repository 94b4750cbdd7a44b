"""RDDs: Spark's resilient distributed datasets, as labcluster tasks and objects.

An RDD is a plan, lazy as in Spark: a transformation makes a new RDD and runs nothing; an action runs a job. The
narrow transformations between two stage boundaries fuse into one task per partition (``plan.py``); a wide one
(``shuffle.py``) is a boundary: its map-side tasks split their partitions into one object per reduce partition,
and each reduce-side task takes one object of every map task. Partitions live in Dask's object store; a lost one
is rebuilt from its lineage by Dask, as a lost Spark partition is recomputed.

>>> from labcluster.spark import SparkContext
>>> with SparkContext("local[2]") as sc:                                          # doctest: +SKIP
...     sc.parallelize(["a b", "b"]).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).collect()
[('a', 1), ('b', 2)]
"""

from __future__ import annotations

import difflib
import functools
import heapq
import html
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import labcluster as lc
import labcluster.spark.functions as fn
import labcluster.spark.plan as p

from ..api import scopes
from ..exceptions import LabclusterError
from .checks import checked, partitions
from .pairs import PairFunctions

if TYPE_CHECKING:
    from .context import SparkContext


class StorageLevel:
    """Where a persisted RDD's partitions live. Every level means Dask's object store here (memory, spilled to
    disk by Dask under memory pressure); the names exist so PySpark programs run unchanged."""

    def __init__(self, useDisk: bool, useMemory: bool, useOffHeap: bool = False,
                 deserialized: bool = False, replication: int = 1) -> None:
        self.useDisk, self.useMemory, self.useOffHeap = useDisk, useMemory, useOffHeap
        self.deserialized, self.replication = deserialized, replication

    def __repr__(self) -> str:
        return (f"StorageLevel({self.useDisk}, {self.useMemory}, {self.useOffHeap}, {self.deserialized}, "
                f"{self.replication})")

    def __str__(self) -> str:
        where = " ".join(w for w, on in (("Disk", self.useDisk), ("Memory", self.useMemory)) if on)
        return f"{where} {'Deserialized' if self.deserialized else 'Serialized'} {self.replication}x Replicated"

    MEMORY_ONLY: StorageLevel
    MEMORY_AND_DISK: StorageLevel
    DISK_ONLY: StorageLevel
    MEMORY_ONLY_2: StorageLevel
    MEMORY_AND_DISK_2: StorageLevel


StorageLevel.MEMORY_ONLY = StorageLevel(False, True)
StorageLevel.MEMORY_AND_DISK = StorageLevel(True, True)
StorageLevel.DISK_ONLY = StorageLevel(True, False)
StorageLevel.MEMORY_ONLY_2 = StorageLevel(False, True, replication=2)
StorageLevel.MEMORY_AND_DISK_2 = StorageLevel(True, True, replication=2)


class RDD(PairFunctions):
    """A partitioned collection whose partitions are computed by tasks (see the module docstring)."""

    #: Spark's class name of this kind of RDD, in ``toDebugString``
    kind = "RDD"

    def __init__(self, ctx: SparkContext, num_partitions: int, op: str, parents: Sequence[RDD] = ()) -> None:
        self.ctx = ctx
        self._id = ctx._new_rdd_id()
        self._n = num_partitions
        self.op = op
        self.parents = tuple(parents)
        self.partitioner: Any = None
        self._name: str | None = None
        self._level: StorageLevel | None = None
        self._cached: list[Any] | None = None  # a persisted RDD's partitions, once computed
        self._last_job: list[str] = []  # the last action's result keys, for lineage()

    # -- the plan ----------------------------------------------------------------------------------------------
    def _plan(self, i: int) -> p.Plan:
        """Partition ``i``'s task, fused with the narrow transformations before it."""
        raise NotImplementedError

    def _partition(self, i: int) -> p.Plan:
        """What a child fuses with: this RDD's plan, or its stored partition once it is persisted."""
        if self._level is None:
            return self._plan(i)
        if self._cached is None:
            self._cached = self.ctx._stages.compute([self._plan(j) for j in range(self._n)], self.op)
        return p.Plan((self._cached[i],), p.Input(0), (f"cached {self.op}",))

    def _where(self, i: int) -> str:
        return f"{self.op!r} ({self.kind}[{self._id}]), partition {i}"

    def _narrow(self, op: str, fn: p.PartitionFn, kind: str = "MapPartitionsRDD",
                keep_partitioner: bool = False) -> RDD:
        out = MappedRDD(self, op, fn, kind)
        if keep_partitioner:
            out.partitioner = self.partitioner
        return out

    def _run(self, action: Callable[[Iterator[Any]], Any], op: str,
             partitions: Sequence[int] | None = None) -> list[Any]:
        """Run a job: ``action`` over each partition (all, or those named), results in partition order."""
        wanted = range(self._n) if partitions is None else partitions
        if self.ctx._stopped:
            raise ValueError("this SparkContext was stopped; make a new one (SparkContext.getOrCreate())")
        refs = self.ctx._stages.act([self._partition(i) for i in wanted], action, op)
        self._last_job = [r.key for r in refs]  # keys, not refs: a collect's partitions need not stay alive
        try:
            return lc.get(refs) if refs else []
        except BaseException as e:
            self._drop_failed()  # what failed or was cancelled is made again by the next action
            if isinstance(e, KeyboardInterrupt):
                # lc.get says what it cancelled ("cancelled what cell [3] started: 20 tasks; ..."): keep its words
                said = str(e).partition("was interrupted; ")[2] or scopes.interrupted() or "its tasks were cancelled"
                raise KeyboardInterrupt(f"RDD.{op} was interrupted; {said}") from None
            if isinstance(e, LabclusterError):  # a task's error: the user's type and traceback, not our frames
                raise e.with_traceback(None)  # noqa: B904  (the same error; only the machinery's frames go)
            raise

    def _drop_failed(self) -> None:
        """Forget this RDD's and its ancestors' stored partitions (persisted ones, a shuffle's map outputs) that
        failed or were cancelled, so that the next action computes them again instead of raising their error."""
        seen: set[int] = set()
        todo: list[RDD] = [self]
        while todo:
            rdd = todo.pop()
            if id(rdd) in seen:
                continue
            seen.add(id(rdd))
            rdd._forget_failed()
            todo.extend(rdd.parents)

    def _forget_failed(self) -> None:
        if self._cached is not None and any(_failed(ref) for ref in self._cached):
            self._cached = None

    # -- about the RDD -----------------------------------------------------------------------------------------
    def id(self) -> int:
        """A unique id of this RDD within its SparkContext (as PySpark's ``rdd.id()``)."""
        return self._id

    def getNumPartitions(self) -> int:
        return self._n

    def name(self) -> str | None:
        return self._name

    def setName(self, name: str) -> RDD:
        self._name = name
        return self

    @property
    def context(self) -> SparkContext:
        return self.ctx

    @property
    def is_cached(self) -> bool:
        return self._level is not None

    def getStorageLevel(self) -> StorageLevel:
        return self._level or StorageLevel(False, False)

    def lineage(self) -> lc.LineageGraph:
        """The lineage of the last action run on this RDD, from the task records (labcluster's, not Spark's):
        ``.stages`` shows the job's stages as ``toDebugString`` draws them (Spark's coarse lineage), ``.tasks``
        every partition's task (Ray's fine-grained lineage); in a notebook, both as pictures."""
        if not self._last_job:
            raise ValueError(f"{self!r} has not run a job yet; run an action on it first (collect, count...)")
        from ..api.lineage import lineage_of_keys

        return lineage_of_keys(self._last_job)

    def toDebugString(self) -> bytes:
        """The lineage as Spark prints it (bytes, as PySpark returns): one line per RDD, ``+-(n)`` where a
        shuffle starts the stage before, the partition count of each stage, and the storage level of persisted
        RDDs."""
        return "\n".join(self._debug_lines()).encode()

    def _debug_lines(self) -> list[str]:
        label = f" {self._name}" if self._name else ""
        stored = f"[{self._level}]" if self._level is not None else "[]"
        out = [f"({self._n}) {self.kind}[{self._id}]{label} at {self.op} {stored}"]
        for parent in self.parents:
            sub = parent._debug_lines()
            if self._shuffles():
                out += [" +-" + sub[0], *("   " + line for line in sub[1:])]
            else:
                out += [" |  " + sub[0].split(" ", 1)[1], *sub[1:]]
        return out

    def _shuffles(self) -> bool:
        return False

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self!r} was captured by a function sent to the workers: an RDD lives in the driver, and cannot be "
            f"used inside another RDD's tasks (SPARK-5063); join the two RDDs, or collect() the small one and "
            f"sc.broadcast() it")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        public = [n for n in dir(type(self)) if not n.startswith("_")]
        close = difflib.get_close_matches(name, public, n=1)
        hint = (f"; did you mean {close[0]!r}?" if close else
                "; labcluster.spark has most of PySpark's RDD API, not all of it (README: Spark on labcluster)")
        raise AttributeError(f"'RDD' object has no attribute {name!r}{hint}")

    def __repr__(self) -> str:
        label = f" {self._name!r}" if self._name else ""
        return f"{self.kind}[{self._id}]{label} at {self.op} ({self._n} partitions)"

    def _repr_html_(self) -> str:
        text = html.escape(self.toDebugString().decode())
        return (f"<div><b>{html.escape(repr(self))}</b><pre style='margin:4px 0'>{text}</pre>"
                f"<small>lazy: an action (collect, count, take...) runs it</small></div>")

    # -- persistence -------------------------------------------------------------------------------------------
    def cache(self) -> RDD:
        return self.persist(StorageLevel.MEMORY_ONLY)

    def persist(self, storageLevel: StorageLevel = StorageLevel.MEMORY_ONLY) -> RDD:
        """Keep the partitions in the object store once an action computed them (every level: Dask's store)."""
        self._level = storageLevel
        return self

    def unpersist(self, blocking: bool = False) -> RDD:
        """Drop the stored partitions (Dask frees them once no task needs them)."""
        self._level, self._cached = None, None
        return self

    # -- narrow transformations --------------------------------------------------------------------------------
    def map(self, f: Callable[[Any], Any], preservesPartitioning: bool = False) -> RDD:
        return self._narrow("map", p.Map(checked(f, "map")), "PythonRDD", preservesPartitioning)

    def flatMap(self, f: Callable[[Any], Iterable[Any]], preservesPartitioning: bool = False) -> RDD:
        return self._narrow("flatMap", p.FlatMap(checked(f, "flatMap")), "PythonRDD", preservesPartitioning)

    def filter(self, f: Callable[[Any], Any]) -> RDD:
        return self._narrow("filter", p.Filter(checked(f, "filter")), "PythonRDD", True)

    def mapPartitions(self, f: Callable[[Iterator[Any]], Iterable[Any]],
                      preservesPartitioning: bool = False) -> RDD:
        return self._narrow("mapPartitions", p.Partitions(checked(f, "mapPartitions"), False), "PythonRDD",
                            preservesPartitioning)

    def mapPartitionsWithIndex(self, f: Callable[[int, Iterator[Any]], Iterable[Any]],
                               preservesPartitioning: bool = False) -> RDD:
        return self._narrow("mapPartitionsWithIndex", p.Partitions(checked(f, "mapPartitionsWithIndex"), True),
                            "PythonRDD", preservesPartitioning)

    def glom(self) -> RDD:
        """Each partition as one list."""
        return self._narrow("glom", fn.glom, "PythonRDD")

    def sample(self, withReplacement: bool, fraction: float, seed: int | None = None) -> RDD:
        """A random sample: each element kept with probability ``fraction`` (without replacement), or taken a
        Poisson(``fraction``) number of times (with). The same seed gives the same sample."""
        if fraction < 0 or (not withReplacement and fraction > 1):
            raise ValueError(f"sample: fraction must be in [0, 1] without replacement, >= 0 with; got {fraction}")
        seed = random.randrange(2**31) if seed is None else seed
        return self._narrow("sample", fn.Sampler(withReplacement, fraction, seed), "PythonRDD", True)

    def distinct(self, numPartitions: int | None = None) -> RDD:
        return (self.map(fn.with_none).reduceByKey(fn.first, numPartitions)).map(fn.key)

    def union(self, other: RDD) -> RDD:
        self.ctx._check_same(other, "union")
        return UnionRDD(self.ctx, [self, other])

    def zip(self, other: RDD) -> RDD:
        """Pairs of the i-th elements; both RDDs must have as many partitions, and as many elements in each."""
        self.ctx._check_same(other, "zip")
        if self._n != other._n:
            raise ValueError(f"Can only zip RDDs with same number of partitions ({self._n} and {other._n}); zip "
                             f"pairs elements partition by partition, so key both sides instead (zipWithIndex, "
                             f"then a map to (index, x) and join)")
        return ZippedRDD(self, other)

    def zipWithIndex(self) -> RDD:
        """``(element, its index)``, counted across partitions in order; runs a job to count the partitions first
        (when there is more than one), as Spark does."""
        counts = self._run(fn.length, "zipWithIndex") if self._n > 1 else [0]
        starts = [sum(counts[:i]) for i in range(len(counts))]
        return self._narrow("zipWithIndex", fn.WithIndex(starts), "PythonRDD")

    def cartesian(self, other: RDD) -> RDD:
        self.ctx._check_same(other, "cartesian")
        return CartesianRDD(self, other)

    def coalesce(self, numPartitions: int, shuffle: bool = False) -> RDD:
        """Fewer partitions, by putting neighbouring ones together (no shuffle), or ``numPartitions`` by a
        shuffle (``shuffle=True``, as ``repartition``)."""
        n = partitions(numPartitions, "coalesce")
        if shuffle:
            return self.repartition(n)
        return CoalescedRDD(self, n) if n < self._n else self

    def repartition(self, numPartitions: int) -> RDD:
        """``numPartitions`` partitions of about equal size, by a shuffle."""
        n = partitions(numPartitions, "repartition")
        keyed = self._narrow("repartition", fn.RoundRobin(n), "PythonRDD")
        return self.ctx._shuffled(keyed, n, fn.identity_partition, None, "repartition").values()

    def keyBy(self, f: Callable[[Any], Any]) -> RDD:
        return self._narrow("keyBy", p.Map(fn.KeyBy(checked(f, "keyBy"))), "PythonRDD")

    def sortBy(self, keyfunc: Callable[[Any], Any], ascending: bool = True,
               numPartitions: int | None = None) -> RDD:
        return self.keyBy(keyfunc).sortByKey(ascending, numPartitions).values()

    # -- actions -----------------------------------------------------------------------------------------------
    def collect(self) -> list[Any]:
        return list(itertools.chain.from_iterable(self._run(list, "collect")))

    def count(self) -> int:
        return sum(self._run(fn.length, "count"))

    def isEmpty(self) -> bool:
        return self._n == 0 or not self.take(1)

    def first(self) -> Any:
        got = self.take(1)
        if not got:
            raise ValueError("RDD is empty")
        return got[0]

    def take(self, num: int) -> list[Any]:
        """The first ``num`` elements: the first partition, then four times as many at each round, as Spark
        scans, so a small take of a big RDD computes few partitions."""
        out: list[Any] = []
        done, batch = 0, 1
        while len(out) < num and done < self._n:
            parts = list(range(done, min(self._n, done + batch)))
            for got in self._run(fn.Head(num - len(out)), "take", parts):
                out.extend(got[:num - len(out)])
            done += len(parts)
            batch *= 4
        return out

    def top(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        return heapq.nlargest(num, itertools.chain.from_iterable(self._run(fn.Top(num, key, True), "top")), key=key)

    def takeOrdered(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        return heapq.nsmallest(num, itertools.chain.from_iterable(self._run(fn.Top(num, key, False), "takeOrdered")),
                               key=key)

    def reduce(self, f: Callable[[Any, Any], Any]) -> Any:
        got = [v for v in self._run(fn.Reduce(checked(f, "reduce")), "reduce") if v is not fn.EMPTY]
        if not got:
            raise ValueError("Can not reduce() empty RDD")
        return functools.reduce(f, got)

    def fold(self, zeroValue: Any, op: Callable[[Any, Any], Any]) -> Any:
        return functools.reduce(op, self._run(fn.Fold(zeroValue, checked(op, "fold")), "fold"), zeroValue)

    def aggregate(self, zeroValue: Any, seqOp: Callable[[Any, Any], Any],
                  combOp: Callable[[Any, Any], Any]) -> Any:
        parts = self._run(fn.Fold(zeroValue, checked(seqOp, "aggregate")), "aggregate")
        return functools.reduce(checked(combOp, "aggregate"), parts, zeroValue)

    def sum(self) -> Any:
        return sum(self._run(sum, "sum"))

    def mean(self) -> float:
        parts = self._run(fn.sum_count, "mean")
        total, n = sum(s for s, _ in parts), sum(c for _, c in parts)
        return float("nan") if n == 0 else total / n

    def max(self, key: Callable[[Any], Any] | None = None) -> Any:
        return self._extreme(max, key, "max")

    def min(self, key: Callable[[Any], Any] | None = None) -> Any:
        return self._extreme(min, key, "min")

    def _extreme(self, pick: Callable[..., Any], key: Callable[[Any], Any] | None, op: str) -> Any:
        got = [v for v in self._run(fn.Extreme(pick, key), op) if v is not fn.EMPTY]
        if not got:
            raise ValueError(f"{op}() of an empty RDD")
        return pick(got, key=key) if key is not None else pick(got)

    def countByValue(self) -> dict[Any, int]:
        out: defaultdict[Any, int] = defaultdict(int)
        for counts in self._run(fn.counts, "countByValue"):
            for k, v in counts.items():
                out[k] += v
        return out

    def foreach(self, f: Callable[[Any], Any]) -> None:
        self._run(fn.ForEach(checked(f, "foreach")), "foreach")

    def foreachPartition(self, f: Callable[[Iterator[Any]], Any]) -> None:
        self._run(fn.ForEachPartition(checked(f, "foreachPartition")), "foreachPartition")

    def saveAsTextFile(self, path: str) -> None:
        """One ``part-NNNNN`` file per partition under the directory ``path`` (which must not exist), then
        ``_SUCCESS``, as Spark writes."""
        import fsspec.core

        fs, root = fsspec.core.url_to_fs(path)
        if fs.exists(root):
            raise FileExistsError(f"saveAsTextFile: output directory {path!r} already exists; remove it or "
                                  f"choose another path")
        fs.makedirs(root, exist_ok=True)
        written = self.mapPartitionsWithIndex(fn.Writer(path))._run(list, "saveAsTextFile")
        with fsspec.open(f"{path.rstrip('/')}/_SUCCESS", "wb"):
            pass
        del written

    def toLocalIterator(self) -> Iterator[Any]:
        """Every element, one partition computed at a time."""
        for i in range(self._n):
            yield from self._run(list, "toLocalIterator", [i])[0]


def _failed(ref: Any) -> bool:
    return str(getattr(ref.future, "status", "")) in ("error", "cancelled", "lost")


# -- the kinds of RDD ------------------------------------------------------------------------------------------

class SourceRDD(RDD):
    """Partitions made from the driver's data (``parallelize``) or in the tasks (``range``, ``textFile``)."""

    def __init__(self, ctx: SparkContext, n: int, op: str, kind: str) -> None:
        super().__init__(ctx, n, op)
        self.kind = kind
        self.parts: list[p.Plan] = []  # set by the context, which knows the source

    def _plan(self, i: int) -> p.Plan:
        return self.parts[i]


class MappedRDD(RDD):
    """A narrow transformation: partition i of it is made from partition i of its parent, in the same task."""

    def __init__(self, parent: RDD, op: str, fn: p.PartitionFn, kind: str) -> None:
        super().__init__(parent.ctx, parent._n, op, [parent])
        self.kind, self.fn = kind, fn

    def _plan(self, i: int) -> p.Plan:
        return self.parents[0]._partition(i).then(self.fn, i, self.op, self._where(i))


class UnionRDD(RDD):
    kind = "UnionRDD"

    def __init__(self, ctx: SparkContext, parents: Sequence[RDD]) -> None:
        super().__init__(ctx, sum(r._n for r in parents), "union", parents)
        self._index = [(r, j) for r in parents for j in range(r._n)]

    def _plan(self, i: int) -> p.Plan:
        parent, j = self._index[i]
        return parent._partition(j)


class CoalescedRDD(RDD):
    kind = "CoalescedRDD"

    def __init__(self, parent: RDD, n: int) -> None:
        super().__init__(parent.ctx, n, "coalesce", [parent])
        total = parent._n
        self._groups = [range(i * total // n, (i + 1) * total // n) for i in range(n)]

    def _plan(self, i: int) -> p.Plan:
        inputs, nodes, ops = p.side_by_side([self.parents[0]._partition(j) for j in self._groups[i]])
        return p.Plan(inputs, p.Concat(tuple(nodes)), (*ops, "coalesce"))


class ZippedRDD(RDD):
    kind = "ZippedPartitionsRDD2"

    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a._n, "zip", [a, b])

    def _plan(self, i: int) -> p.Plan:
        inputs, (a, b), ops = p.side_by_side([r._partition(i) for r in self.parents])
        return p.Plan(inputs, p.Zip(a, b, self._where(i)), (*ops, "zip"))


class CartesianRDD(RDD):
    kind = "CartesianRDD"

    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a._n * b._n, "cartesian", [a, b])

    def _plan(self, i: int) -> p.Plan:
        a, b = self.parents
        inputs, (x, y), ops = p.side_by_side([a._partition(i // b._n), b._partition(i % b._n)])
        return p.Plan(inputs, p.Product(x, y), (*ops, "cartesian"))
