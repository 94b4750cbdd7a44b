"""A worker that dies again while Dask looks for it comes back: its Nanny is kept (cluster/spec_cluster.py).

Dask's SpecCluster looks ``lost-worker-timeout`` after a worker left and closed the Nanny if no worker of that
name was registered at that instant, even when the Nanny had restarted it meanwhile and it had just died again.
The timeout is 1 s here (15 s by default), and the second kill is timed to land just before the look."""

import os
import signal
import time
from collections.abc import Iterator

import dask
import pytest
from conftest import wait_until

import labcluster as lc


@lc.remote
def where() -> int:
    return os.getpid()


@pytest.fixture
def one_worker() -> Iterator[None]:
    lc.shutdown()
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):
        lc.init(workers=[lc.WorkerGroup("w", nthreads=1)], include_dashboard=False)
    yield
    lc.shutdown()


def _pid() -> int | None:
    return next((int(n["PID"]) for n in lc.nodes() if n["NodeName"] == "w-0"), None)


def _kill_and_wait_back() -> float:
    """SIGKILL w-0 by its PID; wait for its Nanny's new process; returns when it was killed (monotonic)."""
    victim = _pid()
    assert victim is not None
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: _pid() not in (None, victim), timeout=30), "w-0 did not come back: its Nanny is gone"
    return killed


def test_a_worker_killed_again_just_before_the_lost_worker_look_comes_back(one_worker: None) -> None:
    for delay in (0.7, 0.8, 0.85, 0.9, 0.95):  # around the look, 1 s after the first death
        first = _kill_and_wait_back()
        time.sleep(max(0.0, first + delay - time.monotonic()))
        _kill_and_wait_back()
        time.sleep(1.2)  # every look of this round has run
        assert _pid() is not None
    assert lc.get(where.remote(), timeout=30) == _pid()
