"""Where a user's call enters labcluster: its errors surface at the caller's line.

labcluster's own errors (:class:`~labcluster.exceptions.LabclusterError`: an infeasible request, an unpicklable
argument, a failed task, a timeout, a cluster that is gone) are raised deep in the machinery, and each message
names the problem and the fix. What the user needs is that message under their own line, not the frames in
between (Ray shows the same). :func:`entry` re-raises such an error from the public function, without those
frames; pytest hides the public function's own frame too (``__tracebackhide__``), IPython shows it as the one
last frame (it never hides the frame that raised). Other exceptions
(a bug of ours) keep their whole traceback.

With ``inputs=True`` (what builds a Dataset: its sources and operators), the ``ValueError``, ``TypeError``,
``KeyError`` and ``FileNotFoundError`` that a ``raise`` of labcluster's raises about a bad argument surface so too;
one raised in other code (a user's function being pickled), or by an operation of ours that failed (a bug), keeps
its frames.

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
import linecache
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from ..exceptions import LabclusterError
from . import scopes

F = TypeVar("F", bound=Callable[..., Any])


#: the errors a bad argument raises (``entry(inputs=True)``)
_INPUT_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@overload
def entry(fn: F) -> F: ...
@overload
def entry(*, interrupted: str | None = None, inputs: bool = False) -> Callable[[F], F]: ...


def entry(fn: F | None = None, *, interrupted: str | None = None, inputs: bool = False) -> Any:
    """Decorate a public function or method (see the module docstring). ``interrupted``: what to say when the call
    is interrupted, e.g. ``"the tasks keep running: lc.cancel(ref) stops one"``; ``inputs``: labcluster's own
    errors about bad arguments surface at the caller's line too."""
    if fn is None:
        return functools.partial(entry, interrupted=interrupted, inputs=inputs)
    wrapped = fn

    @functools.wraps(wrapped)
    def call(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            return wrapped(*args, **kwargs)
        except LabclusterError as e:
            raise e.with_traceback(None) from e.__cause__  # labcluster's error, at your call: read its message
        except _INPUT_ERRORS as e:
            bad = _bad_call(wrapped, args, kwargs, e)
            if bad is not None:
                raise bad from None
            if not inputs or not _raised_here(e):
                raise
            raise e.with_traceback(None) from e.__cause__  # labcluster's error, at your call: read its message
        except KeyboardInterrupt:
            if interrupted is None:
                raise
            said = scopes.interrupted() or interrupted  # in a notebook cell: what the cell started is cancelled
            raise KeyboardInterrupt(f"{_public_name(wrapped)} was interrupted; {said}") from None

    return cast(F, call)


#: keywords of Ray's that labcluster spells otherwise: the name to use instead
RAY_NAMES = {"parallelism": "override_num_blocks (Ray Data's newer name for parallelism)"}


def _bad_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], e: BaseException
              ) -> TypeError | None:
    """The error for a call whose arguments do not fit ``fn``'s signature (an unknown keyword: its closest valid
    name and every valid one), raised at the caller's line; None if ``e`` came from inside ``fn``."""
    import difflib
    import inspect

    if not isinstance(e, TypeError) or e.__traceback__ is None or e.__traceback__.tb_next is not None:
        return None  # raised inside fn, not by the call itself
    try:
        signature = inspect.signature(fn)
        signature.bind(*args, **kwargs)
    except TypeError:
        pass
    except ValueError:  # no signature to read
        return None
    else:
        return None
    name = _public_name(fn)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    shown, star = [], False
    for p in params:
        if p.kind == p.KEYWORD_ONLY and not star:
            shown.append("*")
            star = True
        shown.append(p.name if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else
                     f"{'*' if p.kind == p.VAR_POSITIONAL else '**'}{p.name}")
    listed = f"{name}({', '.join(shown)})"
    unknown = next((k for k in kwargs if k not in signature.parameters), None)
    if unknown is not None and not any(p.kind == p.VAR_KEYWORD for p in params):
        if unknown in RAY_NAMES:
            return TypeError(f"{name}() has no keyword {unknown!r}: use {RAY_NAMES[unknown]}")
        close = difflib.get_close_matches(unknown, [p.name for p in params], n=1, cutoff=0.6)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return TypeError(f"{name}() has no keyword {unknown!r}{guess}; it takes {listed}")
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    given = len(args) - (len(signature.parameters) - len(params))  # less the self a method is given
    if given > len(positional) and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return TypeError(f"{name}() takes {len(positional)} positional argument(s), {given} given; it takes "
                         f"{listed}")
    return TypeError(f"{name}(): {str(e).split('() ', 1)[-1]}; it takes {listed}")


def _raised_here(e: BaseException) -> bool:
    """Whether a ``raise`` statement of labcluster's raised ``e`` (its innermost frame is in the package, at a
    ``raise``): an error about an argument. Not one that code labcluster called raised, nor one of an operation of
    ours failing (a bug: it keeps its frames)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    filename = tb.tb_frame.f_code.co_filename
    if not os.path.abspath(filename).startswith(_PACKAGE + os.sep):
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise ")


def _public_name(fn: Any) -> str:
    """What the user called: ``lc.get``, ``lc.data.range``, ``Dataset.take`` (a method keeps its class)."""
    qualname = getattr(fn, "__qualname__", "the call") if not isinstance(fn, str) else fn
    if "." in qualname:
        return str(qualname)
    module = getattr(fn, "__module__", "") or ""
    return f"lc.data.{qualname}" if module.startswith("labcluster.data") else f"lc.{qualname}"
