"""Ray Core semantics of tasks and objects on a real heterogeneous cluster (process workers)."""

import asyncio
import gc
import threading
import time

import pytest

import labcluster as lc
from labcluster.exceptions import TaskCancelledError


@lc.remote
def square(x: int) -> int:
    return x * x


@lc.remote(num_cpus=1)
def add(a: int, b: int) -> int:
    return a + b


@lc.remote
def slow(x: float, seconds: float) -> float:
    time.sleep(seconds)
    return x


@lc.remote
def describe(value: object) -> str:
    return type(value).__name__


@lc.remote(num_returns=3)
def three() -> tuple[int, int, int]:
    return 1, 2, 3


def test_bare_and_optioned_decorators_and_direct_call_error(hetero: lc.Session) -> None:
    assert lc.get(square.remote(7)) == 49
    with pytest.raises(TypeError, match=r"Instead of running 'square\(\)', try 'square.remote\(\)'"):
        square(3)
    heavier = square.options(num_cpus=2, name="sq2")
    assert heavier.task_options.num_cpus == 2 and square.task_options.num_cpus == 1  # a copy
    ref = heavier.remote(3)
    assert ref.key.startswith("sq2-") and lc.get(ref) == 9
    with pytest.raises(TypeError, match="unknown option 'num_gpu'.*valid options are: .*num_gpus"):
        square.options(num_gpu=1)
    with pytest.raises(TypeError, match="either no arguments"):
        lc.remote(1)  # type: ignore[call-overload]


def test_get_preserves_shape_order_and_duplicates(hetero: lc.Session) -> None:
    refs = [square.remote(i) for i in range(20)]
    assert lc.get(refs) == [i * i for i in range(20)]
    assert lc.get((refs[3], refs[3], refs[1])) == [9, 9, 1]
    assert lc.get([]) == []
    with pytest.raises(TypeError, match="ObjectRef or a list of ObjectRefs"):
        lc.get(42)  # type: ignore[call-overload]


def test_put_get_and_refs_as_arguments(hetero: lc.Session) -> None:
    data = list(range(10))
    ref = lc.put(data)
    assert lc.get(ref) == data  # a list stays one object
    assert ref.key.startswith("put-") and lc.get(lc.put({"a": 1})) == {"a": 1}  # so does a dict
    assert lc.get(add.remote(lc.put(2), square.remote(3))) == 11  # top-level refs arrive as values
    assert lc.get(describe.remote(ref)) == "list"
    assert lc.get(describe.remote([ref])) == "list"
    with pytest.raises(TypeError, match="ObjectRef is not allowed"):
        lc.put(ref)


@lc.remote
def unwrap(holder: dict) -> int:
    inner = holder["ref"]
    assert isinstance(inner, lc.ObjectRef), type(inner)
    return lc.get(inner) + 1


def test_nested_refs_stay_refs(hetero: lc.Session) -> None:
    ref = square.remote(4)
    assert lc.get(unwrap.remote({"ref": ref})) == 17


def test_num_returns(hetero: lc.Session) -> None:
    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert lc.get(refs) == [1, 2, 3]
    bad = three.options(num_returns=2).remote()
    with pytest.raises(ValueError, match="num_returns=2 but returned 3 values"):
        lc.get(bad[0])


def test_wait_returns_ready_and_not_ready_in_input_order(hetero: lc.Session) -> None:
    fast = [slow.remote(i, 0) for i in range(3)]
    late = slow.remote(99, 3)
    refs = [late, *fast]
    ready, not_ready = lc.wait(refs, num_returns=2, timeout=10)
    assert len(ready) == 2 and ready == [r for r in refs if r in ready]  # input order
    assert late in not_ready and len(not_ready) == 2
    ready, not_ready = lc.wait(refs, num_returns=4, timeout=0.1)
    assert late in not_ready and ready == fast
    with pytest.raises(ValueError, match="unique"):
        lc.wait([late, late])
    with pytest.raises(ValueError, match="num_returns must be between 1 and"):
        lc.wait(fast, num_returns=5)
    lc.cancel(late)


def test_cancel(hetero: lc.Session) -> None:
    blocker = slow.options(num_cpus=2).remote(0, 1.5)
    queued = slow.options(num_cpus=2).remote(1, 0)  # waits for blocker's two slots
    lc.cancel(queued)
    with pytest.raises(TaskCancelledError, match="was cancelled"):
        lc.get(queued, timeout=10)
    done = square.remote(5)
    assert lc.get(done) == 25
    lc.cancel(done)  # finished: a no-op, as in Ray
    assert lc.get(done) == 25
    assert lc.get(blocker) == 0


@lc.remote
def interval(tag: str, seconds: float) -> tuple[str, float, float, int]:
    start = time.time()
    time.sleep(seconds)
    return tag, start, time.time(), threading.get_ident()


def test_num_cpus_2_never_shares_a_2_slot_worker(hetero: lc.Session) -> None:
    wide = interval.options(num_cpus=2).remote("wide", 0.6)
    narrow = [interval.remote(f"n{i}", 0.2) for i in range(4)]
    results = lc.get([wide, *narrow])
    _, w_start, w_end, _ = results[0]
    # the CPU worker has the cluster's only CPU slots (2): no narrow task may overlap the wide one, which holds both
    overlapping = [tag for tag, start, end, _ in results[1:] if start < w_end and end > w_start]
    assert overlapping == []
    nodes = {n["NodeName"]: n["NodeID"] for n in lc.nodes()}
    assert {w for r in [wide, *narrow] for w in hetero.client.who_has([r.future])[r.key]} == {nodes["cpu-0"]}


def test_object_ref_repr_hash_and_await(hetero: lc.Session) -> None:
    ref = square.remote(6)
    assert lc.get(ref) == 36
    assert repr(ref).startswith(f"ObjectRef({ref.key}, state=finished") and "function=square" in repr(ref)
    html = ref._repr_html_()
    assert "finished" in html and "held by: cpu-0" in html  # names the worker holding it, by its name
    assert len({ref, ref}) == 1 and ref.hex() == ref.key

    async def main() -> int:
        return await square.remote(8)

    assert asyncio.run(main()) == 64


def test_available_resources_drop_while_a_task_holds_slots(hetero: lc.Session) -> None:
    assert lc.available_resources()["CPU"] == 2
    ref = slow.options(num_cpus=2).remote(0, 1.5)
    from conftest import wait_until

    assert wait_until(lambda: lc.available_resources().get("CPU", 0) == 0, timeout=10)
    lc.get(ref)
    assert wait_until(lambda: lc.available_resources().get("CPU") == 2, timeout=10)


def test_runtime_context_on_driver_and_in_task(hetero: lc.Session) -> None:
    ctx = lc.get_runtime_context()
    assert ctx.get_task_id() is None and ctx.get_job_id()
    assert lc.get_gpu_ids() == []

    @lc.remote(num_gpus=1)
    def inside() -> tuple[str | None, str, list[int]]:
        c = lc.get_runtime_context()
        return c.get_task_id(), c.get_node_id(), lc.get_gpu_ids()

    ref = inside.remote()
    task_id, node, gpus = lc.get(ref)
    assert task_id == ref.key and gpus == [0]
    assert node == next(n["NodeID"] for n in lc.nodes() if n["GPUMode"] == "simulated")


def test_wait_on_many_refs_returns_exactly_num_returns_in_input_order(hetero: lc.Session) -> None:
    refs = [square.remote(i) for i in range(600)]
    ready, not_ready = lc.wait(refs, num_returns=300, timeout=60)
    assert len(ready) == 300 and len(not_ready) == 300
    position = {r: i for i, r in enumerate(refs)}
    assert [position[r] for r in ready] == sorted(position[r] for r in ready)
    assert set(ready).isdisjoint(not_ready) and set(ready) | set(not_ready) == set(refs)
    ready, not_ready = lc.wait(refs, num_returns=600, timeout=60)
    assert ready == refs and not_ready == []


def test_refs_dropped_after_long_waits_free_their_results_without_garbage_collection(hetero: lc.Session) -> None:
    # get and wait wait in steps of 0.5 s; a step that ended by cancellation once left the refs in a reference
    # cycle, so their results stayed on the workers until a full collection (1,000 of 2,000 keys after 60 s)
    from conftest import wait_until

    from labcluster.api.calls import call

    client = hetero.client
    gc.collect()
    gc.disable()
    try:
        refs = [slow.remote(i, 0.3) for i in range(8)]
        keys = [r.key for r in refs]
        assert lc.get(refs, timeout=30) == list(range(8))  # several steps: more tasks than free CPU slots
        more = [slow.remote(i, 0.3) for i in range(8)]
        keys += [r.key for r in more]
        lc.wait(more, num_returns=8, timeout=30)
        assert lc.get(more) == list(range(8))  # no timeout: the watched gather
        del refs, more
        assert wait_until(lambda: set(call(client, "key_states", keys=keys).values()) == {"forgotten"}, 10)
    finally:
        gc.enable()


def test_lambdas_and_recursive_remote_functions(hetero: lc.Session) -> None:
    double = lc.remote(lambda x: 2 * x)
    ref = double.remote(21)
    assert ref.key.startswith("lambda-") and lc.get(ref) == 42


@lc.remote
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return lc.get_runtime_context().get_node_id()


def test_cpu_tasks_never_take_a_gpu_workers_thread_so_gpu_work_never_waits_behind_them(hetero: lc.Session) -> None:
    nodes = {n["NodeID"]: n for n in lc.nodes()}
    cpu_work = [nap.remote(0.5) for _ in range(4)]
    gpu_task = nap.options(num_gpus=1).remote(0.1)
    ran = lc.get(cpu_work, timeout=60)
    assert {nodes[w]["GPUMode"] for w in ran} == {"none"}  # every CPU task ran on the CPU worker
    assert nodes[lc.get(gpu_task, timeout=60)]["GPUMode"] == "simulated"
    rows = {r["key"]: r for r in lc.list_tasks(function="nap")}
    last_cpu_start = max(rows[r.key]["started"] for r in cpu_work)
    assert rows[gpu_task.key]["started"] < last_cpu_start  # it did not queue behind the CPU work


def test_a_gpu_bundle_runs_cpu_and_gpu_work_on_its_gpu_worker(hetero: lc.Session) -> None:
    # Ray's shape: a CPU bundle next to a CPU+GPU one. The GPU worker has no CPU slots, so the second bundle reserves
    # its GPU only, and work placed there (a CPU task too, num_cpus=1 by default) runs on its thread
    pg = lc.placement_group([{"CPU": 1}, {"CPU": 1, "GPU": 1}], strategy="STRICT_SPREAD")
    try:
        lc.get(pg.ready(), timeout=30)
        assert pg.bundle_specs == [{"CPU": 1.0}, {"GPU": 1.0}]
        names = {n["NodeID"]: n["NodeName"] for n in lc.nodes()}
        ran = [nap.options(placement_group=pg, bundle_index=i).remote(0) for i in range(2)]
        on_gpu = nap.options(num_gpus=1, placement_group=pg, bundle_index=1).remote(0)
        assert [names[w] for w in lc.get([*ran, on_gpu], timeout=30)] == ["cpu-0", "gpu-0", "gpu-0"]
    finally:
        lc.remove_placement_group(pg)


@lc.remote(num_cpus=2)
def started_at() -> float:
    t = time.time()
    time.sleep(0.005)
    return t


def test_tasks_start_in_the_order_they_were_submitted(hetero: lc.Session) -> None:
    # one at a time on the 2-slot worker; submitted within Dask's default fifo_timeout (100 ms) they would share a
    # priority and start in the order of their random keys
    starts = lc.get([started_at.remote() for _ in range(20)], timeout=60)
    assert starts == sorted(starts)
