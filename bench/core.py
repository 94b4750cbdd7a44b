"""Core benchmarks for issue #2, measured side by side in one run, on one cluster shape.

Systems (columns):

- ``labcluster``: ``lc.init(num_cpus=2)`` as it ships (scheduler and the worker's Nanny in a head process of the
  cluster's own), with labcluster's tuned local settings;
- ``dask-same``: raw ``client.submit`` on that very cluster: the ratio to it is labcluster's own overhead;
- ``dask-default``: ``LocalCluster(n_workers=1, threads_per_worker=2)`` with Dask's defaults (process worker);
- ``ray`` / ``pyspark``: when importable (``ray.init(num_cpus=2)``; ``local[2]``).

Measurements: no-op task throughput (5,000 async), sync round trip per task, put + get of a 100 MB
array, put + get of a 400,000-element list and a task taking and returning it (``list(range(400_000))``:
distributed serialises a list element by element), cold start to first result (a fresh process each time).
Medians of ``--repeat`` runs. A list measurement's first run is its warm-up; one that took over ``SLOW_S``
(raw Dask: tens of seconds) is the system's only run of it, so that the whole benchmark stays bounded.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

N_ASYNC = 5_000
N_SYNC = 300
MB_100 = 100 * 2**20
N_LIST = 400_000
#: a list measurement whose first run takes longer is not repeated (that run is its value)
SLOW_S = 10.0


def save(name: str, result: Any, md: str) -> str:
    """Write ``bench/results/<name>.json`` and ``.md``; returns the markdown to print."""
    import json
    from pathlib import Path

    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(md + "\n")
    return md


class HostCPU:
    """This machine's CPU time while a benchmark runs, from ``/proc/stat`` (Linux): the busy share and the stolen
    share (a virtual machine's vCPUs taken by other tenants of its host). The load average shows neither: a host
    whose vCPUs are a fifth stolen reads load 1.0 and slows two-core work by far more than that.

    >>> cpu = HostCPU()          # doctest: +SKIP
    >>> cpu.text()               # doctest: +SKIP
    'host CPU 74% busy, 3% stolen'
    """

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> list[int] | None:
        try:
            with open("/proc/stat") as f:
                return [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None

    def shares(self) -> tuple[float, float] | None:
        """(busy, stolen) fractions of all CPU time since this was made; None where ``/proc/stat`` is missing."""
        now = self._read()
        if now is None or self.start is None:
            return None
        d = [b - a for a, b in zip(self.start, now, strict=True)]
        total = sum(d) or 1
        idle, steal = d[3] + d[4], d[7]  # idle + iowait; steal
        return (total - idle - steal) / total, steal / total

    def text(self) -> str:
        got = self.shares()
        return "host CPU: no /proc/stat" if got is None else f"host CPU {got[0]:.0%} busy, {got[1]:.0%} stolen"


def threads_slowdown(work: Callable[[], Any], tasks: int = 8) -> float:
    """How much slower ``work`` runs in each of two threads of one process than alone: ~1.0 where the two run in
    parallel (numpy releasing the GIL), ~2.0 where they take turns. It moves with the host (seen here: 1.07 on
    2026-12-02, 1.8-2.2 on 2026-12-03 with no CPU stolen), and it sets the pace of two CPU slots that are one
    worker's threads.
    """
    import threading

    def run(n: int) -> None:
        for _ in range(n):
            work()

    t = time.perf_counter()
    run(tasks)
    alone = (time.perf_counter() - t) / tasks
    threads = [threading.Thread(target=run, args=(tasks,)) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return (time.perf_counter() - t) / tasks / alone


def noop() -> None:
    return None


def echo(value: Any) -> Any:
    """A task that returns its argument."""
    return value


def _by_value(params: str = "") -> Any:
    """A no-op function that cloudpickle sends by value, like a function defined in a notebook cell;
    ``params``: its parameter list (``"_"`` for a function that ``map`` calls with an element)."""
    namespace: dict[str, Any] = {"__name__": "__main__"}  # what a notebook cell's functions have
    exec(f"def cell_noop({params}):\n    return None\n", namespace)
    return namespace["cell_noop"]


def _repeat(fn: Callable[[], None], n: int) -> None:
    for _ in range(n):
        fn()


def _median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


class System:
    """One column of the table. A system implements the operations it has; one it lacks raises
    NotImplementedError, and :meth:`measure` leaves that metric out (the table prints "-")."""

    name = "?"

    def submit_many(self, n: int) -> None:
        """``n`` no-op tasks submitted at once, then waited for."""
        raise NotImplementedError

    def submit_many_by_value(self, n: int) -> None:
        """Like submit_many, with a function that travels by value (as every notebook function does)."""
        raise NotImplementedError

    def round_trip(self) -> None:
        """One no-op task, submitted and waited for."""
        raise NotImplementedError

    def put_get(self, value: Any) -> Any:
        """``value`` stored in the cluster and fetched back."""
        raise NotImplementedError

    def echo_task(self, value: Any) -> Any:
        """A task ``echo(value)`` submitted, and its result fetched."""
        raise NotImplementedError

    def close(self) -> None: ...

    def metrics(self, arr: Any, items: list[int]) -> list[tuple[str, Callable[[], Any] | None, Callable[[], float]]]:
        """(key, warm-up, one timed run) per metric, in the table's order; warm-up None: the first run is it."""

        def throughput(submit: Callable[[int], None]) -> Callable[[], float]:
            def run() -> float:
                t = time.perf_counter()
                submit(N_ASYNC)
                return N_ASYNC / (time.perf_counter() - t)
            return run

        def rtt() -> float:
            t = time.perf_counter()
            for _ in range(N_SYNC):
                self.round_trip()
            return (time.perf_counter() - t) / N_SYNC * 1e3

        def put_get() -> float:
            t = time.perf_counter()
            out = self.put_get(arr)
            dt = time.perf_counter() - t
            assert out.shape == arr.shape and out[123] == arr[123]
            return MB_100 / dt / 1e9

        def seconds(op: Callable[[Any], Any]) -> Callable[[], float]:
            def run() -> float:
                t = time.perf_counter()
                out = op(items)
                dt = time.perf_counter() - t
                assert type(out) is list and len(out) == N_LIST and out[123] == 123
                return dt
            return run

        return [
            # warm-ups: imports, connections, function caches; the first large transfers pay for connections
            # and fresh pages, in every system
            ("tasks_per_s", lambda: self.submit_many(200), throughput(self.submit_many)),
            ("round_trip_ms", lambda: _repeat(self.round_trip, 20), rtt),
            ("by_value_tasks_per_s", lambda: self.submit_many_by_value(200), throughput(self.submit_many_by_value)),
            ("put_get_GBps", lambda: [self.put_get(arr) for _ in range(2)], put_get),
            ("list_put_get_s", None, seconds(self.put_get)),
            ("list_task_s", None, seconds(self.echo_task)),
        ]

    def measure(self, repeat: int) -> dict[str, Any]:
        """Per metric this system implements: its warm-up, then the median of ``repeat`` timed runs. A metric
        without a warm-up of its own whose first run took over ``SLOW_S`` keeps that run alone, and is named in
        ``one_run``."""
        arr = np.random.default_rng(0).random(MB_100 // 8)
        items = list(range(N_LIST))
        out: dict[str, Any] = {}
        one_run: list[str] = []
        for key, warm_up, run in self.metrics(arr, items):
            try:
                first = run() if warm_up is None else warm_up()
            except NotImplementedError:  # this system has no such operation: "-" in the table
                continue
            if warm_up is None and first > SLOW_S:
                out[key] = first
                one_run.append(key)
            else:
                out[key] = _median(run, repeat)
        if one_run:
            out["one_run"] = one_run
        return out


class RayAPI(System):
    """Anything with Ray's core API: labcluster (``import labcluster as ray``) and Ray itself."""

    def __init__(self, name: str, module: Any, session: Any = None) -> None:
        self.name, self.api, self.session = name, module, session
        self.fn = module.remote(noop)
        self.by_value = module.remote(_by_value())
        self.echo = module.remote(echo)

    def submit_many_by_value(self, n: int) -> None:
        self.api.get([self.by_value.remote() for _ in range(n)])

    def submit_many(self, n: int) -> None:
        self.api.get([self.fn.remote() for _ in range(n)])

    def round_trip(self) -> None:
        self.api.get(self.fn.remote())

    def put_get(self, value: Any) -> Any:
        return self.api.get(self.api.put(value))

    def echo_task(self, value: Any) -> Any:
        return self.api.get(self.echo.remote(value))

    def close(self) -> None:
        self.api.shutdown()


def start_labcluster(processes: bool = True) -> Any:
    """The cluster every benchmark runs on: ``lc.init(num_cpus=2)``, one CPU worker process with 2 threads, its
    Nanny and the scheduler in the cluster's head process; ``processes=False``: ``lc.init(num_cpus=2,
    processes=False)``, a thread worker and the scheduler in this process. Returns the session."""
    import labcluster as lc

    return lc.init(num_cpus=2, include_dashboard=False, processes=processes)


def labcluster_system() -> RayAPI:
    import labcluster as lc

    return RayAPI("labcluster", lc, start_labcluster())


def ray_system() -> RayAPI:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return RayAPI("ray", ray)


class DaskClient(System):
    def __init__(self, client: Any, name: str, cluster: Any = None) -> None:
        self.client, self.name, self.cluster = client, name, cluster

    def submit_many(self, n: int) -> None:
        self.client.gather([self.client.submit(noop, pure=False) for _ in range(n)])

    def round_trip(self) -> None:
        self.client.submit(noop, pure=False).result()

    def submit_many_by_value(self, n: int) -> None:
        fn = _by_value()
        self.client.gather([self.client.submit(fn, pure=False) for _ in range(n)])

    def put_get(self, value: Any) -> Any:
        [fut] = self.client.scatter([value], hash=False)
        return fut.result()

    def echo_task(self, value: Any) -> Any:
        return self.client.submit(echo, value, pure=False).result()

    def close(self) -> None:
        if self.cluster is not None:
            self.client.close()
            self.cluster.close()


def dask_default() -> DaskClient:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None)
    return DaskClient(Client(cluster), "dask-default", cluster)


def pyspark_context(name: str) -> tuple[Any, float]:
    """PySpark's ``local[2]`` (no UI, no console progress, errors only) and the seconds its JVM and first Python
    worker took to come up. Its Python workers run this interpreter and can import ``bench``."""
    from pyspark import SparkConf, SparkContext

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *(p for p in paths if p != root)])
    t = time.perf_counter()
    conf = SparkConf().set("spark.ui.showConsoleProgress", "false").set("spark.ui.enabled", "false")
    sc = SparkContext("local[2]", name, conf=conf)
    sc.setLogLevel("ERROR")
    sc.parallelize([1]).count()  # the JVM and its Python workers are up
    return sc, time.perf_counter() - t


class PySpark(System):
    """Spark has no task-per-call API; the closest: one partition per task, collect() to wait."""

    name = "pyspark"

    def __init__(self) -> None:
        from pyspark.sql import SparkSession

        self.spark = SparkSession.builder.master("local[2]").appName("bench").getOrCreate()
        self.sc = self.spark.sparkContext

    def submit_many(self, n: int) -> None:
        self.sc.parallelize(range(n), min(n, 1000)).map(lambda _: None).collect()

    def submit_many_by_value(self, n: int) -> None:
        # Spark ships every function by value (cloudpickle) already; this one is built as a notebook cell's is
        self.sc.parallelize(range(n), min(n, 1000)).map(_by_value("_")).collect()

    def round_trip(self) -> None:
        self.sc.parallelize([0], 1).map(lambda _: None).collect()

    def put_get(self, value: Any) -> Any:
        return self.sc.broadcast(value).value

    def echo_task(self, value: Any) -> Any:
        # one partition, whose one element is value; a lambda travels by value, as Spark's functions here do
        [out] = self.sc.parallelize([value], 1).map(lambda x: x).collect()
        return out

    def close(self) -> None:
        self.spark.stop()


COLD = {
    "labcluster": ("import labcluster as lc\n"
                   "lc.init(num_cpus=2, include_dashboard=False)\n"
                   "assert lc.get(lc.remote(lambda: 1).remote()) == 1\n"
                   "lc.shutdown()\n"),
    "dask-default": ("from distributed import Client, LocalCluster\n"
                     "cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None)\n"
                     "client = Client(cluster)\n"
                     "assert client.submit(lambda: 1).result() == 1\n"
                     "client.close(); cluster.close()\n"),
    "dask-LocalCluster()": ("from distributed import Client, LocalCluster\n"
                            "cluster = LocalCluster(dashboard_address=None)\n"
                            "client = Client(cluster)\n"
                            "assert client.submit(lambda: 1).result() == 1\n"
                            "client.close(); cluster.close()\n"),
    "ray": ("import ray\nray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
            "assert ray.get(ray.remote(lambda: 1).remote()) == 1\nray.shutdown()\n"),
}


def cold_start(system: str, repeat: int) -> float:
    """Seconds from interpreter start (imports included) to the first task result, in a fresh process."""
    body = COLD[system].replace("== 1\n", "== 1\nprint(time.perf_counter() - _t0, flush=True)\n", 1)
    code = "import time\n_t0 = time.perf_counter()\n" + body
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", "if __name__ == '__main__':\n" + _indent(code)],
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"cold start of {system} failed:\n{out.stderr[-2000:]}")
        runs.append(float(out.stdout.strip().splitlines()[0]))
    return statistics.median(runs)


def _indent(code: str) -> str:
    return "".join("    " + line + "\n" for line in code.splitlines())
