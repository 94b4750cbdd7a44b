"""Where a user's call enters labcluster: its errors surface at the caller's line.

labcluster's own errors (:class:`~labcluster.exceptions.LabclusterError`: an infeasible request, an unpicklable
argument, a failed task, a timeout, a cluster that is gone) are raised deep in the machinery, and each message
names the problem and the fix. What the user needs is that message under their own line, not the frames in
between (Ray shows the same). :func:`entry` re-raises such an error from the public function, without those
frames; pytest hides the public function's own frame too (``__tracebackhide__``), IPython shows it as the one
last frame (it never hides the frame that raised). Other exceptions
(a bug of ours) keep their whole traceback.

A blocking call that is interrupted (Jupyter's interrupt, Ctrl-C) raises a short ``KeyboardInterrupt`` that says
what keeps running and how to stop it, instead of the frames of the thread wait it was in.

>>> @entry
... def f():
...     raise LabclusterError("the problem; the fix")
>>> try:
...     f()
... except LabclusterError as e:
...     print(e, "| frames:", len(__import__("traceback").extract_tb(e.__traceback__)))
the problem; the fix | frames: 2
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from ..exceptions import LabclusterError
from . import scopes

F = TypeVar("F", bound=Callable[..., Any])


@overload
def entry(fn: F) -> F: ...
@overload
def entry(*, interrupted: str) -> Callable[[F], F]: ...


def entry(fn: F | None = None, *, interrupted: str | None = None) -> Any:
    """Decorate a public function or method (see the module docstring). ``interrupted``: what to say when the call
    is interrupted, e.g. ``"the tasks keep running: lc.cancel(ref) stops one"``."""
    if fn is None:
        return functools.partial(entry, interrupted=interrupted)
    wrapped = fn

    @functools.wraps(wrapped)
    def call(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            return wrapped(*args, **kwargs)
        except LabclusterError as e:
            raise e.with_traceback(None)  # noqa: B904  (the same error, its own cause kept; only the frames go)
        except KeyboardInterrupt:
            if interrupted is None:
                raise
            name = getattr(wrapped, "__qualname__", "the call")
            said = scopes.interrupted() or interrupted  # in a notebook cell: what the cell started is cancelled
            raise KeyboardInterrupt(f"{_public_name(name)} was interrupted; {said}") from None

    return cast(F, call)


def _public_name(qualname: str) -> str:
    """``get`` -> ``lc.get``; ``ObjectRefGenerator.__next__`` stays as it is."""
    return f"lc.{qualname}" if "." not in qualname else qualname
