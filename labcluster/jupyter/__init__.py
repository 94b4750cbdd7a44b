"""labcluster in IPython and Jupyter: magics, per-cell work (interrupt, output), widgets. Above the line: the only
package of labcluster that imports IPython and ipywidgets.

``%load_ext labcluster`` loads it, and so does ``import labcluster`` inside a running IPython shell
(``labcluster.jupyter.autoload``). Loading it:

- registers ``%cluster`` and ``%%distributed`` (``magics.py``);
- gives every cell a work scope (``cells.py``): a kernel interrupt cancels what the cell started, and what its
  tasks print lands in that cell;
- in a kernel, shows a session (``lc.init()``'s result, ``%cluster status``) as the live cluster widget.
"""

from __future__ import annotations

from typing import Any

_LOADED: dict[int, Any] = {}


def load_ipython_extension(shell: Any) -> None:
    from .cells import CellWork
    from .magics import LabclusterMagics

    if id(shell) in _LOADED:
        return
    shell.register_magics(LabclusterMagics)
    work = CellWork(shell)
    work.register()
    # loaded by a cell (import labcluster, %load_ext): that cell is a cell like the others from here on
    work.pre_run_cell()
    _LOADED[id(shell)] = work
    if getattr(shell, "kernel", None) is not None:  # a front end that can show widgets (or their HTML fallback)
        _install_bars()
        # by name: registering it imports nothing (the session module imports Dask)
        shell.display_formatter.ipython_display_formatter.for_type_by_name("labcluster.api.session", "Session",
                                                                           _show_session)


def unload_ipython_extension(shell: Any) -> None:
    from ..api import hooks, progress

    work = _LOADED.pop(id(shell), None)
    progress.reset()
    hooks.set_execution_watcher(None)
    if work is not None:
        work.unregister()
        work.close()


def _install_bars() -> None:
    """Notebook bars for waits on refs (shown by themselves when a wait lasts) and for every dataset execution;
    ipywidgets is imported when the first bar is drawn, not now."""
    from ..api import hooks
    from ..api import progress as ref_progress

    ref_progress.install(_ref_bar, auto=True)
    hooks.set_execution_watcher(_dataset_bars)


def _ref_bar(label: str, total: int) -> Any:
    from .progress import RefBar

    return RefBar(label, total)


_BARS: list[Any] = []


def _dataset_bars(execution: Any) -> None:
    if not _BARS:
        from .progress import DatasetBars

        _BARS.append(DatasetBars())
    _BARS[0](execution)


def _show_session(session: Any) -> None:
    from IPython.display import display

    from .widgets import ClusterWidget

    display(ClusterWidget(session))
