"""Callbacks run when the driver's session opens: how a layer above (the notebook's) hears of each new session
without the engine knowing it. Light on purpose: importing it imports nothing of Dask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: what runs each time the driver's session opens (the notebook layer listens to its tasks' output)
_on_open: list[Callable[[Any], None]] = []


def on_driver_session(callback: Callable[[Any], None]) -> None:
    """Call ``callback(session)`` each time the driver's session opens (now, too, if one is open); a callback
    registered twice runs once."""
    if callback in _on_open:
        return
    _on_open.append(callback)
    import sys

    session_module = sys.modules.get("labcluster.api.session")  # not imported: no session can be open
    session = session_module.driver_session() if session_module is not None else None
    if session is not None:
        callback(session)


def remove_driver_session_callback(callback: Callable[[Any], None]) -> None:
    if callback in _on_open:
        _on_open.remove(callback)


def session_opened(session: Any) -> None:
    for callback in list(_on_open):
        callback(session)


#: who hears dataset executions started outside ``labcluster.data.progress.watching`` (the notebook's bars)
_execution_watcher: Callable[[Any], None] | None = None


def set_execution_watcher(fn: Callable[[Any], None] | None) -> None:
    global _execution_watcher
    _execution_watcher = fn


def execution_watcher() -> Callable[[Any], None] | None:
    return _execution_watcher
