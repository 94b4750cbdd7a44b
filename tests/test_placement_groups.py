"""Placement groups on a real 3-worker cluster: strategies, the gang property, release, bundle placement."""

from collections.abc import Iterator

import pytest
from conftest import wait_until

import labcluster as lc
from labcluster.exceptions import InfeasibleResourceError
from labcluster.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@lc.remote
def where() -> str:
    return lc.get_runtime_context().get_node_id()


@lc.remote(num_cpus=2)
def wide() -> str:
    return lc.get_runtime_context().get_node_id()


@pytest.fixture(scope="module")
def three() -> Iterator[dict[str, str]]:
    lc.shutdown()
    lc.init(workers=[lc.WorkerGroup("w", n=3, nthreads=2)], include_dashboard=False)
    yield {n["NodeID"]: n["NodeName"] for n in lc.nodes()}
    lc.shutdown()


def _workers(pg: lc.PlacementGroup) -> list[str]:
    return list(lc.util.placement_group_table()[pg.id]["workers"])


@pytest.mark.parametrize(("strategy", "n", "distinct"), [
    pytest.param("STRICT_PACK", 2, 1, id="STRICT_PACK"),
    pytest.param("PACK", 2, 1, id="PACK"),
    pytest.param("SPREAD", 3, 3, id="SPREAD"),
    pytest.param("STRICT_SPREAD", 3, 3, id="STRICT_SPREAD"),
])
def test_strategies_place_bundles_and_tasks_run_in_them(three: dict[str, str], strategy: str, n: int,
                                                         distinct: int) -> None:
    pg = lc.placement_group([{"CPU": 1}] * n, strategy=strategy)
    try:
        assert lc.get(pg.ready(), timeout=30) is True
        workers = _workers(pg)
        assert len(workers) == n and len(set(workers)) == distinct
        ran = [three[lc.get(where.options(placement_group=pg, bundle_index=i).remote(), timeout=30)]
               for i in range(n)]
        assert ran == workers  # each task ran in its bundle
        strategy_ran = lc.get(where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote(),
                              timeout=30)
        assert three[strategy_ran] == workers[0]  # Ray's spelling does the same
    finally:
        lc.remove_placement_group(pg)


def test_groups_that_can_never_fit_fail_at_once_naming_the_workers(three: dict[str, str]) -> None:
    with pytest.raises(InfeasibleResourceError, match=r"a different worker for every bundle, and the cluster has 3 "
                                                      r"worker\(s\): w-0: \{CPU: 2\}; w-1: \{CPU: 2\}; w-2"):
        lc.placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")  # more bundles than workers
    with pytest.raises(InfeasibleResourceError):
        lc.placement_group([{"CPU": 3}])  # a bundle bigger than any worker
    with pytest.raises(ValueError, match="strategy must be one of"):
        lc.placement_group([{"CPU": 1}], strategy="TIGHT")


def test_gang_property_one_group_whole_the_other_waits_whole(three: dict[str, str]) -> None:
    first = lc.placement_group([{"CPU": 2}] * 2, strategy="STRICT_SPREAD")
    assert first.wait(30)
    second = lc.placement_group([{"CPU": 2}] * 2, strategy="STRICT_SPREAD")
    try:
        assert not second.wait(1.0)  # only one worker is left: the second waits, whole
        table = lc.util.placement_group_table()
        assert table[first.id]["state"] == "CREATED" and table[second.id]["state"] == "PENDING"
        assert table[second.id]["workers"] == []  # nothing of it is reserved
        assert lc.available_resources().get("CPU", 0) == 2  # the first holds 4 of 6 CPU slots, the second none
        lc.remove_placement_group(first)
        assert second.wait(30)  # created whole once the first is gone
        assert len(set(_workers(second))) == 2
    finally:
        lc.remove_placement_group(first)
        lc.remove_placement_group(second)


def test_reserved_resources_are_not_usable_outside_and_come_back_on_removal(three: dict[str, str]) -> None:
    pg = lc.placement_group([{"CPU": 2}] * 3, strategy="SPREAD")  # every CPU slot of the cluster
    assert pg.wait(30)
    outside = wide.remote()  # needs 2 plain CPU slots: none left outside the group
    ready, _ = lc.wait([outside], timeout=1.0)
    assert ready == []
    inside = lc.get(wide.options(placement_group=pg, bundle_index=1).remote(), timeout=30)
    assert three[inside] == _workers(pg)[1]
    lc.remove_placement_group(pg)
    assert three[lc.get(outside, timeout=30)] in three.values()
    assert wait_until(lambda: lc.available_resources().get("CPU", 0) == 6, timeout=10)
    assert lc.util.placement_group_table()[pg.id]["state"] == "REMOVED"


def test_a_task_asking_more_than_its_bundle_fails_at_once(three: dict[str, str]) -> None:
    pg = lc.placement_group([{"CPU": 1}])
    try:
        with pytest.raises(InfeasibleResourceError, match="bundle 0"):
            wide.options(placement_group=pg, bundle_index=0).remote()
        with pytest.raises(ValueError, match="bundle_index=3 but placement group"):
            where.options(placement_group=pg, bundle_index=3).remote()
    finally:
        lc.remove_placement_group(pg)


def test_the_bundle_error_names_the_implicit_cpu_it_lacks(three: dict[str, str]) -> None:
    pg = lc.placement_group([{"CPU": 1}])
    try:
        with pytest.raises(InfeasibleResourceError) as info:
            where.options(placement_group=pg, resources={"disk": 1}, num_cpus=0).remote()
        assert "lacks {disk: 1}" in str(info.value) and "make the bundle bigger" in str(info.value)
    finally:
        lc.remove_placement_group(pg)
    from labcluster.api.options import TaskOptions
    from labcluster.api.placement import PlacementGroup

    # a task asks for CPU: 1 unless told otherwise (Ray's default): in a {disk: 1} bundle that CPU is what is missing
    disk_bundle = PlacementGroup("d1", [{"disk": 1.0}], "PACK", None, lc.put(True))
    with pytest.raises(InfeasibleResourceError) as info:
        disk_bundle.request_in_bundle(TaskOptions().merged(resources={"disk": 1}).request(), 0)
    message = str(info.value)
    assert "lacks {CPU: 1}" in message and "num_cpus=0" in message and "{CPU: 1, disk: 1}" in message
    # GPU work asks for no CPU slot, so Ray's [{"CPU": 1, "GPU": 1}] and a plain {GPU: 1} bundle both fit it
    gpu_bundle = PlacementGroup("g1", [{"GPU": 1.0}], "PACK", None, lc.put(True))
    assert gpu_bundle.request_in_bundle(TaskOptions().merged(num_gpus=1).request(), 0) == {
        "pg_g1_0_GPU": 1.0}


@lc.remote
class Resident:
    def node(self) -> str:
        return lc.get_runtime_context().get_node_id()


def test_actors_run_inside_a_bundle(three: dict[str, str]) -> None:
    pg = lc.placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    try:
        assert pg.wait(30)
        workers = _workers(pg)
        actors = [Resident.options(placement_group=pg, bundle_index=i).remote() for i in range(2)]
        assert [three[lc.get(a.node.remote(), timeout=30)] for a in actors] == workers
        ray_style = Resident.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)).remote()
        assert three[lc.get(ray_style.node.remote(), timeout=30)] == workers[1]
        for a in [*actors, ray_style]:
            lc.kill(a)
    finally:
        lc.remove_placement_group(pg)


@lc.remote(num_cpus=2)
class WholeWorker:
    def where(self) -> str:
        return str(lc.get_runtime_context().get_node_id())


@lc.remote(num_cpus=2)
def wide_task() -> str:
    import time

    time.sleep(0.05)
    return str(lc.get_runtime_context().get_node_id())


def test_tasks_never_wait_behind_an_actor_while_another_worker_has_room(three: dict[str, str]) -> None:
    # Dask routes by worker totals, so some of these land behind the actor; the spill plugin moves them
    holder = WholeWorker.remote()
    held = lc.get(holder.where.remote(), timeout=30)
    refs = [wide_task.remote() for _ in range(12)]
    ready, pending = lc.wait(refs, num_returns=len(refs), timeout=30)
    assert not pending, f"{len(pending)} tasks stuck behind the actor on {three[held]}"
    assert held not in set(lc.get(ready))
    lc.kill(holder)


@lc.remote(num_cpus=2)
def actor(seconds: float) -> str:  # a user function that happens to share a name with labcluster's plumbing
    import time

    time.sleep(seconds)
    return "done"


@lc.remote
def placement_group_bundle() -> str:
    return "done"


@lc.remote
def pg_x() -> str:
    return "done"


def test_user_functions_named_like_plumbing_are_ordinary_tasks(three: dict[str, str]) -> None:
    # roles are annotations, never key prefixes: these keys read actor-<hex>, placement_group_bundle-<hex>, pg_x-<hex>
    assert lc.get([placement_group_bundle.remote(), pg_x.remote()], timeout=30) == ["done"] * 2
    running = actor.remote(3.0)
    assert wait_until(lambda: any(r["key"] == running.key and r["state"] == "running" for r in lc.list_tasks()), 30)
    pg = lc.placement_group([{"CPU": 2}] * 3, strategy="STRICT_SPREAD")  # every CPU of the cluster
    try:
        # an ordinary running task is not a holder: the group is placed at once (its bundle there starts later)
        assert lc.util.placement_group_table()[pg.id]["state"] == "CREATED"
        assert lc.get(running, timeout=30) == "done"
        assert pg.wait(30)
    finally:
        lc.remove_placement_group(pg)
    functions = {r["function"] for r in lc.list_tasks(state="finished")}
    assert {"actor", "placement_group_bundle", "pg_x"} <= functions  # recorded like any task
