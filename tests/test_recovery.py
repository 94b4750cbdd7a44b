"""Lineage-based recovery, seen in the task records: a worker process is SIGKILLed (by PID) and the lost
results that still have refs are rebuilt; the records say which tasks re-ran and why."""

import os
import signal
import time
from collections.abc import Iterator

import pytest

import labcluster as lc
from labcluster.exceptions import GetTimeoutError, ObjectLostError, ObjectReconstructionFailedError


@lc.remote
def step(x: int) -> int:
    return x + 1


@lc.remote
def leaf(i: int) -> int:
    return i * i


@lc.remote
def total(*parts: int) -> int:
    return sum(parts)


@pytest.fixture(scope="module")
def two_sides() -> Iterator[None]:
    lc.shutdown()
    lc.init(workers=[lc.WorkerGroup("left", nthreads=2, resources={"left": 1}),
                     lc.WorkerGroup("right", nthreads=2, resources={"right": 1})], include_dashboard=False)
    yield
    lc.shutdown()


def _side(i: int) -> dict[str, float]:
    return {"left": 1} if i % 2 == 0 else {"right": 1}


def _held_only_by(worker_name: str, refs: list[lc.ObjectRef]) -> set[str]:
    address = next(n["NodeID"] for n in lc.nodes() if n["NodeName"] == worker_name)
    who = lc.current_session().client.who_has([r.future for r in refs])
    return {k for k, holders in who.items() if set(holders) == {address}}


def _kill(worker_name: str, wait: bool = True) -> None:
    from conftest import wait_until

    victim = next(n for n in lc.nodes() if n["NodeName"] == worker_name)
    os.kill(victim["PID"], signal.SIGKILL)
    # the Nanny starts a fresh process under the same name
    assert not wait or wait_until(lambda: any(n["NodeName"] == worker_name and n["PID"] != victim["PID"] for n in lc.nodes()),
                      timeout=60)


def _reconstructed(since: int) -> dict[str, dict[str, object]]:
    return {r["key"]: r for r in lc.list_tasks(since=since) if r["reconstruction"]}


def _next_index() -> int:
    rows = lc.list_tasks()
    return int(rows[-1]["index"]) + 1 if rows else 0


def test_a_200_task_chain_rebuilds_exactly_what_the_killed_worker_held(two_sides: None) -> None:
    # the first half runs on the right worker, the second on the left: killing the left loses the second half
    # (Dask copies an input to where its dependent runs, so step 99 also lives on the left; Dask's active memory
    # manager may drop either of its two copies a moment later, so the left may be its only holder)
    ref = step.options(resources={"right": 1}).remote(-1)
    chain = [ref]
    for i in range(1, 200):
        ref = step.options(resources={"right": 1} if i < 100 else {"left": 1}).remote(ref)
        chain.append(ref)
    assert lc.get(chain[-1], timeout=60) == 199
    held = _held_only_by("left-0", chain)
    second_half = {r.key for r in chain[100:]}
    assert second_half <= held <= second_half | {chain[99].key}
    since = _next_index()
    _kill("left-0", wait=False)  # get at once: the client may still think the results are on the dead worker
    assert lc.get(chain, timeout=120) == list(range(200))
    rebuilt = _reconstructed(since)
    assert set(rebuilt) == held  # the records name exactly the lost results, rebuilt once each
    odd = [(r["attempt"], r["reason"]) for r in rebuilt.values() if r["attempt"] != 2 or "lost with worker" not in str(r["reason"])]
    assert not odd
    graph = lc.lineage(chain[-1])
    assert set(graph.reconstructed) == held and len(graph.tasks.nodes) == 200
    assert "reconstructed" in graph._repr_html_()


def test_a_64_way_fan_in_rebuilds_its_lost_leaves_and_reduce(two_sides: None) -> None:
    leaves = [leaf.options(resources=_side(i)).remote(i) for i in range(64)]
    reduced = total.options(resources={"left": 1}).remote(*leaves)
    assert lc.get(reduced, timeout=60) == sum(i * i for i in range(64))
    held = _held_only_by("left-0", [*leaves, reduced])
    assert len(held) == 33  # 32 leaves and the reduce
    since = _next_index()
    _kill("left-0")
    assert lc.get(reduced, timeout=120) == sum(i * i for i in range(64))
    # (this test's keys only: once in a full CI run a result of the chain test above was still wanted when this
    # test killed the worker, and was rebuilt too -- see the issue 4 notes)
    ours = {r.key for r in [*leaves, reduced]}
    assert set(_reconstructed(since)) & ours == held
    stages = lc.lineage(reduced).stages.to_dict()
    by_group = {n["group"]: n for n in stages["nodes"]}
    assert by_group["leaf"]["count"] == 64 and by_group["leaf"]["reconstructed"] == 32
    assert stages["edges"] == [{"source": "leaf", "target": "total", "count": 64}]


@lc.remote
def nap(x: int) -> int:
    time.sleep(2)
    return x


def test_a_task_whose_worker_dies_mid_run_is_retried_and_the_records_say_why(two_sides: None) -> None:
    ref = nap.options(resources={"left": 1}).remote(5)
    deadline = time.monotonic() + 30
    while not any(r["key"] == ref.key and r["state"] == "running" for r in lc.list_tasks()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _kill("left-0", wait=False)
    assert lc.get(ref, timeout=120) == 5
    first, second = [r for r in lc.list_tasks() if r["key"] == ref.key]
    assert first["state"] == "interrupted" and "died while running it" in str(first["error"])
    assert first["worker_name"] == "left-0" and "worker left-0 died" in str(first["error"])  # by name
    assert first["worker"] not in {n["NodeID"] for n in lc.nodes()}  # that process is gone; its Nanny made another
    assert second["state"] == "finished" and second["attempt"] == 2 and not second["reconstruction"]
    assert str(second["reason"]).startswith("retry: worker") and "attempt 1" in str(second["reason"])


def test_a_lost_put_raises_object_lost_error_within_two_seconds(two_sides: None) -> None:
    data = lc.put(list(range(1000)))
    holder = lc.current_session().client.who_has([data.future])[data.key]
    name = next(n["NodeName"] for n in lc.nodes() if n["NodeID"] in holder)
    victim = next(n for n in lc.nodes() if n["NodeName"] == name)
    os.kill(victim["PID"], signal.SIGKILL)
    from conftest import wait_until

    started = time.monotonic()  # at once: the scheduler may not even have noticed yet
    with pytest.raises(ObjectLostError) as info:
        lc.get(data, timeout=30)
    assert time.monotonic() - started < 2.0
    assert data.key in str(info.value) and "lc.put" in str(info.value)
    # Dask leaves a future "lost" (not cancelled) when its gather from the dead worker failed first: CI once
    # waited out the whole timeout there. Put the future in that state and check again, with and without one.
    state = data.future._state

    async def lose() -> None:  # on the client's loop, where Dask itself would do it
        state.lose()

    for wait_for in (None, 30):
        lc.current_session().client.sync(lose)
        started = time.monotonic()
        with pytest.raises(ObjectLostError):
            lc.get(data, timeout=wait_for)
        assert time.monotonic() - started < 2.0
    ready, _ = lc.wait([data], timeout=30)  # a lost object counts as ready (getting it raises), as in Ray
    assert ready == [data]
    assert wait_until(lambda: len(lc.nodes()) == 2, timeout=60)


def test_reconstruction_past_max_retries_raises(two_sides: None) -> None:
    ref = leaf.options(resources={"left": 1}, max_retries=1).remote(7)
    assert lc.get(ref, timeout=60) == 49
    _kill("left-0")
    assert lc.get(ref, timeout=60) == 49  # one reconstruction is allowed
    _kill("left-0")
    with pytest.raises(ObjectReconstructionFailedError, match="max_retries=1"):
        lc.get(ref, timeout=60)


def test_a_key_not_yet_known_to_the_scheduler_is_not_called_lost(two_sides: None) -> None:
    # a get of many tasks can watch keys whose update-graph the scheduler has not processed yet: pending there
    # means "wait", never ObjectLostError (seen on a separate scheduler process with 2,000 tasks in flight)
    from distributed import Future

    from labcluster.api.fetching import _gather_watched

    session = lc.current_session()
    unknown: Future[int] = Future("leaf-00000000000000000000000000000000", session.client)
    assert unknown.status == "pending"
    with pytest.raises(TimeoutError):  # still waiting after three checks of the keys' states
        session.client.sync(_gather_watched, session, [unknown], None, callback_timeout=1.6)


def test_get_gives_up_at_its_timeout_when_the_worker_holding_a_ready_result_stops_answering(two_sides: None) -> None:
    # a SIGSTOPped worker accepts connections and never answers: Dask's gather from it would wait far longer
    ref = leaf.options(resources={"left": 1}).remote(3)
    assert lc.wait([ref], timeout=60)[0] == [ref]
    victim = next(n for n in lc.nodes() if n["NodeName"] == "left-0")
    os.kill(victim["PID"], signal.SIGSTOP)
    try:
        with pytest.raises(GetTimeoutError, match="fetching 1/1 ready object") as info:
            lc.get(ref, timeout=2)
    finally:
        os.kill(victim["PID"], signal.SIGCONT)
    assert info.value.timeout == 2
    assert lc.get(ref, timeout=60) == 9  # the worker answers again: nothing was lost


def test_a_get_with_timeout_zero_of_ready_results_returns_them(two_sides: None) -> None:
    ref = leaf.options(resources={"right": 1}).remote(4)
    assert lc.wait([ref], timeout=60)[0] == [ref]
    assert lc.get(ref, timeout=0) == 16  # Ray programs poll this way: ready means fetched, not timed out
