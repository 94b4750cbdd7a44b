"""One work scope per notebook cell: an interrupt cancels what the cell started, and what its tasks print lands in
that cell, even while a later cell runs.

IPython's ``pre_run_cell`` opens the cell's scope (``labcluster.api.scopes``) and notes the cell's request header;
``post_run_cell`` closes it, and when the cell ended in ``KeyboardInterrupt`` cancels whatever it started that is
still running (a blocking ``lc.get`` cancels at once and says so in its own error; this catches the rest, e.g. a
cell interrupted in ``time.sleep`` after starting tasks). Output of the cell's tasks arrives as messages
(``labcluster.api.output``) and is written to the cell it came from: in a kernel, as an iopub ``stream`` message
with that cell's parent header (what a front end uses to place output); in a terminal IPython, to this process's
streams.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..api import output, scopes
from ..api.hooks import on_driver_session, remove_driver_session_callback
from ..diagnostics import figures

#: cells whose late output still finds its way (older cells' output goes to the current cell, marked)
_KEEP_CELLS = 200


@dataclass
class _Cell:
    scope: scopes.WorkScope
    parent: dict[str, Any] | None  # the execute request's header (a kernel), or None (a terminal)
    number: int


class CellWork:
    """What the extension keeps per IPython shell: the cells' scopes, and the routing of their tasks' output."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.kernel = getattr(shell, "kernel", None)
        self.cells: OrderedDict[str, _Cell] = OrderedDict()
        self.lock = threading.Lock()
        self.tokens: tuple[Any, Any] | None = None
        self.current: _Cell | None = None
        self._listening: dict[str, Any] = {}

    # -- IPython's hooks ------------------------------------------------------------------------------------------
    def register(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        on_driver_session(self.listen)
        figures.current_cell = self.cell_id

    def cell_id(self) -> str | None:
        """The running cell's id: JupyterLab sends it with each request; None elsewhere."""
        cell = self.current
        if cell is None or cell.parent is None:
            return None
        return str((cell.parent.get("metadata") or {}).get("cellId") or "") or None

    def unregister(self) -> None:
        for name, fn in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            with contextlib.suppress(ValueError):
                self.shell.events.unregister(name, fn)
        remove_driver_session_callback(self.listen)
        if figures.current_cell == self.cell_id:
            figures.current_cell = None
        self._leave()  # unloaded inside a cell: that cell's scope ends here, not never

    def pre_run_cell(self, info: Any = None) -> None:
        self._leave()  # a scope opened outside any cell (the extension loaded at start-up) ends here
        # IPython counts the cell before this hook runs: the cell is In[execution_count - 1]
        stored = getattr(info, "store_history", True)
        number = int(getattr(self.shell, "execution_count", 1) or 1) - (1 if stored else 0)
        scope = scopes.WorkScope(f"cell [{number}]", collect_output=True)
        parent = self._parent()
        cell = _Cell(scope, parent, number)
        with self.lock:
            self.cells[scope.id] = cell
            while len(self.cells) > _KEEP_CELLS:
                self.cells.popitem(last=False)
        self.current = cell
        self.tokens = scopes.enter(scope)
        figures.cell_runs(self.cell_id())

    def _leave(self) -> _Cell | None:
        cell, tokens = self.current, self.tokens
        self.current = self.tokens = None
        if tokens is not None:
            try:
                scopes.leave(tokens)
            except ValueError:  # the cell ran in another context than the hook (an async cell): nothing to undo
                scopes.enter(None)
        return cell

    def post_run_cell(self, result: Any = None) -> None:
        cell = self._leave()
        error = getattr(result, "error_in_exec", None)
        if cell is not None and isinstance(error, KeyboardInterrupt):
            cancelled = cell.scope.cancel()
            if cancelled:
                print(f"labcluster: the interrupt cancelled what {cell.scope.label} started: {cancelled}; the "
                      f"cluster keeps running", file=sys.stderr)

    def _parent(self) -> dict[str, Any] | None:
        if self.kernel is None:
            return None
        try:
            parent = self.kernel.get_parent("shell")
        except TypeError:  # an older ipykernel: get_parent() takes no channel
            parent = self.kernel.get_parent()
        return dict(parent) if parent else None

    # -- output of the cells' tasks ---------------------------------------------------------------------------------
    def listen(self, session: Any) -> None:
        """Hear what this session's tasks print (called when a session opens)."""
        key = str(session.client.id)
        if key not in self._listening:
            self._listening[key] = output.listen(session.client, self.deliver)

    def deliver(self, msg: dict[str, Any]) -> None:
        with self.lock:
            cell = self.cells.get(str(msg.get("scope")))
        text = output.as_text(msg)
        if not text:
            return
        stream = "stderr" if msg.get("stream") == "stderr" else "stdout"
        if cell is None:  # from a cell too old to remember: say where it came from
            text = "".join(f"({msg.get('task')} on {msg.get('worker')}) {line}" for line in
                           text.splitlines(keepends=True))
        if self.kernel is not None and cell is not None and cell.parent is not None:
            self.kernel.session.send(self.kernel.iopub_socket, "stream", {"name": stream, "text": text},
                                     parent=cell.parent, ident=f"stream.{stream}".encode())
            return
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.write(text)
        target.flush()

    def close(self) -> None:
        for stop in self._listening.values():
            stop()
        self._listening.clear()
