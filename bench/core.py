"""Core benchmarks for issue #2, measured side by side in one run, on one cluster shape.

Systems (columns):

- ``labcluster``: ``lc.init(num_cpus=2)`` with labcluster's tuned local settings;
- ``dask-same``: raw ``client.submit`` on that very cluster: the ratio to it is labcluster's own overhead;
- ``dask-default``: ``LocalCluster(n_workers=1, threads_per_worker=2)`` with Dask's defaults (process worker);
- ``ray`` / ``pyspark``: when importable (``ray.init(num_cpus=2)``; ``local[2]``).

Measurements: no-op task throughput (5,000 async), sync round trip per task, put + get of a 100 MB
array, cold start to first result (a fresh process each time). Medians of ``--repeat`` runs.
"""

from __future__ import annotations

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


def save(name: str, result: Any, md: str) -> str:
    """Write ``bench/results/<name>.json`` and ``.md``; returns the markdown to print."""
    import json
    from pathlib import Path

    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(md + "\n")
    return md


def noop() -> None:
    return None


def _by_value() -> Any:
    """A no-op function that cloudpickle sends by value, like a function defined in a notebook cell."""
    namespace: dict[str, Any] = {"__name__": "__main__"}  # what a notebook cell's functions have
    exec("def cell_noop():\n    return None\n", namespace)
    return namespace["cell_noop"]


def _median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


class System:
    name = "?"

    def submit_many(self, n: int) -> None: ...
    def round_trip(self) -> None: ...
    def put_get(self, value: Any) -> Any: ...
    def close(self) -> None: ...

    def submit_many_by_value(self, n: int) -> None:
        """Like submit_many, with a function that travels by value (as every notebook function does)."""

    def measure(self, repeat: int) -> dict[str, float]:
        self.submit_many(200)  # warm up: imports, connections, function caches
        for _ in range(20):
            self.round_trip()
        arr = np.random.default_rng(0).random(MB_100 // 8)
        for _ in range(2):  # the first large transfers pay for connections and fresh pages, in every system
            self.put_get(arr)

        def throughput() -> float:
            t = time.perf_counter()
            self.submit_many(N_ASYNC)
            return N_ASYNC / (time.perf_counter() - t)

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

        def throughput_by_value() -> float:
            t = time.perf_counter()
            self.submit_many_by_value(N_ASYNC)
            return N_ASYNC / (time.perf_counter() - t)

        self.submit_many_by_value(200)
        return {"tasks_per_s": _median(throughput, repeat), "round_trip_ms": _median(rtt, repeat),
                "by_value_tasks_per_s": _median(throughput_by_value, repeat),
                "put_get_GBps": _median(put_get, repeat)}


class RayAPI(System):
    """Anything with Ray's core API: labcluster (``import labcluster as ray``) and Ray itself."""

    def __init__(self, name: str, module: Any, session: Any = None) -> None:
        self.name, self.api, self.session = name, module, session
        self.fn = module.remote(noop)
        self.by_value = module.remote(_by_value())

    def submit_many_by_value(self, n: int) -> None:
        self.api.get([self.by_value.remote() for _ in range(n)])

    def submit_many(self, n: int) -> None:
        self.api.get([self.fn.remote() for _ in range(n)])

    def round_trip(self) -> None:
        self.api.get(self.fn.remote())

    def put_get(self, value: Any) -> Any:
        return self.api.get(self.api.put(value))

    def close(self) -> None:
        self.api.shutdown()


def start_labcluster(scheduler_process: bool = True) -> Any:
    """The cluster every benchmark runs on: ``lc.init(num_cpus=2)``, one CPU worker process with 2 threads;
    ``scheduler_process=False``: its scheduler in this process instead of its own. Returns the session."""
    import dask

    import labcluster as lc

    with dask.config.set({"labcluster.local.scheduler-process": scheduler_process}):
        return lc.init(num_cpus=2, include_dashboard=False)


def labcluster_system(scheduler_process: bool = True) -> RayAPI:
    import labcluster as lc

    session = start_labcluster(scheduler_process)
    return RayAPI("labcluster" if scheduler_process else "labcluster-in-process", lc, session)


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

    def close(self) -> None:
        if self.cluster is not None:
            self.client.close()
            self.cluster.close()


def dask_default() -> DaskClient:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None)
    return DaskClient(Client(cluster), "dask-default", cluster)


class PySpark(System):
    """Spark has no task-per-call API; the closest: one partition per task, collect() to wait."""

    name = "pyspark"

    def __init__(self) -> None:
        from pyspark.sql import SparkSession

        self.spark = SparkSession.builder.master("local[2]").appName("bench").getOrCreate()
        self.sc = self.spark.sparkContext

    def submit_many(self, n: int) -> None:
        self.sc.parallelize(range(n), min(n, 1000)).map(lambda _: None).collect()

    def round_trip(self) -> None:
        self.sc.parallelize([0], 1).map(lambda _: None).collect()

    def put_get(self, value: Any) -> Any:
        return self.sc.broadcast(value).value

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
