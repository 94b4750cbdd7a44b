"""Tasks that submit tasks and block on them, on a worker with a single slot (Ray hands the slot back)."""

import labcluster as lc


@lc.remote
def square(x: int) -> int:
    return x * x

@lc.remote(num_cpus=1)
def fan_out(n: int) -> int:
    # submits children and blocks on them from inside a task
    return sum(lc.get([square.remote(i) for i in range(n)]))


@lc.remote(num_cpus=1)
def tree(depth: int) -> int:
    if depth == 0:
        return 1
    return sum(lc.get([tree.remote(depth - 1), tree.remote(depth - 1)]))


def test_tasks_submit_and_get_inside_tasks_without_deadlock(shutdown_after: None) -> None:
    # one worker, one slot: the parent must hand its slot back while it waits, as Ray does
    lc.init(workers=[lc.WorkerGroup("cpu", n=1, nthreads=1)], include_dashboard=False)
    assert lc.get(fan_out.remote(5), timeout=30) == sum(i * i for i in range(5))
    assert lc.get(tree.remote(3), timeout=60) == 8




@lc.remote(num_cpus=1)
def twice(n: int) -> int:
    # blocks twice in one task: the slot goes back and forth each time
    first = lc.get(square.remote(n))
    ready, _ = lc.wait([square.remote(n + 1)], timeout=30)
    return first + lc.get(ready[0])


def test_blocking_twice_in_one_task(shutdown_after: None) -> None:
    lc.init(workers=[lc.WorkerGroup("cpu", n=1, nthreads=1)], include_dashboard=False)
    assert lc.get(twice.remote(3), timeout=30) == 9 + 16
    assert lc.get([twice.remote(i) for i in range(3)], timeout=60) == [i * i + (i + 1) ** 2 for i in range(3)]
