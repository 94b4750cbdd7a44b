"""labcluster.spark on worker processes: shared variables across processes, and a worker SIGKILLed (by PID) mid-job
whose lost partitions are rebuilt from their lineage, as Spark recomputes lost partitions; the records say which."""

import operator
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import labcluster as lc
from labcluster.spark import SparkContext


@pytest.fixture(scope="module")
def sc() -> Iterator[SparkContext]:
    lc.shutdown()
    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1)], include_dashboard=False)
    context = SparkContext()
    yield context
    context.stop()
    lc.shutdown()


def test_shared_variables_cross_worker_processes(sc: SparkContext) -> None:
    table = sc.broadcast({i: str(i) for i in range(100)})
    seen = sc.accumulator(0)

    def look(x: int) -> tuple[int, str]:
        seen.add(1)
        return os.getpid(), table.value[x]

    got = sc.parallelize(range(100), 8).map(look).collect()
    assert [v for _, v in got] == [str(i) for i in range(100)]
    assert len({pid for pid, _ in got}) == 2  # both worker processes read the broadcast
    assert seen.value == 100


def test_a_worker_killed_mid_job_loses_partitions_that_are_rebuilt(sc: SparkContext) -> None:
    from conftest import wait_until

    def slow_pair(x: int) -> tuple[int, int]:
        time.sleep(0.02)
        return x % 10, x

    def slow_total(v: int) -> int:
        time.sleep(0.3)
        return v

    since = _next_index()
    totals = sc.parallelize(range(400), 8).map(slow_pair).reduceByKey(operator.add, 4).mapValues(slow_total)
    out: dict[str, Any] = {}
    job = threading.Thread(target=lambda: out.setdefault("result", totals.collect()), daemon=True)
    job.start()

    def map_side_done() -> bool:
        rows = [r for r in lc.list_tasks(since=since) if "map side" in str(r["stage"]) and r["name"] is not None
                and "[" not in str(r["name"])]
        return len(rows) == 8 and all(r["finished"] for r in rows)

    assert wait_until(map_side_done, timeout=60)
    victim = next(n for n in lc.nodes() if n["NodeName"] == "cpu-1")
    os.kill(victim["PID"], signal.SIGKILL)
    job.join(timeout=120)
    assert not job.is_alive()
    assert sorted(out["result"]) == [(k, sum(x for x in range(400) if x % 10 == k)) for k in range(10)]
    time.sleep(0.3)
    rows = lc.list_tasks(since=since)
    rebuilt = [r for r in rows if r["reconstruction"]]
    assert rebuilt, "no task was rebuilt after the kill"
    assert {str(r["stage"]).split(": ", 1)[1] for r in rebuilt} <= {
        "parallelize -> map -> reduceByKey (map side)", "reduceByKey -> mapValues -> collect"}
    assert any("map side" in str(r["stage"]) for r in rebuilt)
    assert all(r["reason"] for r in rebuilt)
    graph = totals.lineage()
    assert graph.reconstructed


def _next_index() -> int:
    rows = lc.list_tasks()
    return int(rows[-1]["index"]) + 1 if rows else 0
