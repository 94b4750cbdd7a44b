"""Faults injected for real: SIGKILL of a worker process, by its PID, while work runs."""

import os
import signal
import threading
import time

import pytest

import labcluster as lc
from labcluster.exceptions import InfeasibleResourceError


@lc.remote
def step(x: int) -> int:
    time.sleep(0.01)
    return x + 1


def test_sigkill_a_worker_during_200_chained_tasks(shutdown_after: None) -> None:
    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1)], include_dashboard=False)
    victim = next(n for n in lc.nodes() if n["NodeName"] == "cpu-1")
    chains = []
    killer_done = {"killed": False}

    def kill_soon() -> None:
        time.sleep(0.6)
        os.kill(victim["PID"], signal.SIGKILL)
        killer_done["killed"] = True

    killer = threading.Thread(target=kill_soon)
    killer.start()
    # two interleaved chains of 100 keep both workers busy, so the victim holds chain results
    for start in (0, 1000):
        ref = step.remote(start - 1)
        chain = [ref]
        for _ in range(99):
            ref = step.remote(ref)
            chain.append(ref)
        chains.append(chain)
    killer.join()
    results = lc.get([r for chain in chains for r in chain], timeout=120)
    assert results == [*range(0, 100), *range(1000, 1100)]
    assert killer_done["killed"]
    # the Nanny brought a fresh worker process back under the same name
    assert {n["NodeName"] for n in lc.nodes()} >= {"cpu-0"}
    assert victim["PID"] not in {n["PID"] for n in lc.nodes()}


def _kill_the_only_worker(session: lc.Session) -> None:
    """SIGKILL the cluster's one worker and return in the gap before its Nanny brings it back: the scheduler lists
    no worker, and no feasible answer from before the death is cached."""
    from conftest import wait_until

    from labcluster.api.feasibility import Feasible

    os.kill(lc.nodes()[0]["PID"], signal.SIGKILL)
    assert wait_until(lambda: not session.client.scheduler_info(n_workers=-1)["workers"], timeout=30, interval=0.005)
    session.part(Feasible).until.clear()


def test_remote_right_after_the_only_worker_died_waits_for_its_restart(shutdown_after: None) -> None:
    # between the scheduler dropping a dead worker and its Nanny starting a new one the cluster has no workers;
    # a request that the cluster's own worker fits is not "infeasible" then: the task waits, as in Ray
    session = lc.init(num_cpus=2, include_dashboard=False)
    assert lc.get(step.remote(0), timeout=30) == 1
    _kill_the_only_worker(session)
    ref = step.remote(1)
    with pytest.raises(InfeasibleResourceError, match="no workers at all"):  # never fits, restart or not
        step.options(num_gpus=1).remote(1)
    assert lc.get(ref, timeout=60) == 2


def test_remote_in_a_restart_gap_of_a_connected_cluster_waits_too(shutdown_after: None) -> None:
    # a cluster lc.init connected to: no spec to consult, so workers this client saw recently count
    from conftest import CLIProcess, free_port

    special = step.options(resources={"special": 1})
    scheduler = CLIProcess("scheduler", "--port", str(free_port()), "--dashboard-address", "")
    worker = None
    try:
        address = scheduler.wait_for_line("labcluster scheduler at").split(" at ")[1].strip()
        worker = CLIProcess("worker", address, "--nthreads", "1", "--gpus", "0", "--resources", "special=1")
        worker.wait_for_line("labcluster worker")
        session = lc.init(address)
        assert lc.get(special.remote(0), timeout=30) == 1
        _kill_the_only_worker(session)
        ref = special.remote(1)  # its Nanny brings the worker back
        with pytest.raises(InfeasibleResourceError, match="no workers at all"):
            step.options(resources={"other": 1}).remote(1)  # no worker ever had it
        assert lc.get(ref, timeout=60) == 2
        lc.shutdown()
    finally:
        if worker is not None:
            worker.stop()
        scheduler.stop()


def test_sigkill_of_the_driver_leaves_no_orphan_workers(tmp_path: "os.PathLike[str]") -> None:
    """A kernel that dies (SIGKILL) must not leave worker processes behind."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import wait_until

    script = Path(tmp_path) / "driver.py"
    script.write_text(
        "import time, labcluster as lc\n"
        "if __name__ == '__main__':\n"
        "    lc.init(num_cpus=2, simulate_gpus=1, include_dashboard=False)\n"
        "    print(' '.join(str(n['PID']) for n in lc.nodes()), flush=True)\n"
        "    time.sleep(120)\n"
    )
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert driver.stdout is not None
        worker_pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(worker_pids) == 2
        assert all(_alive(p) for p in worker_pids)
    finally:
        driver.kill()
        driver.wait(timeout=10)
    assert wait_until(lambda: not any(_alive(p) for p in worker_pids), timeout=20)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@lc.remote
def report_pid_then_sleep(path: str, seconds: float) -> int:
    from pathlib import Path

    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def _kill_runner(path: "os.PathLike[str]", timeout: float = 30) -> int:
    from pathlib import Path

    from conftest import wait_until

    p = Path(path)
    assert wait_until(lambda: p.exists() and p.read_text().strip() != "", timeout=timeout)
    pid = int(p.read_text())
    p.unlink()
    os.kill(pid, signal.SIGKILL)
    return pid


def test_max_retries_per_task_for_worker_deaths(shutdown_after: None, tmp_path: "os.PathLike[str]") -> None:
    from pathlib import Path

    import pytest

    from labcluster.exceptions import WorkerCrashedError

    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1)], include_dashboard=False)
    marker = str(Path(tmp_path) / "pid")
    # max_retries=0: the first death fails it, with the reason
    fragile = report_pid_then_sleep.options(max_retries=0).remote(marker, 30)
    _kill_runner(marker)
    with pytest.raises(WorkerCrashedError, match="1 worker\\(s\\) died while running it and max_retries=0"):
        lc.get(fragile, timeout=60)
    # max_retries=1: survives one death, fails on the second
    once = report_pid_then_sleep.options(max_retries=1).remote(marker, 30)
    first = _kill_runner(marker)
    second = _kill_runner(marker)
    assert first != second
    with pytest.raises(WorkerCrashedError, match="2 worker\\(s\\) died while running it and max_retries=1"):
        lc.get(once, timeout=60)
    # the default (Ray's 3): one death is survived and the task finishes elsewhere
    sturdy = report_pid_then_sleep.remote(marker, 1)
    killed = _kill_runner(marker)
    assert lc.get(sturdy, timeout=60) != killed


@lc.remote
class Restartable:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def pid(self) -> int:
        return os.getpid()


def test_actor_restarts_from_its_constructor_then_runs_out_of_restarts(shutdown_after: None) -> None:
    import pytest

    from labcluster.exceptions import ActorDiedError

    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1)], include_dashboard=False)
    actor = Restartable.options(max_restarts=1, max_task_retries=-1).remote()
    assert lc.get([actor.incr.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
    first_pid = lc.get(actor.pid.remote(), timeout=30)
    os.kill(first_pid, signal.SIGKILL)
    # the call is resent to the restarted actor, whose state is its constructor's
    assert lc.get(actor.incr.remote(), timeout=60) == 1
    second_pid = lc.get(actor.pid.remote(), timeout=30)
    assert second_pid != first_pid
    os.kill(second_pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="no restarts left"):
        lc.get(actor.incr.remote(), timeout=60)


def test_restarts_on_purpose_and_after_a_death_share_max_restarts(shutdown_after: None) -> None:
    import pytest

    from labcluster.exceptions import ActorDiedError

    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1)], include_dashboard=False)
    actor = Restartable.options(max_restarts=1, max_task_retries=-1).remote()
    assert lc.get(actor.incr.remote(), timeout=30) == 1
    lc.kill(actor, no_restart=False)  # the one restart it has
    assert lc.get(actor.incr.remote(), timeout=30) == 1
    os.kill(lc.get(actor.pid.remote(), timeout=30), signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="no restarts left"):
        lc.get(actor.incr.remote(), timeout=60)
    assert {r["actor_id"]: r for r in lc.list_actors()}[actor._actor_id]["state"] == "DEAD"


def test_calls_in_flight_fail_without_max_task_retries(shutdown_after: None) -> None:
    import pytest

    from labcluster.exceptions import ActorDiedError

    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1)], include_dashboard=False)
    actor = Restartable.options(max_restarts=1).remote()
    pid = lc.get(actor.pid.remote(), timeout=30)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="max_task_retries"):
        lc.get(actor.incr.remote(), timeout=60)
    from conftest import wait_until

    def restarted() -> bool:
        try:
            return lc.get(actor.pid.remote(), timeout=30) != pid
        except ActorDiedError:
            return False

    assert wait_until(restarted, timeout=60, interval=0.5)


def test_a_cluster_left_without_workers_says_so_on_get_and_wait(shutdown_after: None) -> None:
    # its only worker retired, and its Nanny with it: nothing will run the task, so waiting would be forever
    import pytest

    from labcluster.exceptions import ClusterError

    session = lc.init(num_cpus=1, include_dashboard=False)
    session.client.retire_workers(close_workers=True)
    with pytest.raises(ClusterError, match=r"no workers left \(they left: cpu-0 \d+s ago\) and none will come back"):
        lc.get(step.remote(1))  # no timeout: it would have waited forever
    with pytest.raises(ClusterError, match="no workers left"):
        lc.wait([step.remote(2)], timeout=30)  # not "the tasks keep running"


@lc.remote
class Sleeper:
    def pid(self) -> int:
        return os.getpid()

    def nap(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@lc.remote
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_the_death_notice_says_what_fails_and_what_is_retried(shutdown_after: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import wait_until

    from labcluster.exceptions import ActorDiedError, WorkerCrashedError

    lc.init(num_cpus=3, include_dashboard=False)
    actor = Sleeper.remote()  # max_restarts=0: dies with its worker
    pid = lc.get(actor.pid.remote(), timeout=30)
    doomed, retried, call = nap.options(max_retries=0).remote(3), nap.remote(0.5), actor.nap.remote(3)
    assert wait_until(lambda: len(lc.list_tasks(state="running", function="nap")) == 2, timeout=30)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashedError, match=r"task 'nap' \(nap-[0-9a-f]{32}\) was running on a worker that died"):
        lc.get(doomed, timeout=60)
    assert lc.get(retried, timeout=60) == 0.5
    with pytest.raises(ActorDiedError) as info:
        lc.get(call, timeout=60)
    assert "ConnectionPool" not in str(info.value) and "max_restarts=N" in str(info.value)
    said = capsys.readouterr().out
    assert ("labcluster: worker cpu-0 died; restarting it; 1 task(s) it was running will be retried; 1 task(s) it "
            "was running fail: no retries left (max_retries); actor(s) Sleeper die: no restarts left") in said, said
