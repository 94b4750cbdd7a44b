"""``SparkContext`` on labcluster: PySpark's entry point, bound to the labcluster session.

``SparkContext()`` uses the session ``lc.init()`` made (any cluster: local, remote, in-process); without one it
starts a local cluster sized by ``master`` (``"local[2]"``: 2 CPU slots; ``"local[*]"``: every core), and
``stop()`` stops only a cluster it started. There is no JVM and no Spark master: ``spark://``, ``yarn`` and
``k8s://`` masters are refused with the way to connect instead.

>>> SparkConf().setMaster("local[2]").setAppName("wordcount").getAll()
[('spark.master', 'local[2]'), ('spark.app.name', 'wordcount')]
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import labcluster as lc
import labcluster.spark.functions as fn
import labcluster.spark.plan as p

from ..api.start import current_session
from ..cluster.groups import WorkerGroup, cpu_count
from .checks import partitions
from .jobs import Stages
from .rdd import RDD, SourceRDD, UnionRDD
from .shared import Accumulator, AccumulatorParam, Broadcast
from .shuffle import ShuffledRDD

_MAX_SPLIT = 32 * 2**20
#: the PySpark API level labcluster.spark follows (``sc.version``)
PYSPARK_API = "3.5.0"
_LOCAL = re.compile(r"^local(?:\[(\*|\d+)(?:,\s*\d+)?\])?$")


class SparkConf:
    """Settings by key, as PySpark's ``SparkConf`` (labcluster reads ``spark.master`` and ``spark.app.name``;
    the rest are kept and shown)."""

    def __init__(self, loadDefaults: bool = True) -> None:
        self._conf: dict[str, str] = {}

    def set(self, key: str, value: Any) -> SparkConf:
        self._conf[key] = str(value)
        return self

    def setIfMissing(self, key: str, value: Any) -> SparkConf:
        self._conf.setdefault(key, str(value))
        return self

    def setAll(self, pairs: Iterable[tuple[str, Any]]) -> SparkConf:
        for k, v in pairs:
            self.set(k, v)
        return self

    def setMaster(self, value: str) -> SparkConf:
        return self.set("spark.master", value)

    def setAppName(self, value: str) -> SparkConf:
        return self.set("spark.app.name", value)

    def get(self, key: str, defaultValue: str | None = None) -> str | None:
        return self._conf.get(key, defaultValue)

    def contains(self, key: str) -> bool:
        return key in self._conf

    def getAll(self) -> list[tuple[str, str]]:
        return list(self._conf.items())

    def toDebugString(self) -> str:
        return "\n".join(f"{k}={v}" for k, v in self._conf.items())

    def __repr__(self) -> str:
        return f"SparkConf({self._conf!r})"


def _cpus(master: str | None) -> int | None:
    """The CPU slots a local master asks for (None: the machine's), or ValueError for a cluster master."""
    if master is None:
        return None
    m = _LOCAL.match(master.strip())
    if m is None:
        raise ValueError(f"master {master!r}: labcluster.spark runs on labcluster's cluster, not on a Spark "
                         f"master; connect labcluster to it first (lc.init('tcp://host:8786')) and pass "
                         f"master=None or 'local[N]'")
    if m.group(1) in (None, "*"):
        return 1 if m.group(1) is None else None
    return int(m.group(1))


class SparkContext:
    """PySpark's ``SparkContext`` on the labcluster session (see the module docstring)."""

    _active: ClassVar[SparkContext | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, master: str | None = None, appName: str | None = None,
                 sparkHome: str | None = None, pyFiles: Any = None, environment: Any = None,
                 batchSize: int = 0, serializer: Any = None, conf: SparkConf | None = None,
                 gateway: Any = None, jsc: Any = None, profiler_cls: Any = None) -> None:
        conf = conf or SparkConf()
        master = master or conf.get("spark.master")
        cpus = _cpus(master)
        with SparkContext._lock:
            active = SparkContext._active
            if active is not None:
                raise ValueError(f"Cannot run multiple SparkContexts at once; existing {active!r}; call its "
                                 f"stop() first, or use SparkContext.getOrCreate()")
            self._owns = not lc.is_initialized()
            if self._owns:
                # a worker process per slot, as PySpark runs a Python worker per core: RDD functions are plain
                # Python, which two threads of one process would run one at a time (the GIL)
                slots = cpus if cpus is not None else cpu_count()
                lc.init(workers=[WorkerGroup("cpu", n=slots, nthreads=1)])
            SparkContext._active = self
        self.session = current_session()
        self.master = master or "labcluster"
        self.appName = appName or conf.get("spark.app.name") or "labcluster"
        self._conf = conf.setIfMissing("spark.master", self.master).setIfMissing("spark.app.name", self.appName)
        self._rdd_ids = itertools.count()
        self._stages = Stages()
        self._stopped = False

    @classmethod
    def getOrCreate(cls, conf: SparkConf | None = None) -> SparkContext:
        """The running context, or a new one."""
        with cls._lock:
            active = cls._active
        return active if active is not None else cls(conf=conf)

    def __enter__(self) -> SparkContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End this context; the cluster stops too if this context started it. Safe to call twice."""
        with SparkContext._lock:
            if SparkContext._active is self:
                SparkContext._active = None
        if not self._stopped and self._owns:
            lc.shutdown()
        self._stopped = True

    # -- about it ----------------------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """The PySpark API level this follows (code compares it), not a Spark that runs: there is none."""
        return PYSPARK_API

    def __reduce__(self) -> Any:
        raise TypeError("the SparkContext was captured by a function sent to the workers: it lives in the driver "
                        "and can be used only there (SPARK-5063); make RDDs in the driver, and pass tasks plain "
                        "values or sc.broadcast() ones")

    @property
    def defaultParallelism(self) -> int:
        """The cluster's CPU slots (Spark's ``local[N]``: N)."""
        return max(1, int(lc.cluster_resources().get("CPU", 1)))

    @property
    def defaultMinPartitions(self) -> int:
        return min(self.defaultParallelism, 2)

    @property
    def applicationId(self) -> str:
        return f"labcluster-{self.session.client.id}"

    def getConf(self) -> SparkConf:
        return SparkConf().setAll(self._conf.getAll())

    def setLogLevel(self, logLevel: str) -> None:
        """Accepted for PySpark programs; labcluster's tasks log through Dask's logging."""

    def _new_rdd_id(self) -> int:
        if self._stopped:
            raise ValueError("this SparkContext was stopped; make a new one (SparkContext.getOrCreate())")
        return next(self._rdd_ids)

    def _shuffled(self, parent: RDD, n: int, partition_func: Callable[[Any], int], aggregator: p.Aggregator | None,
                  op: str, group: bool = False) -> RDD:
        """A shuffle of ``parent`` into ``n`` partitions (the RDD layer asks here: shuffle.py builds on rdd.py);
        ``group``: every value of a key in one list, with no map-side combine (as Spark's groupByKey)."""
        return ShuffledRDD(parent, n, partition_func, aggregator, op, group=group)

    def _check_same(self, other: Any, op: str) -> None:
        if not isinstance(other, RDD):
            raise TypeError(f"{op} needs another RDD, got {type(other).__name__}")
        if other.ctx is not self:
            raise ValueError(f"{op}: the two RDDs belong to different SparkContexts")

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"on {self.session.client.scheduler_info().get('address', '?')}"
        return f"<SparkContext master={self.master} appName={self.appName} {state}>"

    def _repr_html_(self) -> str:
        import html

        return (f"<div><b>SparkContext</b> (labcluster) <code>{html.escape(self.appName)}</code>: "
                f"{self.defaultParallelism} CPU slots, {len(self._stages.submitted)} stages run</div>")

    # -- sources -----------------------------------------------------------------------------------------------
    def parallelize(self, c: Iterable[Any], numSlices: int | None = None) -> RDD:
        """An RDD of ``c``'s elements in ``numSlices`` partitions (default: the cluster's CPU slots). A ``range``
        is made in the tasks; other data travels with them."""
        n = partitions(numSlices if numSlices is not None else self.defaultParallelism, "parallelize")
        rdd = SourceRDD(self, n, "parallelize", "ParallelCollectionRDD")
        if isinstance(c, range):
            rdd.parts = [p.Plan((), p.Generate(range, (r.start, r.stop, r.step), rdd._where(i)), ("parallelize",))
                         for i, r in enumerate(_split_range(c, n))]
        else:
            data = list(c)
            rdd.parts = [p.Plan((data[i * len(data) // n:(i + 1) * len(data) // n],), p.Input(0),
                                ("parallelize",)) for i in range(n)]
        return rdd

    def range(self, start: int, end: int | None = None, step: int = 1,
              numSlices: int | None = None) -> RDD:
        """``range(start, end, step)`` as an RDD, made in the tasks (``range(n)``: 0 to n - 1)."""
        if end is None:
            start, end = 0, start
        return self.parallelize(range(start, end, step), numSlices)

    def emptyRDD(self) -> RDD:
        return SourceRDD(self, 0, "emptyRDD", "EmptyRDD")

    def textFile(self, name: str, minPartitions: int | None = None, use_unicode: bool = True) -> RDD:
        """A line per element (without its line break), read in the tasks. ``name``: a file, a directory, a
        glob, a comma-separated list, local or any fsspec URL. Files are split by bytes into at least
        ``minPartitions`` partitions (compressed ones are not split), each line read by the split it starts in."""
        import fsspec.core

        from ..data.sources import expand_paths

        paths = expand_paths([s for s in name.split(",") if s], "textFile")
        wanted = partitions(minPartitions if minPartitions is not None else self.defaultMinPartitions, "textFile")
        sizes = []
        for path in paths:
            fs, root = fsspec.core.url_to_fs(path)
            sizes.append(int(fs.size(root) or 0))
        # at most 32 MiB a split, as Hadoop's local block size caps PySpark's: a big file gets many partitions
        goal = max(1, min(sum(sizes) // wanted, _MAX_SPLIT))
        splits = []
        for path, size in zip(paths, sizes, strict=True):
            compressed = path.endswith((".gz", ".bz2", ".xz", ".zst", ".lz4"))
            pieces = 1 if compressed or size == 0 else math.ceil(size / goal)
            splits += [(path, k * size // pieces, (k + 1) * size // pieces, compressed) for k in range(pieces)]
        rdd = SourceRDD(self, len(splits), "textFile", "MapPartitionsRDD")
        rdd.parts = [p.Plan((), p.Generate(fn.read_lines, (*split, use_unicode), f"{rdd._where(i)}, reading "
                                                                              f"{split[0]!r}"), ("textFile",))
                     for i, split in enumerate(splits)]
        return rdd

    def union(self, rdds: Sequence[RDD]) -> RDD:
        if not rdds:
            raise ValueError("union needs at least one RDD")
        for r in rdds:
            self._check_same(r, "union")
        return UnionRDD(self, list(rdds))

    # -- shared variables --------------------------------------------------------------------------------------
    def broadcast(self, value: Any) -> Broadcast:
        """``value`` put in the object store once; tasks read it as ``b.value`` (fetched once per worker)."""
        return Broadcast(value)

    def accumulator(self, value: Any, accum_param: AccumulatorParam | None = None) -> Accumulator:
        """A value tasks add to (``acc += x``) and the driver reads (``acc.value``)."""
        return Accumulator(value, accum_param)


def _split_range(r: range, n: int) -> list[range]:
    return [r[i * len(r) // n:(i + 1) * len(r) // n] for i in range(n)]
