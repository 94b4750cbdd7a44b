"""Each adapter of labcluster's one seam to Dask's internals, against the installed distributed.

When a distributed release changes what an adapter touches, the test named after that adapter fails: widening
the pin in pyproject.toml means reading labcluster/dask_internals.py and running this file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import pytest
from distributed import Client, Event, Future, LocalCluster, get_worker, wait

from labcluster import dask_internals as di


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      resources={"R": 2}) as cluster, Client(cluster) as c:
        yield c


def test_set_stream_interval(client: Client) -> None:
    comm = di.client_stream(client)
    before = comm.interval
    di.set_stream_interval(comm, 0.0)
    assert comm.interval == 0.0
    di.set_stream_interval(comm, before)


def test_client_stream(client: Client) -> None:
    comm = di.client_stream(client)
    assert hasattr(comm, "send") and hasattr(comm, "interval")


def test_worker_stream(client: Client) -> None:
    assert client.run(lambda dask_worker: hasattr(di.worker_stream(dask_worker), "interval")) == {
        a: True for a in client.scheduler_info()["workers"]}


def test_scheduler_streams(client: Client) -> None:
    counts = client.run_on_scheduler(lambda dask_scheduler: [type(c).__name__ for c in
                                                              di.scheduler_streams(dask_scheduler)])
    assert counts.count("BatchedSend") >= 3  # two workers and this client


def test_future_finished(client: Client) -> None:
    future = client.submit(time.sleep, 0.2, pure=False)

    async def until_done() -> str:
        await di.future_finished(future)
        return str(future.status)

    assert client.sync(until_done) == "finished"


def _wanted_by(client: Client, key: str) -> set[str]:
    return set(client.run_on_scheduler(lambda dask_scheduler: [
        c.client_key for c in (dask_scheduler.tasks[key].who_wants if key in dask_scheduler.tasks else ())]))


def _until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_desire_keys(client: Client) -> None:
    [owned] = client.scatter([41])
    key = owned.key
    with Client(client.scheduler.address) as other:
        borrowed: Future[int] = Future(key, other)
        di.desire_keys(other, [key])
        _until(lambda: other.id in _wanted_by(client, key))
        del owned  # the first client lets go: the second one's desire keeps the key
        _until(lambda: client.id not in _wanted_by(client, key))
        assert borrowed.result(timeout=10) == 41


def test_send_to_scheduler_is_handled_in_order_with_submissions(client: Client) -> None:
    seen: list[str] = []
    scheduler = client.cluster.scheduler  # in this process (processes=False)
    scheduler.stream_handlers["labcluster_test_seen"] = lambda client=None, tag="": seen.append(tag)
    di.send_to_scheduler(client, {"op": "labcluster_test_seen", "tag": "before"})
    future = client.submit(lambda: 1, pure=False)
    assert future.result(timeout=10) == 1
    assert seen == ["before"]  # handled before the task that was sent after it


def test_store_on_worker_and_register_worker_data(client: Client) -> None:
    address = next(iter(client.scheduler_info()["workers"]))
    key = "stored-by-hand-1"

    async def store() -> None:
        await client.run(lambda dask_worker: di.store_on_worker(dask_worker, key, [1, 2, 3]), workers=[address],
                         asynchronous=True)
        await di.register_worker_data(client, key, address, 100)

    future: Future[Any] = Future(key, client)
    client.sync(store)
    assert future.result(timeout=10) == [1, 2, 3]
    assert list(client.who_has([future])[key]) == [address]


def test_worker_rpc(client: Client) -> None:
    address = next(iter(client.scheduler_info()["workers"]))

    async def identity() -> dict[str, Any]:
        return dict(await di.worker_rpc(client, address).identity())

    assert client.sync(identity)["type"] == "Worker"


def test_bind_worker(client: Client) -> None:
    def in_a_thread_of_the_worker() -> str:
        worker = get_worker()
        out: list[str] = []

        def run() -> None:
            di.bind_worker(worker)
            out.append(get_worker().address)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return out[0]

    address = client.submit(in_a_thread_of_the_worker, pure=False).result(timeout=10)
    assert address in client.scheduler_info()["workers"]


def test_task_resources_lend_resources_and_free_resources(client: Client) -> None:
    def inside() -> dict[str, Any]:
        worker = get_worker()
        key = worker.get_current_task()
        asked = di.task_resources(worker, key)
        before = di.free_resources(worker)["R"]
        lent = di.lend_resources(worker, key, +1)
        during = di.free_resources(worker)["R"]
        di.lend_resources(worker, key, -1)
        return {"asked": asked, "before": before, "lent": lent, "during": during,
                "after": di.free_resources(worker)["R"]}

    out = client.submit(inside, resources={"R": 1}, pure=False).result(timeout=10)
    assert out == {"asked": {"R": 1.0}, "before": 1.0, "lent": {"R": 1.0}, "during": 2.0, "after": 1.0}


def test_task_cancelled(client: Client) -> None:
    gate = Event("cancelled-gate", client=client)

    def watch() -> list[bool]:
        worker = get_worker()
        key = worker.get_current_task()
        seen = [di.task_cancelled(worker, key)]
        gate.wait(10)
        deadline = time.monotonic() + 10
        while not di.task_cancelled(worker, key) and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(di.task_cancelled(worker, key))
        Event("cancelled-seen", client=worker.client).set()
        return seen

    future = client.submit(watch, pure=False)
    _until(lambda: client.run_on_scheduler(lambda dask_scheduler: getattr(
        dask_scheduler.tasks.get(future.key), "state", None)) == "processing")
    client.cancel([future])
    gate.set()
    assert Event("cancelled-seen", client=client).wait(15)


def _raise_it(text: str) -> None:
    raise RuntimeError(text)


def test_fail_task_with(client: Client) -> None:
    gate = Event("fail-task-gate", client=client)
    first = client.submit(lambda: gate.wait(10), pure=False)
    second = client.submit(lambda _: "ran its own code", first, pure=False)
    _until(lambda: client.run_on_scheduler(lambda dask_scheduler: second.key in dask_scheduler.tasks))

    def swap(dask_scheduler: Any = None) -> bool:
        ts = dask_scheduler.tasks[second.key]
        di.fail_task_with(ts, _raise_it, "swapped in")
        return True

    assert client.run_on_scheduler(swap)
    gate.set()
    with pytest.raises(RuntimeError, match="swapped in"):
        second.result(timeout=10)


def test_move_task(client: Client) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    gate = Event("move-task-gate", client=client)
    blocker = client.submit(lambda: gate.wait(20), workers=[workers[0]], pure=False)
    queued = client.submit(lambda: get_worker().address, workers=[workers[0]], allow_other_workers=True, pure=False)
    _until(lambda: client.run_on_scheduler(lambda dask_scheduler: getattr(
        dask_scheduler.tasks.get(queued.key), "state", None)) == "processing")

    def move(dask_scheduler: Any = None) -> bool:
        ts = dask_scheduler.tasks[queued.key]
        return di.move_task(dask_scheduler, ts, dask_scheduler.workers[workers[0]], dask_scheduler.workers[workers[1]])

    assert client.run_on_scheduler(move)
    assert queued.result(timeout=10) == workers[1]  # it ran on the other worker while the first stayed busy
    gate.set()
    wait([blocker], timeout=10)


def test_inherit_config_env() -> None:
    env = di.inherit_config_env({"labcluster-test": {"value": 7}})
    code = "import dask, distributed, json; print(json.dumps(dask.config.get('labcluster-test.value')))"
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == 7


def test_pre_spawn_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    # distributed's defaults, read from its file, are what a Nanny sets before it spawns a worker
    assert di.pre_spawn_environ({}) == {
        **{k: str(v) for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()},
        "PYTHONHASHSEED": "6640"}
    overridden = {"distributed": {"nanny": {"pre-spawn-environ": {"OMP_NUM_THREADS": 4, "EXTRA": "x"}}}}
    assert di.pre_spawn_environ(overridden)["OMP_NUM_THREADS"] == "4"
    assert di.pre_spawn_environ(overridden)["EXTRA"] == "x"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the environment wins, as in the Nanny
    assert di.pre_spawn_environ(overridden)["OMP_NUM_THREADS"] == "2"


def test_keep_forkserver_preload() -> None:
    import distributed.utils

    code = ("import dask, distributed.utils as u, sys; from labcluster import dask_internals as di\n"
            "di.keep_forkserver_preload()\n"
            "with dask.config.set({'distributed.worker.multiprocessing-method': 'forkserver'}): u.get_mp_context()\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # distributed did not import pandas to preload it
    assert isinstance(distributed.utils._forkserver_preload_set, bool)


def test_the_seam_was_checked_with_the_installed_release() -> None:
    import distributed

    major_minor = ".".join(distributed.__version__.split(".")[:2])
    assert major_minor in di.CHECKED_WITH, (
        f"distributed {distributed.__version__} is not among the releases labcluster/dask_internals.py was checked "
        f"with ({', '.join(di.CHECKED_WITH)}): run this file, read the adapters, then add it there")
    assert dask.__version__  # dask and distributed are released together


def _hello_page(doc: Any) -> None:
    from bokeh.models.widgets import Div

    doc.add_root(Div(text="hello from the seam"))
    doc.title = "seam test"


def _add_hello(dask_scheduler: Any) -> list[str]:
    return di.add_dashboard_pages(dask_scheduler, {"/individual-seam-test": _hello_page})


def test_add_dashboard_pages(client: Client) -> None:
    import urllib.request

    assert client.run_on_scheduler(_add_hello) == []  # this scheduler has no dashboard: nothing added, no error
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as c:
        assert c.run_on_scheduler(_add_hello) == ["/individual-seam-test"]
        assert c.run_on_scheduler(_add_hello) == []  # once only
        base = f"http://127.0.0.1:{c.scheduler_info(n_workers=0)['services']['dashboard']}"
        with urllib.request.urlopen(f"{base}/individual-plots.json", timeout=30) as r:
            plots = json.loads(r.read())
        assert plots["Individual Seam Test"] == "/individual-seam-test" and "Individual Task Stream" in plots
        with urllib.request.urlopen(f"{base}/individual-seam-test", timeout=30) as r:
            assert r.status == 200 and "seam test" in r.read().decode()
        with urllib.request.urlopen(f"{base}/individual-task-stream", timeout=30) as r:
            assert r.status == 200  # distributed's own pages still answer


def test_the_spec_cluster_internals_keeping_spec_cluster_overrides() -> None:
    import inspect

    from distributed import SpecCluster
    from distributed.deploy.cluster import Cluster

    for cls in (SpecCluster, Cluster):
        assert list(inspect.signature(cls._update_worker_status).parameters) == ["self", "op", "msg"], cls
    assert "_look_later" not in vars(SpecCluster)  # ours is not shadowing one of Dask's
    from distributed import Scheduler

    with SpecCluster(workers={}, scheduler={"cls": Scheduler, "options": {"dashboard": False}},
                     asynchronous=False) as cluster:
        assert isinstance(cluster._futures, set) and isinstance(cluster.workers, dict)
        assert "workers" in cluster.scheduler_info
