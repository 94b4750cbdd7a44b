"""Progress bars for waits on refs: ``lc.get(refs, progress=True)``, ``lc.wait(..., progress=True)``.

A bar counts the refs that are done (and how many of those failed) from a background thread, so it moves while
the caller blocks, and ends in a final state: ``done``, ``failed`` (with the count), ``cancelled`` (interrupted)
or ``timed out``. In a terminal the bar is tqdm's. The notebook layer installs its own bars (ipywidgets) with
:func:`install` and asks for them to appear by themselves once a wait lasts ``labcluster.progress.auto-after``
(``progress=None``, the default); ``progress=False`` never shows one.

>>> with tracked([], "lc.get", True):
...     pass
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from .. import config


class Bar(Protocol):
    """One bar, as :func:`tracked` drives it."""

    def update(self, done: int, failed: int) -> None: ...

    def close(self, state: str, done: int, failed: int) -> None: ...


BarFactory = Callable[[str, int], Bar]


class _TerminalBar:
    """tqdm's bar on stderr."""

    def __init__(self, label: str, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=label, unit="ref", file=sys.stderr, leave=True, dynamic_ncols=True)

    def update(self, done: int, failed: int) -> None:
        self.bar.n = done
        if failed:
            self.bar.set_postfix_str(f"{failed} failed", refresh=False)
        self.bar.refresh()

    def close(self, state: str, done: int, failed: int) -> None:
        self.update(done, failed)
        self.bar.set_postfix_str(state + (f" ({failed} failed)" if failed and state != "failed" else
                                          f" ({failed})" if failed else ""))
        self.bar.close()


_factory: BarFactory = _TerminalBar
#: whether a wait shows a bar by itself once it lasts past ``progress.auto-after`` (the notebook layer's choice)
_auto = False


def reset() -> None:
    """Back to tqdm's bars, shown only when asked for."""
    install(_TerminalBar, auto=False)


def install(factory: BarFactory, *, auto: bool) -> None:
    """Use ``factory`` for bars from now on; ``auto``: show one for any wait that lasts (``progress=None``)."""
    global _factory, _auto
    _factory, _auto = factory, auto


#: the states of a ref a bar counts as failed
FAILED_STATES = ("error", "cancelled", "lost")


class _Tracker:
    def __init__(self, refs: Sequence[Any], label: str, delay: float) -> None:
        self.refs, self.label, self.delay = refs, label, delay
        self.bar: Bar | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="labcluster-progress", daemon=True)
        self.lock = threading.Lock()
        self._pending, self._done, self._failed = list(refs), 0, 0

    def counts(self) -> tuple[int, int]:
        """Refs done, and failed, so far. Only the refs not done at the last look are looked at again: a bar over
        2,000 refs refreshed 5 times a second cost its thread ~1% of a core looking at all of them."""
        with self.lock:
            pending = []
            for ref in self._pending:
                if ref.done():
                    self._done += 1
                    self._failed += ref.state in FAILED_STATES
                else:
                    pending.append(ref)
            self._pending = pending
            return self._done, self._failed

    def _run(self) -> None:
        if self.stop.wait(self.delay):
            return  # finished before anyone needed a bar
        every = config.seconds("progress.refresh")
        with self.lock:
            if self.stop.is_set():
                return
            self.bar = _factory(self.label, len(self.refs))
        while not self.stop.wait(every):
            with contextlib.suppress(Exception):  # a broken bar must not break the wait
                self.bar.update(*self.counts())

    def finish(self, state: str) -> None:
        with self.lock:
            self.stop.set()
            bar = self.bar
        self.thread.join(timeout=5)
        if bar is not None:
            # the last word counts every ref again: a result lost after it was counted is not done any more
            finished = [ref for ref in self.refs if ref.done()]
            done, failed = len(finished), sum(ref.state in FAILED_STATES for ref in finished)
            with contextlib.suppress(Exception):
                bar.close("failed" if state == "done" and failed else state, done, failed)


@contextlib.contextmanager
def tracked(refs: Sequence[Any], label: str, progress: bool | None) -> Iterator[None]:
    """A bar over ``refs`` while the block runs (see the module docstring for ``progress``)."""
    if progress is False or not refs or (progress is None and not _auto):
        yield
        return
    tracker = _Tracker(refs, label, 0.0 if progress else config.seconds("progress.auto-after"))
    tracker.thread.start()
    state = "done"
    try:
        yield
    except KeyboardInterrupt:
        state = "cancelled"
        raise
    except TimeoutError:
        state = "timed out"
        raise
    except BaseException:
        state = "failed"
        raise
    finally:
        tracker.finish(state)
