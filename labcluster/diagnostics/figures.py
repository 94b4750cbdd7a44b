"""A bokeh picture that shows itself in a notebook, with bokeh's inline resources (no network).

What ``lc.timeline_figure()`` returns: as a cell's last expression it renders as the chart (not
``figure(id='p1007', ...)``). BokehJS (~2 MB: its core, widgets and tables; no WebGL or MathJax, which no picture
here uses) travels with the first picture this process shows, so a page that
shows several loads it once (each picture waits for it); when the cell whose output carried it runs again (its
old output is gone, and with it BokehJS), the next picture carries it again. The Jupyter layer says which cell
runs (``current_cell``, ``cell_runs``). A picture that finds no BokehJS on its page says so and how to fix it,
instead of staying blank. ``save(path)`` writes a standalone HTML file. Every bokeh attribute reads through
(``fig.renderers``), and ``fig.model`` is the bokeh figure itself, for ``bokeh.io.show`` or further styling.

>>> from bokeh.plotting import figure
>>> pic = Figure(figure(title="t"), "a test picture")
>>> pic
<Figure: a test picture>
>>> "<script" in pic._repr_html_() and pic.title.text == "t"  # a bokeh attribute, read through
True
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any, Literal

#: the id of the cell that runs now (None where the front end sends none), set by the Jupyter layer
current_cell: Callable[[], str | None] | None = None
#: the cell whose output carries BokehJS, once one does (None: a cell without an id, or no kernel)
_carrier: list[str | None] = []
_lock = threading.Lock()
#: how long a picture waits for BokehJS before it says that it is missing (ms; bokeh's own wait is 1 s)
_MISSING_AFTER_MS = 3000


def _carries_bokehjs() -> bool:
    """Whether the picture shown now must carry BokehJS: the first one since no output on the page carries it."""
    where = current_cell() if current_cell is not None else None
    with _lock:
        if not _carrier:
            _carrier[:] = [where]
            return True
        return False


def cell_runs(cell: str | None) -> None:
    """A cell starts to run (the Jupyter layer says so): if its output carried BokehJS, that output is cleared now,
    so the next picture, in this cell or another, carries it again."""
    with _lock:
        if cell is not None and _carrier and _carrier[0] == cell:
            _carrier.clear()


def _bokehjs() -> str:
    """BokehJS inline, the parts labcluster's pictures use (half of bokeh's whole inline bundle: MathJax is 1.8 MB)."""
    from bokeh.resources import Resources

    return str(Resources(mode="inline", components=list(BOKEHJS_PARTS)).render_js())


#: the BokehJS bundles the first picture carries: every picture labcluster draws needs no more
BOKEHJS_PARTS: tuple[Literal["bokeh", "bokeh-widgets", "bokeh-tables"], ...] = (
    "bokeh", "bokeh-widgets", "bokeh-tables")


class Figure:
    """A bokeh model with a notebook representation (see the module docstring)."""

    def __init__(self, model: Any, what: str) -> None:
        self.model = model
        self.what = what

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self) -> str:
        return f"<Figure: {self.what}>"

    def _repr_html_(self) -> str:
        from bokeh.embed import components

        script, div = components(self.model)
        head = _bokehjs() if _carries_bokehjs() else ""
        box = f"labcluster-figure-{uuid.uuid4().hex[:12]}"
        missing = ("<i>This picture needs BokehJS, which came with the first picture this kernel showed, and that "
                   "output is gone: run that picture's cell again, then this one.</i>")
        check = (f"<script>setTimeout(function () {{ if (window.Bokeh === undefined) {{ var box = document."
                 f"getElementById({json.dumps(box)}); if (box) {{ box.innerHTML = {json.dumps(missing)}; }} }} }}, "
                 f"{_MISSING_AFTER_MS});</script>")
        return f"{head}<div id='{box}'>{div}</div>{script}{check}"

    def save(self, path: str) -> str:
        """Write the picture as a standalone HTML page (bokeh's inline resources); returns ``path``."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        with open(path, "w", encoding="utf-8") as f:
            f.write(file_html(self.model, INLINE, title=self.what))
        return path
