"""Every error a newcomer can hit: its type, its message (what, what arrived, the fix), and its speed."""

import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest

import labcluster as lc
from labcluster.exceptions import (
    GetTimeoutError,
    InfeasibleResourceError,
    ObjectLostError,
    SerializationError,
    TaskError,
)


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


@lc.remote
def explode(code: int) -> None:
    raise CustomError(code)


@lc.remote
def fail_key() -> None:
    {}["missing"]


def test_task_exception_is_task_error_and_the_users_type(hetero: lc.Session) -> None:
    ref = explode.remote(7)
    with pytest.raises(CustomError) as info:
        lc.get(ref)
    err = info.value
    assert isinstance(err, TaskError) and isinstance(err, CustomError)
    assert err.code == 7  # the user's attributes still work
    assert "raise CustomError(code)" in err.traceback_str and "in explode" in err.traceback_str
    assert err.worker in {n["NodeID"] for n in lc.nodes()} and err.pid
    assert "task 'explode' failed on worker" in str(err)
    assert "CustomError: code 7" in ref._repr_html_()  # the failed ref shows what failed
    with pytest.raises(KeyError):
        lc.get(fail_key.remote())
    # a failure propagates to dependents with the original type
    with pytest.raises(CustomError):
        lc.get(explode.options(name="again").remote(lc.put(1)))


@lc.remote
def dependent(x: object) -> object:
    return x


def test_dependents_of_a_failed_task_fail_with_its_error(hetero: lc.Session) -> None:
    with pytest.raises(CustomError, match="code 3"):
        lc.get(dependent.remote(explode.remote(3)))


def test_unpicklable_function_fails_at_remote_naming_the_culprit(hetero: lc.Session) -> None:
    lock = threading.Lock()

    @lc.remote
    def uses_lock() -> bool:
        with lock:
            return True

    started = time.monotonic()
    with pytest.raises(SerializationError, match=r"closure variable 'lock' \(lock\)") as info:
        uses_lock.remote()
    assert isinstance(info.value, TypeError)
    assert "Create it inside the task" in str(info.value)
    assert time.monotonic() - started < 2


def test_unpicklable_argument_fails_at_remote(hetero: lc.Session) -> None:
    with pytest.raises(SerializationError, match=r"keyword argument 'x' \(lock\)"):
        dependent.remote(x=threading.Lock())
    with pytest.raises(SerializationError, match=r"argument 0 \(generator\)"):
        dependent.remote(i for i in range(3))


@lc.remote(num_gpus=1)
def on_gpu() -> int:
    return 1


def test_infeasible_requests_fail_fast_listing_the_cluster(shutdown_after: None) -> None:
    lc.init(num_cpus=2, processes=False)  # no GPU worker at all
    started = time.monotonic()
    with pytest.raises(InfeasibleResourceError) as info:
        on_gpu.remote()
    assert time.monotonic() - started < 2
    msg = str(info.value)
    assert "asks for {GPU: 1}" in msg and "cpu-0: {CPU: 2}" in msg and "num_gpus=1" in msg
    with pytest.raises(InfeasibleResourceError, match="asks for {CPU: 3}"):
        dependent.options(num_cpus=3).remote(1)
    with pytest.raises(InfeasibleResourceError, match="special"):
        dependent.options(resources={"special": 1}).remote(1)
    assert lc.get(dependent.options(num_cpus=2).remote(5)) == 5


def test_infeasible_can_be_a_warning_for_autoscaling_clusters(shutdown_after: None) -> None:
    lc.init(num_cpus=1, processes=False)
    with dask.config.set({"labcluster.infeasible": "warn"}), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ref = on_gpu.remote()
    warned = [w for w in seen if "asks for {GPU: 1}" in str(w.message)]
    assert warned and warned[0].filename == __file__  # the user's line, not labcluster's
    assert ref.state == "pending"
    lc.cancel(ref)
    from labcluster.api import feasibility

    with dask.config.set({"labcluster.infeasible": "warn"}), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        feasibility.check_all(lc.current_session(), [({"GPU": 2}, "dataset operator 'MapBatches(f)'")])
    assert [w.filename for w in seen if "asks for {GPU: 2}" in str(w.message)] == [__file__]  # a Dataset's path

    class Model:
        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            return batch

    # a GPU pool on a cluster without GPUs: one warning for the one problem (not one per check on the way)
    settings = {"labcluster.infeasible": "warn", "labcluster.actors.start-timeout": "1s"}
    with dask.config.set(settings), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(lc.exceptions.ActorDiedError, match="did not start within 1s"):
            lc.data.range(4).map_batches(Model, num_gpus=3, concurrency=1).take_all()
    said = [str(w.message) for w in seen]
    assert len(said) == 1 and said[0].startswith("dataset operator 'MapBatches(Model)' asks for {GPU: 3}"), said


@lc.remote
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def test_get_timeout_raises_and_the_task_keeps_running(hetero: lc.Session) -> None:
    ref = sleepy.remote(1.5)
    started = time.monotonic()
    with pytest.raises(GetTimeoutError, match=r"1/1 object\(s\) not ready; the tasks keep running") as info:
        lc.get(ref, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 1.5
    assert lc.get(ref, timeout=30) == "done"


def test_unknown_options_list_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown option 'num_cpu' \(did you mean 'num_cpus'\?\); valid options are: bundle_index"):
        lc.remote(num_cpu=1)
    with pytest.raises(ValueError, match="num_gpus must be a number >= 0"):
        lc.remote(num_gpus=-1)
    with pytest.raises(ValueError, match="use num_cpus= / num_gpus= instead"):
        lc.remote(resources={"GPU": 1})
    with pytest.raises(TypeError, match="retry_exceptions must be"):
        lc.remote(retry_exceptions=["ValueError"])


class Flaky(Exception):
    pass


@lc.remote(max_retries=3, retry_exceptions=[Flaky])
def flaky(counter: str, failures: int) -> int:
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < failures:
        raise Flaky(f"attempt {n}")
    return n


@lc.remote(max_retries=3, retry_exceptions=True)
def flaky_any(counter: str) -> int:
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    raise ValueError(f"attempt {n}")


def test_application_exceptions_are_retried_only_when_asked(hetero: lc.Session, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert lc.get(flaky.remote(str(tmp_path / "a"), 2)) == 2  # third attempt succeeds
        with pytest.raises(Flaky, match="attempt 3"):
            lc.get(flaky.remote(str(tmp_path / "b"), 10))  # 1 try + 3 retries
        assert (tmp_path / "b").read_text() == "4"
        with pytest.raises(ValueError, match="attempt 3"):
            lc.get(flaky_any.remote(str(tmp_path / "c")))
        no_retry = flaky.options(retry_exceptions=False)
        with pytest.raises(Flaky, match="attempt 0"):
            lc.get(no_retry.remote(str(tmp_path / "d"), 1))
        with pytest.raises(ValueError, match="attempt 0"):  # other exception types are not retried
            lc.get(flaky.options(retry_exceptions=[KeyError]).remote(str(tmp_path / "e"), 1)
                   if False else flaky_any.options(retry_exceptions=[KeyError]).remote(str(tmp_path / "e")))


def test_a_script_needs_no_main_guard(tmp_path: Path) -> None:
    # Ray's examples have none: the workers are started by the cluster's head process, never from this script
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text("import labcluster as lc\nprint('top level ran', flush=True)\n"
                      "lc.init(num_cpus=1, include_dashboard=False)\n"
                      "print(lc.get(lc.remote(lambda: 41).remote()) + 1)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["top", "level", "ran", "42"]  # the script's top level ran once, in this process


def test_put_of_something_unpicklable_and_get_after_shutdown(shutdown_after: None) -> None:
    lc.init(num_cpus=1, processes=False)
    with pytest.raises(SerializationError, match=r"lc.put\(\) value to a worker: lock cannot be pickled"):
        lc.put(threading.Lock())
    ref = dependent.remote(1)
    assert lc.get(ref) == 1
    lc.shutdown()
    lc.init(num_cpus=1, processes=False)
    with pytest.raises(ObjectLostError, match="its session was shut down"):
        lc.get(ref, timeout=5)


def test_get_of_a_ref_from_a_shut_down_session_starts_nothing(shutdown_after: None) -> None:
    from labcluster.exceptions import ObjectLostError

    lc.init(num_cpus=1, processes=False)
    ref = dependent.remote(1)
    assert lc.get(ref) == 1
    lc.shutdown()
    with pytest.raises(ObjectLostError, match="its session was shut down"):
        lc.get(ref)  # at once: no default cluster is started just to say the object is gone
    with pytest.raises(ObjectLostError, match="its session was shut down"):
        lc.wait([ref], timeout=5)
    assert not lc.is_initialized()
    lc.init(num_cpus=1, processes=False)
    kept = lc.data.range(4).map(lambda r: {"x": r["id"]}).materialize()
    lc.shutdown()
    with pytest.raises(ObjectLostError, match="a materialized dataset whose session was shut down.*materialize the "
                                              "dataset again"):
        kept.take(2)  # a dataset's kept blocks: the same, at once
    assert not lc.is_initialized()


def test_code_from_stdin_can_start_process_workers() -> None:
    import subprocess
    import sys

    code = ("import labcluster as lc\n"
            "lc.init(num_cpus=1, include_dashboard=False)\n"
            "print(lc.get(lc.remote(lambda: 41).remote()) + 1)\n"
            "lc.shutdown()\n")
    out = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "42"


def test_a_generator_and_a_ref_after_shutdown_say_the_session_is_gone(shutdown_after: None) -> None:
    lc.init(num_cpus=1, processes=False)
    ref = sleepy.remote(0)
    lc.get(ref)
    stream = countdown.remote(2)
    lc.shutdown()
    assert "state=shut down" in repr(ref) and "shut down" in ref._repr_html_()
    with pytest.raises(ObjectLostError, match="its session was shut down"):
        next(stream)  # not an AttributeError of a closed client
    assert not lc.is_initialized()  # and nothing was started to say so


@lc.remote(num_returns="streaming")
def countdown(n: int) -> Iterator[int]:
    yield from range(n, 0, -1)
