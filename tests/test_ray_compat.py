"""What Ray programs rely on, on a real cluster: async actors, borrowed refs, generator tasks, Ray's names.

The last test runs Ray-shaped programs of our own, unguarded (no ``if __name__ == "__main__":``), as scripts in
subprocesses, with ``import labcluster as ray``: what Ray's own example programs look like.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import labcluster as lc
from labcluster.api.serialization import Box


@pytest.fixture(scope="module")
def cluster() -> Iterator[lc.Session]:
    lc.shutdown()
    yield lc.init(num_cpus=3, include_dashboard=False)
    lc.shutdown()


@lc.remote
class Signal:
    """Ray's signal-actor pattern: a plain method sets the event an async method waits on."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()

    def send(self) -> None:
        self.ready.set()

    async def wait(self) -> str:
        await self.ready.wait()
        return "woken"


def test_an_async_actors_plain_methods_run_on_its_event_loop(cluster: lc.Session) -> None:
    signal = Signal.remote()
    waiting = signal.wait.remote()
    time.sleep(0.3)
    assert not waiting.done()
    lc.get(signal.send.remote(), timeout=30)
    assert lc.get(waiting, timeout=30) == "woken"  # in Ray both kinds run on the actor's loop; it used to hang


@lc.remote
def double(x: int) -> int:
    return 2 * x


@lc.remote
class Dispatcher:
    async def fan_out(self, n: int) -> list[int]:
        refs = [double.remote(i) for i in range(n)]  # .remote() inside an async method: the worker's session
        return [await ref for ref in refs]


def test_remote_calls_inside_an_async_actor_method(cluster: lc.Session) -> None:
    assert lc.get(Dispatcher.remote().fan_out.remote(4), timeout=60) == [0, 2, 4, 6]


@lc.remote
def make_and_return_a_ref(n: int) -> dict[str, lc.ObjectRef]:
    return {"data": lc.put(list(range(n)))}


def test_a_ref_put_inside_a_task_outlives_the_task(cluster: lc.Session) -> None:
    outer = make_and_return_a_ref.remote(5)
    inner = lc.get(outer, timeout=30)["data"]
    del outer  # the task's result (and the worker's own ref) may go now: this process holds the object
    time.sleep(0.5)
    assert lc.get(inner, timeout=30) == [0, 1, 2, 3, 4]


@lc.remote
def identity(x: object) -> object:
    return x


def test_collections_travel_as_one_object(cluster: lc.Session) -> None:
    big = list(range(400_000))
    ref = lc.put(big)
    assert isinstance(ref.future.result(timeout=30), Box)  # one pickled object, not 400,000 frames
    assert lc.get(ref, timeout=60) == big
    assert lc.get(identity.remote(ref), timeout=60) == big
    assert lc.get(identity.remote({"a": (1, 2), "b": {3}}), timeout=30) == {"a": (1, 2), "b": {3}}


def test_large_arguments_travel_as_objects_not_in_the_graph(cluster: lc.Session) -> None:
    blob = b"x" * 300_000  # over labcluster.inline-argument-bytes
    ref = identity.remote(blob)
    assert lc.get(ref, timeout=30) == blob
    row = next(r for r in lc.list_tasks(function="identity") if r["key"] == ref.key)
    assert any(dep.startswith("put-") for dep in row["deps"])  # it was put first, and is a dependency


@lc.remote
class Splitter:
    @lc.method(num_returns=2)
    def halves(self, xs: list[int]) -> tuple[list[int], list[int]]:
        return xs[: len(xs) // 2], xs[len(xs) // 2:]


def test_actor_methods_with_num_returns(cluster: lc.Session) -> None:
    left, right = Splitter.remote().halves.remote([1, 2, 3, 4])
    assert lc.get([left, right], timeout=30) == [[1, 2], [3, 4]]


@lc.remote
class Named:
    def where(self) -> str:
        return "here"


def test_namespaces_scope_named_actors(cluster: lc.Session) -> None:
    Named.options(name="svc", namespace="team-a").remote()
    assert lc.get(lc.get_actor("svc", namespace="team-a").where.remote(), timeout=30) == "here"
    with pytest.raises(ValueError, match="no actor named 'svc' exists in namespace 'team-b'"):
        lc.get_actor("svc", namespace="team-b")
    Named.options(name="svc", namespace="team-b").remote()  # the same name in another namespace is another actor


@lc.remote(num_returns="streaming")
def count_up(n: int, pause: float) -> Iterator[int]:
    for i in range(n):
        time.sleep(pause)
        yield i


@lc.remote(num_returns="dynamic")
def chunks(n: int) -> Iterator[list[int]]:
    for i in range(n):
        yield [i] * i


def test_generator_tasks_streaming_and_dynamic(cluster: lc.Session) -> None:
    stream = count_up.remote(4, 0.3)
    first = next(stream)
    assert lc.get(first, timeout=30) == 0 and not stream.completed().done()  # before the task is done
    assert first.key.startswith("count_up-0-")  # named after its task and which value it is, not "put"
    assert [lc.get(r, timeout=30) for r in stream] == [1, 2, 3]
    assert lc.get(stream.completed(), timeout=30) == 4
    assert "ObjectRefGenerator" in stream._repr_html_() and "4 value(s) read" in stream._repr_html_()
    with pytest.raises(TypeError, match="iterate it"):
        lc.get(stream)
    generator = lc.get(chunks.remote(3), timeout=30)
    assert [lc.get(r, timeout=30) for r in generator] == [[], [1], [2, 2]]
    assert [r.key.rsplit("-", 1)[0] for r in generator] == ["chunks-0", "chunks-1", "chunks-2"]


@lc.remote
def until_cancelled() -> None:
    while not lc.get_runtime_context().is_canceled():
        time.sleep(0.05)
    Path("/tmp/labcluster-test-cancelled").write_text("seen")


def test_a_running_task_can_see_that_it_was_cancelled(cluster: lc.Session) -> None:
    marker = Path("/tmp/labcluster-test-cancelled")
    marker.unlink(missing_ok=True)
    ref = until_cancelled.remote()
    time.sleep(0.5)
    with pytest.warns(UserWarning, match=r"force=True\) does not interrupt a task that is already running") as seen:
        lc.cancel(ref, force=True)  # Ray would kill the worker: here the task is told, and its result dropped
    assert seen[0].filename == __file__  # the warning points at the caller's line
    with pytest.raises(lc.exceptions.TaskCancelledError):
        lc.get(ref, timeout=30)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "seen"
    assert not lc.get_runtime_context().is_canceled()  # the driver is no task
    returned = lc.get(lc.remote(lambda: lc.get_runtime_context()).remote(), timeout=30)  # travels without its worker
    assert returned.get_task_id() and not returned.is_canceled()


@lc.remote
class Looper:
    def loop(self) -> str:
        context, seen = lc.get_runtime_context(), threading.Event()

        def watch() -> None:  # a helper thread of the call asks about the call the context was made in
            while not context.is_canceled():
                time.sleep(0.05)
            seen.set()

        threading.Thread(target=watch, daemon=True).start()
        return "saw it" if seen.wait(30) else "never told"

    def ping(self) -> str:
        return "pong"


def test_a_running_actor_call_can_see_that_it_was_cancelled(cluster: lc.Session) -> None:
    actor = Looper.remote()
    assert lc.get(actor.ping.remote(), timeout=30) == "pong"
    ref = actor.loop.remote()
    time.sleep(0.3)
    lc.cancel(ref)
    with pytest.raises(lc.exceptions.TaskCancelledError):
        lc.get(ref, timeout=30)
    assert lc.get(actor.ping.remote(), timeout=10) == "pong"  # the call ended early: the actor is free again
    lc.kill(actor)


def test_rays_names() -> None:
    from labcluster import exceptions
    from labcluster.actor import ActorHandle
    from labcluster.util.placement_group import get_placement_group, placement_group, placement_group_table

    assert exceptions.RayTaskError is exceptions.TaskError and exceptions.RayActorError is exceptions.ActorDiedError
    assert issubclass(exceptions.TaskCancelledError, exceptions.TaskError)
    assert ActorHandle is lc.ActorHandle and placement_group is lc.placement_group
    assert callable(get_placement_group) and callable(placement_group_table) and callable(lc.method)


def test_placement_groups_by_name_and_their_table(cluster: lc.Session) -> None:
    from labcluster.util.placement_group import get_placement_group, placement_group_table

    pg = lc.placement_group([{"CPU": 1}], name="reserved")
    try:
        assert pg.wait(30)
        found = get_placement_group("reserved")
        assert found.id == pg.id and placement_group_table(found)["state"] == "CREATED"
    finally:
        lc.remove_placement_group(pg)


PROGRAMS = {
    "tasks-and-borrowed-refs": """
        import labcluster as ray
        ray.init(num_cpus=2, include_dashboard=False)

        @ray.remote
        def produce(n):
            return [ray.put(i * i) for i in range(n)]

        @ray.remote
        def total(refs):
            return sum(ray.get(refs))

        refs = ray.get(produce.remote(4))
        print(ray.get(total.remote(refs)), ray.get(refs[-1]))
        ready, rest = ray.wait([produce.remote(1) for _ in range(3)], num_returns=2, timeout=30)
        print(len(ready), len(rest))
    """,
    "async-actor-signal": """
        import asyncio
        import labcluster as ray
        ray.init(num_cpus=2, include_dashboard=False)

        @ray.remote
        class SignalActor:
            def __init__(self):
                self.ready_event = asyncio.Event()
            def send(self, clear=False):
                self.ready_event.set()
                if clear:
                    self.ready_event.clear()
            async def wait(self, should_wait=True):
                if should_wait:
                    await self.ready_event.wait()

        @ray.remote
        def wait_and_go(signal):
            ray.get(signal.wait.remote())
            return "go"

        signal = SignalActor.remote()
        tasks = [wait_and_go.remote(signal) for _ in range(2)]
        ray.get(signal.send.remote())
        print(ray.get(tasks))
    """,
    "exceptions-defined-here": """
        import labcluster as ray
        ray.init(num_cpus=2, include_dashboard=False)

        class MyError(Exception):
            pass

        @ray.remote
        def fail():
            raise MyError("from the worker")

        try:
            ray.get(fail.remote())
        except MyError as e:
            print("caught MyError", isinstance(e, ray.exceptions.RayTaskError))
    """,
    "tree-of-tasks-and-generators": """
        import labcluster as ray
        ray.init(num_cpus=2, include_dashboard=False)

        @ray.remote
        def partial_sum(xs):
            if len(xs) <= 1000:
                return sum(xs)
            mid = len(xs) // 2
            return sum(ray.get([partial_sum.remote(xs[:mid]), partial_sum.remote(xs[mid:])]))

        @ray.remote(num_returns="streaming")
        def squares(n):
            for i in range(n):
                yield i * i

        print(ray.get(partial_sum.remote(list(range(8000)))), [ray.get(r) for r in squares.remote(4)])
    """,
    "actor-pool-and-named-actors": """
        import labcluster as ray
        from labcluster.util import ActorPool
        ray.init(num_cpus=2, include_dashboard=False)

        @ray.remote
        class Worker:
            def work(self, x):
                return x + 100

        pool = ActorPool([Worker.remote(), Worker.remote()])
        print(sorted(pool.map_unordered(lambda a, v: a.work.remote(v), range(4))))
        Worker.options(name="w", get_if_exists=True).remote()
        print(ray.get(ray.get_actor("w").work.remote(1)))
        ray.shutdown()
    """,
}

EXPECTED = {
    "tasks-and-borrowed-refs": ["14 9", "2 1"],
    "async-actor-signal": ["['go', 'go']"],
    "exceptions-defined-here": ["caught MyError True"],
    "tree-of-tasks-and-generators": ["31996000 [0, 1, 4, 9]"],
    "actor-pool-and-named-actors": ["[100, 101, 102, 103]", "101"],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_ray_shaped_programs_run_unguarded_as_scripts(name: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(PROGRAMS[name]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == EXPECTED[name], out.stdout + out.stderr[-2000:]
