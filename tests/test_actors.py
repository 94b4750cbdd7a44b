"""Actors (issue 3, first slice): creation, ordered calls, errors, named actors, kill, held resources."""

import time
from collections.abc import Iterator

import pytest

import labcluster as lc
from labcluster.exceptions import ActorDiedError, TaskError


@lc.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def fail(self) -> None:
        raise KeyError("missing")


@lc.remote(num_gpus=1)
class GPUModel:
    def predict(self, x: int) -> tuple[int, list[int]]:
        return 2 * x, lc.get_gpu_ids()


@lc.remote
class Broken:
    def __init__(self) -> None:
        raise RuntimeError("constructor blew up")

    def ping(self) -> str:
        return "pong"


@lc.remote(num_gpus=1)
def gpu_task() -> str:
    return "ran"


@lc.remote
def call_actor(counter: lc.ActorHandle, by: int) -> int:
    return lc.get(counter.incr.remote(by))  # type: ignore[no-any-return]


@lc.remote
def double(x: int) -> int:
    return 2 * x


@pytest.fixture(scope="module")
def cluster() -> Iterator[lc.Session]:
    lc.shutdown()
    yield lc.init(num_cpus=2, simulate_gpus=1, include_dashboard=False)
    lc.shutdown()


def test_calls_from_one_caller_run_in_order(cluster: lc.Session) -> None:
    c = Counter.remote(100)
    assert lc.get([c.incr.remote() for _ in range(50)], timeout=60) == list(range(101, 151))


def test_direct_calls_and_unknown_options_say_the_fix(cluster: lc.Session) -> None:
    with pytest.raises(TypeError, match=r"Instead of 'Counter\(\)', use 'Counter.remote\(\)'"):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"Instead of running 'object.incr\(\)', try 'object.incr.remote\(\)'"):
        c.incr()
    with pytest.raises(AttributeError, match="has no method 'nope'"):
        c.nope
    with pytest.raises(TypeError, match=r"unknown actor option 'max_restart' \(did you mean 'max_restarts'\?\); valid actor options are"):
        Counter.options(max_restart=1)


def test_method_errors_arrive_as_the_users_type(cluster: lc.Session) -> None:
    c = Counter.remote()
    with pytest.raises(KeyError) as info:
        lc.get(c.fail.remote(), timeout=30)
    assert isinstance(info.value, TaskError) and "Counter.fail" in str(info.value)
    assert lc.get(c.incr.remote(), timeout=30) == 1  # the actor survives its method's exception


def test_actor_results_and_handles_compose_with_tasks(cluster: lc.Session) -> None:
    c = Counter.remote()
    assert lc.get(double.remote(c.incr.remote(20)), timeout=30) == 40  # an actor result as a task argument
    assert lc.get(call_actor.remote(c, 5), timeout=30) == 25  # a handle passed into a task
    ready, pending = lc.wait([c.incr.remote(), double.remote(1)], num_returns=2, timeout=30)
    assert len(ready) == 2 and not pending


@lc.remote
def total_of(refs: list[lc.ObjectRef]) -> int:
    return sum(lc.get(refs))


@lc.remote
class Napper:
    def nap(self, seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "rested"


def test_small_actor_results_reach_the_scheduler_only_when_a_task_needs_them(cluster: lc.Session) -> None:
    c = Counter.remote()
    ref = c.incr.remote(7)
    assert lc.get(ref, timeout=30) == 7
    known = cluster.client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    assert ref.key not in known  # the value came back inside the call's reply: no key, no scheduler traffic
    assert "this process" in ref._repr_html_() and ref.state == "finished"
    nested = [c.incr.remote(1), c.incr.remote(1)]  # refs inside a list reach the task as refs
    assert lc.get(total_of.remote(nested), timeout=30) == 8 + 9
    known = cluster.client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    assert all(r.key in known for r in nested)  # passing them to a task made them keys


def test_waits_mix_actor_and_task_refs_with_timeouts_and_cancel(cluster: lc.Session) -> None:
    sleeper = Napper.options(max_concurrency=2).remote()
    slow, quick = sleeper.nap.remote(5), double.remote(4)
    ready, pending = lc.wait([slow, quick], num_returns=1, timeout=30)
    assert ready == [quick] and pending == [slow]
    with pytest.raises(lc.exceptions.GetTimeoutError):
        lc.get([quick, slow], timeout=0.2)
    lc.cancel(slow)
    with pytest.raises(lc.exceptions.TaskCancelledError):
        lc.get(slow, timeout=30)
    assert lc.get(sleeper.nap.remote(0), timeout=30) == "rested"  # the actor carries on


def test_named_actors(cluster: lc.Session) -> None:
    first = Counter.options(name="shared").remote()
    assert lc.get(first.incr.remote(), timeout=30) == 1
    again = Counter.options(name="shared", get_if_exists=True).remote()
    assert lc.get(again.incr.remote(), timeout=30) == 2  # the same actor
    assert lc.get(lc.get_actor("shared").incr.remote(), timeout=30) == 3
    with pytest.raises(ValueError, match="already exists"):
        Counter.options(name="shared").remote()
    with pytest.raises(ValueError, match="no actor named 'nobody'"):
        lc.get_actor("nobody")
    lc.kill(first)
    with pytest.raises(ValueError, match="no actor named 'shared'"):
        lc.get_actor("shared")


def test_kill_and_constructor_failure_give_actor_died_error(cluster: lc.Session) -> None:
    c = Counter.remote()
    assert lc.get(c.incr.remote(), timeout=30) == 1
    lc.kill(c)
    with pytest.raises(ActorDiedError, match="killed"):
        lc.get(c.incr.remote(), timeout=30)
    broken = Broken.remote()
    with pytest.raises(ActorDiedError, match="constructor blew up"):
        lc.get(broken.ping.remote(), timeout=30)


def test_a_gpu_actor_holds_its_gpu_slot_for_its_life(cluster: lc.Session) -> None:
    model = GPUModel.remote()
    assert lc.get(model.predict.remote(4), timeout=30) == (8, [0])
    assert lc.available_resources().get("GPU", 0) == 0  # held by the actor, not by a running call
    waiting = gpu_task.remote()
    ready, _ = lc.wait([waiting], timeout=1.0)
    assert ready == []  # no task oversubscribes the actor's GPU
    lc.kill(model)
    assert lc.get(waiting, timeout=30) == "ran"


def test_a_task_waiting_behind_a_gpu_actor_says_what_holds_it(cluster: lc.Session,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import dask

    model = GPUModel.remote()
    assert lc.get(model.predict.remote(1), timeout=30)[0] == 2
    with dask.config.set({"labcluster.waiting-notice": "0.5s"}):
        waiting = gpu_task.remote()
        with pytest.raises(lc.exceptions.GetTimeoutError):
            lc.get(waiting, timeout=3)
        told = capsys.readouterr().out
        assert f"task gpu_task ({waiting.key}) has waited" in told and "it needs {GPU: 1}" in told, told
        assert "holds GPU 1 on gpu-0 (simulated GPU)" in told and "actor GPUModel-" in told, told
        batch = [double.remote(i) for i in range(6)]  # CPU tasks queued behind each other: no news
        assert lc.get(batch, timeout=30) == [0, 2, 4, 6, 8, 10]
        assert "has waited" not in capsys.readouterr().out
    lc.kill(model)
    assert lc.get(waiting, timeout=30) == "ran"


@lc.remote(num_gpus=1)
def hold_gpu(seconds: float) -> str:
    """Holds the GPU slot until cancelled (cooperatively: it asks) or ``seconds`` pass."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end and not lc.get_runtime_context().is_canceled():
        time.sleep(0.05)
    return "let go"


def test_an_actor_waiting_for_a_held_gpu_names_what_holds_it(cluster: lc.Session,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import dask

    hog = hold_gpu.remote(60)
    deadline = time.monotonic() + 30
    while lc.available_resources().get("GPU", 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.2)  # a heartbeat or two: the scheduler knows the task runs
    with dask.config.set({"labcluster.waiting-notice": "0.5s", "labcluster.actors.start-timeout": "3s"}):
        model = GPUModel.remote()
        with pytest.raises(ActorDiedError) as err:
            lc.get(model.predict.remote(1), timeout=30)
    told = capsys.readouterr().out
    assert "has waited" in told and "it needs {GPU: 1}" in told, told
    assert f"task hold_gpu ({hog.key}) holds GPU 1 on gpu-0 (simulated GPU)" in told, told
    assert "did not start within 3s" in str(err.value) and f"task hold_gpu ({hog.key}) holds GPU 1" in str(err.value)
    lc.cancel(hog)
    lc.kill(model)
    with pytest.raises(lc.exceptions.TaskCancelledError):
        lc.get(hog, timeout=30)
    deadline = time.monotonic() + 30
    while lc.available_resources().get("GPU", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lc.get(gpu_task.remote(), timeout=30) == "ran"  # the slot is free again


@lc.remote
class ArrayMaker:
    def make(self, n: int) -> "object":
        import numpy as np

        return np.arange(n, dtype="float64")


@lc.remote
def total(a: "object") -> float:
    return float(a.sum())  # type: ignore[attr-defined]


def test_large_actor_results_stay_on_the_worker_and_feed_tasks(cluster: lc.Session) -> None:
    maker = ArrayMaker.remote()
    big = maker.make.remote(300_000)  # 2.4 MB: above the inline limit, kept on the worker as a Dask key
    assert lc.get(big, timeout=30).shape == (300_000,)
    assert lc.get(total.remote(big), timeout=30) == float(sum(range(300_000)))
    small = maker.make.remote(10)  # inline, then scattered under the same key when a task needs it
    assert lc.get(total.remote(small), timeout=30) == 45.0
    assert lc.get(small, timeout=30).tolist() == list(map(float, range(10)))


@lc.remote
class AsyncWorker:
    def __init__(self) -> None:
        self.log: list[str] = []

    async def slow(self, tag: str) -> str:
        import asyncio

        self.log.append(f"start {tag}")
        await asyncio.sleep(1.0)  # wide enough that both calls start first, even on a loaded machine
        self.log.append(f"end {tag}")
        return tag

    def history(self) -> list[str]:
        return self.log


def test_async_methods_interleave_on_the_actors_event_loop(cluster: lc.Session) -> None:
    actor = AsyncWorker.remote()
    assert lc.get([actor.slow.remote("a"), actor.slow.remote("b")], timeout=30) == ["a", "b"]
    # both started before either ended: the calls interleaved at their awaits, in submission order
    assert lc.get(actor.history.remote(), timeout=30) == ["start a", "start b", "end a", "end b"]


@lc.remote
class Doubler:
    def double(self, x: int) -> int:
        return 2 * x


@lc.remote
class Manager:
    """Tree of actors: a method blocks on another actor's result without deadlock."""

    def __init__(self, worker: lc.ActorHandle) -> None:
        self.worker = worker

    def run(self, x: int) -> int:
        return lc.get(self.worker.double.remote(x)) + 1  # type: ignore[no-any-return]


@lc.remote(max_concurrency=2)
class Sleeper:
    def nap(self, seconds: float) -> tuple[float, float]:
        import time

        start = time.time()
        time.sleep(seconds)
        return start, time.time()


def test_actor_pool_map_and_map_unordered(cluster: lc.Session) -> None:
    pool = lc.util.ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(7))) == [0, 2, 4, 6, 8, 10, 12]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(5))) == [0, 2, 4, 6, 8]
    pool.submit(lambda a, v: a.double.remote(v), 21)
    assert pool.has_next() and pool.get_next(timeout=30) == 42 and not pool.has_next()
    with pytest.raises(ValueError, match="at least one actor"):
        lc.util.ActorPool([])


def test_actor_methods_can_get_other_actors_results(cluster: lc.Session) -> None:
    manager = Manager.remote(Doubler.remote())
    assert lc.get([manager.run.remote(i) for i in range(5)], timeout=60) == [1, 3, 5, 7, 9]


def test_max_concurrency_runs_calls_in_parallel_threads(cluster: lc.Session) -> None:
    sleeper = Sleeper.remote()
    (s1, e1), (s2, e2) = lc.get([sleeper.nap.remote(1.0), sleeper.nap.remote(1.0)], timeout=30)
    assert s2 < e1 and s1 < e2  # the two calls overlapped


def test_list_actors_shows_state_class_name_and_resources(cluster: lc.Session) -> None:
    named = Doubler.options(name="listed", num_cpus=1).remote()
    assert lc.get(named.double.remote(1), timeout=30) == 2
    rows = {r["name"]: r for r in lc.list_actors() if r["name"]}
    row = rows["listed"]
    assert row["class_name"] == "Doubler" and row["state"] == "ALIVE"
    assert row["worker"] in {n["NodeName"] for n in lc.nodes()}
    assert row["resources"] == {"CPU": 1.0} and row["restarts"] == 0 and row["pending_calls"] == 0
    lc.kill(named)
    assert {r["name"]: r for r in lc.list_actors() if r["name"]}["listed"]["state"] == "DEAD"
    assert "listed" not in {r["name"] for r in lc.list_actors(state="alive")}  # the living only (any case)
    assert all(r["state"] in ("DEAD", "PENDING") for r in lc.list_actors(state=["DEAD", "PENDING"]))
    with pytest.raises(ValueError, match="unknown actor state.*'GONE'.*PENDING, ALIVE, RESTARTING, DEAD"):
        lc.list_actors(state="gone")


@lc.remote
class WhoAmI:
    def ids(self) -> tuple[str | None, str | None]:
        ctx = lc.get_runtime_context()
        return ctx.get_actor_id(), ctx.get_task_id()


def test_runtime_context_inside_an_actor_names_the_actor(cluster: lc.Session) -> None:
    actor = WhoAmI.remote()
    actor_id, task_id = lc.get(actor.ids.remote(), timeout=30)
    assert actor_id == actor._actor_id and task_id is None
    assert lc.get_runtime_context().get_actor_id() is None  # the driver is no actor


def test_kill_without_no_restart_recreates_the_actor_from_its_constructor(cluster: lc.Session) -> None:
    c = Counter.options(max_restarts=1, max_task_retries=1).remote(10)
    assert lc.get(c.incr.remote(), timeout=30) == 11
    lc.kill(c, no_restart=False)
    assert lc.get(c.incr.remote(), timeout=30) == 11  # a fresh instance: the constructor's state
    assert {r["actor_id"]: r for r in lc.list_actors()}[c._actor_id]["restarts"] == 1
    lc.kill(c, no_restart=False)  # no restarts left: this kill is final
    with pytest.raises(ActorDiedError):
        lc.get(c.incr.remote(), timeout=30)


DRIVER = """
import os, sys
import labcluster as lc

lc.init(address=sys.argv[1])

@lc.remote
class Holder:
    def ping(self):
        return "pong"

owned = Holder.options(name="owned-by-driver", num_cpus=1).remote()
kept = Holder.options(name="detached-from-driver", lifetime="detached").remote()
pg = lc.placement_group([{"CPU": 1}], name="driver-group")
assert lc.get([owned.ping.remote(), kept.ping.remote()], timeout=60) == ["pong", "pong"]
print("actors", flush=True)
assert pg.wait(60), lc.util.placement_group_table()
print("ready", flush=True)
os._exit(0)  # as a kernel that dies: no lc.kill, no remove_placement_group, no goodbye to the scheduler
"""


def test_actors_and_groups_end_with_their_driver_unless_detached(cluster: lc.Session, tmp_path: "object") -> None:
    import subprocess
    import sys
    from pathlib import Path

    from conftest import wait_until

    free_before = lc.available_resources().get("CPU", 0.0)
    script = Path(str(tmp_path)) / "driver.py"
    script.write_text(DRIVER)
    done = subprocess.run([sys.executable, str(script), cluster.address], capture_output=True, text=True, timeout=120)
    assert "ready" in done.stdout, done.stderr[-2000:]

    def state(name: str) -> str | None:
        return next((r["state"] for r in lc.list_actors() if r["name"] == name), None)

    assert wait_until(lambda: state("owned-by-driver") == "DEAD", timeout=30)
    dead = next(r for r in lc.list_actors() if r["name"] == "owned-by-driver")
    assert "disconnected" in dead["error"] and "detached" in dead["error"]
    [group] = [k for k, g in lc.util.placement_group_table().items() if g["name"] == "driver-group"]
    assert wait_until(lambda: lc.util.placement_group_table()[group]["state"] == "REMOVED", timeout=30)
    assert wait_until(lambda: lc.available_resources().get("CPU", 0.0) == free_before, timeout=30)
    kept = lc.get_actor("detached-from-driver")  # the detached actor outlived its driver
    assert lc.get(kept.ping.remote(), timeout=30) == "pong"
    lc.kill(kept)
