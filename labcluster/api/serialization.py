"""Fail at ``.remote()`` -- not later on a worker -- when a function or argument cannot be pickled.

Arguments are checked with pickle protocol 5 and an out-of-band buffer callback, so numpy arrays and
pandas frames are not copied: the check costs microseconds, not a second copy of the data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle

from ..exceptions import SerializationError


def _dumps(obj: Any) -> None:
    buffers: list[Any] = []
    cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)


def check_function(fn: Callable[..., Any], what: str) -> None:
    """Raise SerializationError naming the captured variable that cannot be pickled."""
    try:
        _dumps(fn)
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
                _dumps(value)
            except Exception as e:
                culprit = f"the {kind} {name!r} ({type(value).__name__}) used by {getattr(fn, '__qualname__', fn)!r}"
                reason = f"{type(e).__name__}: {e}"
                raise SerializationError(what, culprit, reason) from None
    raise SerializationError(what, culprit, reason)


def check_arguments(args: Sequence[Any], kwargs: Mapping[str, Any], what: str, name_arguments: bool = True) -> None:
    """Raise SerializationError naming the first argument (or, without ``name_arguments``, the value's type)
    that cannot be pickled."""
    for label, value in [*((f"argument {i}", a) for i, a in enumerate(args)),
                         *((f"keyword argument {k!r}", v) for k, v in kwargs.items())]:
        if isinstance(value, (int, float, str, bytes, bool, type(None))):
            continue
        try:
            _dumps(value)
        except Exception as e:
            culprit = f"{label} ({type(value).__name__})" if name_arguments else type(value).__name__
            raise SerializationError(what, culprit, f"{type(e).__name__}: {e}") from None
