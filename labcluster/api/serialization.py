"""How values travel: checked at ``.remote()``, and sent as one object.

- **Fail at ``.remote()``**, not later on a worker, when a function or argument cannot be pickled. Arguments are
  checked with pickle protocol 5 and an out-of-band buffer callback, so numpy arrays and pandas frames are not
  copied: the check costs microseconds, not a second copy of the data. It also measures each argument, so the
  large ones can travel as objects rather than inside the task graph (``labcluster.inline-argument-bytes``).
- **One object, not one per element.** distributed serialises a Python list, tuple, dict or set element by
  element (400,000 ints: 19 s to scatter, 34 s to fetch, where ``pickle`` takes 0.01 s). A put object, a task's
  result and an actor call's result of those types travel in a :class:`Box`: pickled as one object, with numpy
  buffers still out of band. ``lc.get`` and task arguments unwrap it; ``ref.future.result()`` (raw Dask) shows it.

>>> unbox(box([1, 2, 3]))
[1, 2, 3]
>>> box(7)
7
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle
from dask.sizeof import sizeof

from ..exceptions import SerializationError

#: the types distributed would serialise element by element
COLLECTIONS = (list, tuple, dict, set, frozenset)


Pickled = tuple[bytes, list[Any]]  # a pickle (protocol 5) and its out-of-band buffers


def pickled(obj: Any) -> Pickled:
    """``obj`` pickled with protocol 5, numpy and pandas buffers out of band (not copied); raises what pickling
    raises."""
    buffers: list[Any] = []
    data = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return data, buffers


def nbytes(p: Pickled) -> int:
    return len(p[0]) + sum(memoryview(b).nbytes for b in p[1])


class Box:
    """A collection that travels as one pickled object (see the module docstring).

    It can hold its value, or its pickle and no value yet (:meth:`of_pickled`): ``lc.put`` pickles a value once, to
    check it, and sends that pickle; a worker that receives it keeps it as it is and unpickles it only when a task
    reads ``value``, and sends it on to ``lc.get`` without pickling it again.
    """

    __slots__ = ("_pickled", "_value")

    def __init__(self, value: Any) -> None:
        self._value = value
        self._pickled: Pickled | None = None

    @classmethod
    def of_pickled(cls, p: Pickled) -> Box:
        box = cls.__new__(cls)
        box._value, box._pickled = _NOTHING, (p[0], list(p[1]))
        return box

    @property
    def value(self) -> Any:
        if self._value is _NOTHING:
            assert self._pickled is not None
            data, buffers = self._pickled
            self._value = pickle.loads(data, buffers=buffers)
        return self._value

    def __reduce__(self) -> tuple[Any, ...]:
        if self._pickled is None:
            return (Box, (self._value,))
        data, buffers = self._pickled  # the buffers travel out of band again
        return (_box_of_pickled, (data, [pickle.PickleBuffer(b) for b in buffers]))

    def __sizeof__(self) -> int:
        return nbytes(self._pickled) if self._pickled is not None and self._value is _NOTHING else int(
            sizeof(self._value))

    def __repr__(self) -> str:
        if self._value is _NOTHING:
            return f"Box(pickled, {len(self._pickled[0]) if self._pickled else 0} bytes)"
        return f"Box({type(self._value).__name__} of {len(self._value)})"


_NOTHING = object()


def _box_of_pickled(data: bytes, buffers: list[Any]) -> Box:
    return Box.of_pickled((data, buffers))


@sizeof.register(Box)  # type: ignore[untyped-decorator]
def _sizeof_box(b: Box) -> int:  # the scheduler's memory accounting sees the contents, not the wrapper
    return int(b.__sizeof__())


def box(value: Any, p: Pickled | None = None) -> Any:
    """``value`` in a :class:`Box` when it is a collection distributed would split up (from its pickle ``p``, when
    it was pickled already); else as it is."""
    if type(value) not in COLLECTIONS:
        return value
    return Box.of_pickled(p) if p is not None else Box(value)


def unbox(value: Any) -> Any:
    return value.value if type(value) is Box else value


def item(boxed: Any, index: int) -> Any:
    """Element ``index`` of a (boxed) sequence, boxed again: a task with ``num_returns > 1`` splits its result so."""
    return box(unbox(boxed)[index])


def _size(obj: Any) -> int:
    """Bytes ``obj`` pickles to, out-of-band buffers included (raises what pickling raises)."""
    return nbytes(pickled(obj))


def check_function(fn: Callable[..., Any], what: str) -> None:
    """Raise SerializationError naming the captured variable that cannot be pickled."""
    try:
        _size(fn)
        return
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
    culprit = f"function {getattr(fn, '__qualname__', fn)!r}"
    try:
        captured = inspect.getclosurevars(fn)
    except (TypeError, ValueError):
        raise SerializationError(what, culprit, reason) from None
    for kind, names in (("closure variable", captured.nonlocals), ("global", captured.globals)):
        for name, value in names.items():
            try:
                _size(value)
            except Exception as e:
                culprit = f"the {kind} {name!r} ({type(value).__name__}) used by {getattr(fn, '__qualname__', fn)!r}"
                reason = f"{type(e).__name__}: {e}"
                raise SerializationError(what, culprit, reason) from None
    raise SerializationError(what, culprit, reason)


_SMALL = (int, float, str, bytes, bool, type(None))


def check_arguments(args: Sequence[Any], kwargs: Mapping[str, Any], what: str,
                    name_arguments: bool = True) -> dict[int | str, Pickled]:
    """Raise SerializationError naming the first argument (or, without ``name_arguments``, the value's type) that
    cannot be pickled; returns the pickle of each argument that is not a small scalar (by position or name)."""
    sizes: dict[int | str, Pickled] = {}
    labelled: list[tuple[int | str, str, Any]] = [(i, f"argument {i}", a) for i, a in enumerate(args)]
    labelled += [(k, f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for where, label, value in labelled:
        if isinstance(value, _SMALL) and not (isinstance(value, (str, bytes)) and len(value) > 4096):
            continue
        try:
            sizes[where] = pickled(value)
        except Exception as e:
            culprit = f"{label} ({type(value).__name__})" if name_arguments else type(value).__name__
            raise SerializationError(what, culprit, f"{type(e).__name__}: {e}") from None
    return sizes
