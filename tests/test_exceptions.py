"""Every labcluster error survives a trip between processes (pickle) with its message and fields."""

import pickle

import pytest

from labcluster import exceptions as ex

CASES = [
    pytest.param(ex.GetTimeoutError(1, 2, 0.5), id="GetTimeoutError"),
    pytest.param(ex.TaskCancelledError("k"), id="TaskCancelledError"),
    pytest.param(ex.WorkerCrashedError("k", "2 deaths"), id="WorkerCrashedError"),
    pytest.param(ex.ObjectLostError("k"), id="ObjectLostError"),
    pytest.param(ex.InfeasibleResourceError("task 'f'", {"GPU": 1}, [("cpu-0", {"CPU": 2})]), id="Infeasible"),
    pytest.param(ex.InfeasibleResourceError.because("pools", {"GPU": 2}, [("gpu-0", {"GPU": 1})]), id="InfeasiblePools"),
    pytest.param(ex.SerializationError("task 'f'", "argument 0 (lock)", "TypeError"), id="SerializationError"),
    pytest.param(ex.WorkerStartTimeout(1, 2, 30), id="WorkerStartTimeout"),
    pytest.param(ex.PlacementGroupInfeasibleError("STRICT_SPREAD", [{"CPU": 1}] * 3, [("w-0", {"CPU": 2})]),
                 id="PlacementGroupInfeasible"),
    pytest.param(ex.ActorDiedError("Counter-1", "it was killed"), id="ActorDiedError"),
    pytest.param(ex.TaskError("f", "Traceback...", ValueError("x"), "tcp://a:1", 7).as_instanceof_cause(),
                 id="TaskError"),
]


@pytest.mark.parametrize("err", CASES)
def test_errors_round_trip_through_pickle(err: Exception) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back).__name__ == type(err).__name__
    assert str(back) == str(err)
    assert {k: v for k, v in vars(back).items() if k != "cause"} == {k: v for k, v in vars(err).items()
                                                                     if k != "cause"}


def test_task_error_is_also_the_cause_type_after_pickling() -> None:
    err = ex.TaskError("f", "tb", KeyError("k")).as_instanceof_cause()
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, KeyError) and isinstance(back, ex.TaskError)


def test_a_bad_argument_surfaces_at_the_callers_line_and_other_errors_keep_their_frames() -> None:
    import traceback

    import labcluster as lc
    from labcluster.api.boundary import entry

    with pytest.raises(ValueError, match="batch_format must be one of") as bad:
        lc.data.range(4).map_batches(lambda b: b, batch_format="x")  # labcluster's raise: the caller's line, one more
    assert [f.name for f in traceback.extract_tb(bad.value.__traceback__)][-2:] == [
        "test_a_bad_argument_surfaces_at_the_callers_line_and_other_errors_keep_their_frames", "call"]

    def users_code() -> None:
        raise ValueError("the user's own")

    @entry(inputs=True)
    def calls_users_code() -> None:
        users_code()

    with pytest.raises(ValueError, match="the user's own") as theirs:
        calls_users_code()
    assert "users_code" in [f.name for f in traceback.extract_tb(theirs.value.__traceback__)]  # its frames kept
