"""Generator tasks, as Ray has them: a remote function that ``yield``\\ s values makes one object per value.

- ``num_returns="dynamic"``: ``f.remote()`` returns one ref; ``lc.get`` of it gives a
  :class:`DynamicObjectRefGenerator`, which iterates over a ref per yielded value (the task ran to its end first).
- ``num_returns="streaming"``: ``f.remote()`` returns an :class:`ObjectRefGenerator` at once, which yields a ref per
  value *as the task yields it*: the first value can be used while the task still runs.

On the worker, each value is put into the cluster as it is yielded (``generate``). A dynamic task returns the
refs; a streaming one pushes each key to the scheduler extension (``labcluster_stream_push``), which makes the
caller a holder of the object at once, and the caller's generator reads the keys in order.

>>> @lc.remote(num_returns="streaming")                                 # doctest: +SKIP
... def tokens(text):
...     for word in text.split():
...         yield word.upper()
>>> [lc.get(ref) for ref in tokens.remote("a b c")]                    # doctest: +SKIP
['A', 'B', 'C']
"""

from __future__ import annotations

import contextlib
import html
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from .. import config
from ..exceptions import ObjectLostError
from .boundary import entry
from .calls import call
from .fetching import values
from .objects import put_in
from .refs import ObjectRef
from .session import Session

DYNAMIC, STREAMING = "dynamic", "streaming"


class DynamicObjectRefGenerator:
    """The refs a ``num_returns="dynamic"`` task yielded, in order (what ``lc.get`` of its ref returns)."""

    def __init__(self, refs: Iterable[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"

    def _repr_html_(self) -> str:
        return (f"<div><strong>DynamicObjectRefGenerator</strong>: {len(self._refs)} values, each an ObjectRef "
                f"(iterate it; <code>lc.get(ref)</code> each)</div>")


class ObjectRefGenerator:
    """The refs a ``num_returns="streaming"`` task yields, each as soon as the task yields it.

    Iterating waits for the next value (in steps of ``labcluster.wait-step``, watching the cluster); it ends when
    the task returns, and raises the task's error if it fails. ``completed()`` is the ref of the task itself.
    """

    def __init__(self, session: Session, task: ObjectRef) -> None:
        self._session = session
        self._task = task
        self._read = [0]  # shared with the finalizer, which must not hold this object
        self._done = False
        self._closer = weakref.finalize(self, _close, session, task.key, self._read)

    def completed(self) -> ObjectRef:
        """The ref of the generator task itself (finished once it returned)."""
        return self._task

    def __iter__(self) -> ObjectRefGenerator:
        return self

    @entry(interrupted="the generator task keeps running: next() again for its next value")
    def __next__(self) -> ObjectRef:
        if self._done:
            raise StopIteration
        if self._session.closed:
            raise ObjectLostError(self._task.key, *ObjectLostError.SHUT_DOWN)
        step = config.seconds("wait-step")
        while True:
            answer = call(self._session.client, "stream_next", stream=self._task.key, index=self._read[0],
                          timeout=step)
            if "key" in answer:
                self._read[0] += 1
                return ObjectRef.from_key(answer["key"], self._task._function)
            if answer.get("done") or self._task.done():
                if not answer.get("done"):
                    values(self._session, [self._task], None)  # the task failed: raise its error
                    continue  # it finished after pushing its last key: read the rest
                self._done = True
                self._closer()
                raise StopIteration
            self._session.check()

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task.key}, {self._read[0]} read{', done' if self._done else ''})"

    def _repr_html_(self) -> str:
        state = "done" if self._done else ("shut down" if self._session.closed else self._task.state)
        color = {"done": "#2a7f2a", "finished": "#2a7f2a", "error": "#b00020", "pending": "#8a6d00"}.get(state, "#555")
        return (f"<div><strong>ObjectRefGenerator</strong> of <code>{html.escape(self._task.key)}</code> "
                f"<span style='color:{color}'>{html.escape(state)}</span> &middot; {self._read[0]} value(s) read "
                f"(iterate it for a ref per value, as the task yields them)</div>")


def _close(session: Session, stream: str, read: list[int]) -> None:
    """The caller is done with the stream: let the scheduler forget it (and the objects never read)."""
    if not session.closed:
        with contextlib.suppress(Exception):  # the cluster is gone already: nothing to let go of
            call(session.client, "stream_close", stream=stream, read=read[0], owner=str(session.client.id))


def generate(session: Session, values_: Iterable[Any], mode: str, owner: str | None, stream: str | None,
             name: str = "generator") -> Any:
    """On the worker: put each value the generator yields (keyed ``<name>-<i>-<hex>``: the function and which
    value); a dynamic task returns the refs, a streaming one pushes each key (its caller, ``owner``, holds it from
    then on) and returns how many it yielded."""
    if mode == DYNAMIC:
        return DynamicObjectRefGenerator([put_in(session, v, name=f"{name}-{i}") for i, v in enumerate(values_)])
    count = 0
    for value in values_:
        ref = put_in(session, value, name=f"{name}-{count}")
        call(session.client, "stream_push", stream=stream, key=ref.key, owner=owner)
        count += 1
    call(session.client, "stream_push", stream=stream, done=True)
    return count
