"""Shared variables: broadcast variables (a ``put``) and accumulators (tasks add, the driver reads).

- :class:`Broadcast`: ``sc.broadcast(v)`` puts ``v`` in the object store once. A task that uses ``b.value`` fetches
  it once per worker process (later tasks there read the local copy); ``unpersist()`` drops those copies,
  ``destroy()`` the object too.
- :class:`Accumulator`: a task's ``acc += x`` adds to a copy of its own; when the task ends well, what it added
  goes to the driver through a Dask ``Queue`` on the scheduler (sent before the task returns, so an action's
  updates are all there when the action returns), and ``acc.value`` in the driver merges what came. As in Spark,
  a task that is run again (its worker died) may add twice; only actions' updates are meant to be counted.

>>> AddingParam().addInPlace(2, 3), AddingParam().zero(5.0)
(5, 0.0)
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import cloudpickle

import labcluster as lc

from ..api.refs import ObjectRef
from ..api.session import current_worker

_ids = itertools.count()

# -- broadcast ---------------------------------------------------------------------------------------------------

#: a worker process's copies of broadcast values, by object key
_copies: dict[str, Any] = {}
_copies_lock = threading.Lock()


class Broadcast:
    """A read-only value every task can use; made by ``SparkContext.broadcast``."""

    def __init__(self, value: Any = None, *, _ref: ObjectRef | None = None, _bid: int | None = None) -> None:
        self._bid = next(_ids) if _bid is None else _bid
        self._ref = lc.put(value) if _ref is None else _ref
        self._value, self._held = value, _ref is None  # the driver holds the value it broadcast
        self._destroyed = False

    @property
    def value(self) -> Any:
        if self._destroyed:
            raise RuntimeError(f"broadcast variable {self._bid} was destroyed; broadcast the value again")
        if self._held:
            return self._value
        key = self._ref.key
        with _copies_lock:
            if key in _copies:
                return _copies[key]
        value = lc.get(self._ref, timeout=300)
        with _copies_lock:
            return _copies.setdefault(key, value)

    def unpersist(self, blocking: bool = False) -> None:
        """Drop the workers' copies; a task that uses the value again fetches it again."""
        from ..api.start import current_session

        with contextlib.suppress(Exception):  # a worker that left has no copy to drop
            current_session().client.run(_forget, self._ref.key)

    def destroy(self, blocking: bool = False) -> None:
        """Drop every copy and the object itself; the variable cannot be used after."""
        self.unpersist(blocking)
        self._destroyed = True
        self._value = None
        self._ref = None  # type: ignore[assignment]  # the driver's ref was the object's last holder

    def __reduce__(self) -> tuple[Any, ...]:
        if self._destroyed:
            raise RuntimeError(f"broadcast variable {self._bid} was destroyed and cannot be sent to tasks; "
                               f"broadcast the value again")
        return (_rebuild_broadcast, (self._bid, self._ref))

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed or self._ref is None else f"object {self._ref.key}"
        return f"<Broadcast {self._bid}: {state}>"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"


def _rebuild_broadcast(bid: int, ref: ObjectRef) -> Broadcast:
    return Broadcast(_ref=ref, _bid=bid)


def _forget(key: str) -> None:
    with _copies_lock:
        _copies.pop(key, None)


# -- accumulators ------------------------------------------------------------------------------------------------

class AccumulatorParam:
    """How an accumulator's values add up (PySpark's ``AccumulatorParam``): ``zero`` and ``addInPlace``."""

    def zero(self, value: Any) -> Any:
        raise NotImplementedError

    def addInPlace(self, value1: Any, value2: Any) -> Any:
        raise NotImplementedError


class AddingParam(AccumulatorParam):
    """Numbers (and anything with ``+``): PySpark's int, float and complex accumulators."""

    def zero(self, value: Any) -> Any:
        return type(value)() if isinstance(value, (int, float, complex)) else value * 0

    def addInPlace(self, value1: Any, value2: Any) -> Any:
        return value1 + value2


_task = threading.local()
#: the Dask Queues this process sends accumulator updates to (or, in the driver, reads them from), by name
_queues: dict[str, Any] = {}
_queues_lock = threading.Lock()  # the accumulators a running task added to (each task thread its own)


class Accumulator:
    """A value tasks add to and the driver reads; made by ``SparkContext.accumulator``."""

    def __init__(self, value: Any, param: AccumulatorParam | None = None, *, _queue: str | None = None,
                 _aid: int | None = None) -> None:
        self.aid = next(_ids) if _aid is None else _aid
        self.param = param if param is not None else AddingParam()
        self._on_worker = _queue is not None
        self._name = _queue or f"labcluster-spark-accumulator-{self.aid}-{id(self):x}"
        self._value = value
        self._queue: Any = None

    def _channel(self) -> Any:
        if self._queue is None:  # one Queue object per process and accumulator (making one asks the scheduler)
            with _queues_lock:
                queue = _queues.get(self._name)
                if queue is None:
                    from distributed import Queue

                    from ..api.start import current_session

                    queue = _queues[self._name] = Queue(self._name, client=current_session().client)
            self._queue = queue
        return self._queue

    def add(self, term: Any) -> None:
        """Add ``term`` (in a task: to the task's own copy, sent when the task ends)."""
        self._value = self.param.addInPlace(self._value, term)
        if self._on_worker:
            touched = getattr(_task, "touched", None)
            if touched is None:
                raise RuntimeError("an accumulator copy can be added to only inside an RDD task")
            touched[id(self)] = self

    def __iadd__(self, term: Any) -> Accumulator:
        self.add(term)
        return self

    @property
    def value(self) -> Any:
        """The sum so far (in the driver only, as in Spark)."""
        if self._on_worker:
            raise RuntimeError("Accumulator.value cannot be read inside a task; read it in the driver after the "
                               "action")
        if self._queue is not None:  # made once a task carried it
            for blob in self._queue.get(batch=True, timeout=30):
                self._value = self.param.addInPlace(self._value, cloudpickle.loads(blob))
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        if self._on_worker:
            raise RuntimeError("Accumulator.value cannot be set inside a task")
        _ = self.value  # drain what tasks sent, so that it does not land on top of the new value
        self._value = value

    def __reduce__(self) -> tuple[Any, ...]:
        if not self._on_worker:
            self._channel()  # the queue exists before any task sends to it
        return (_rebuild_accumulator, (self.aid, self.param, self._name, self.param.zero(self._value)))

    def __repr__(self) -> str:
        return f"Accumulator<id={self.aid}, value={self._value!r}>"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"


def _rebuild_accumulator(aid: int, param: AccumulatorParam, queue: str, zero: Any) -> Accumulator:
    return Accumulator(zero, param, _queue=queue, _aid=aid)


def _send(touched: dict[int, Accumulator]) -> None:
    for acc in touched.values():
        acc._channel().put(cloudpickle.dumps(acc._value), timeout=60)


@contextlib.contextmanager
def task_scope() -> Iterator[None]:
    """Around a partition task: what it adds to accumulators is sent when it ends well (nothing when it fails)."""
    outer = getattr(_task, "touched", None)
    touched: dict[int, Accumulator] = {}
    _task.touched = touched
    try:
        yield
        if touched and current_worker() is not None:
            _send(touched)
    finally:
        _task.touched = outer
