"""A bokeh picture that shows itself in a notebook, with bokeh's inline resources (no network).

What ``lc.timeline_figure()`` returns: as a cell's last expression it renders as the chart (not
``figure(id='p1007', ...)``). BokehJS (~4 MB) travels with the first picture this process shows, so a page that
shows several loads it once; ``save(path)`` writes a standalone HTML file. Every bokeh attribute reads through
(``fig.renderers``), and ``fig.model`` is the bokeh figure itself, for ``bokeh.io.show`` or further styling.

>>> from bokeh.plotting import figure
>>> pic = Figure(figure(title="t"), "a test picture")
>>> pic
<Figure: a test picture>
>>> "<script" in pic._repr_html_() and pic.title.text == "t"  # a bokeh attribute, read through
True
"""

from __future__ import annotations

import threading
from typing import Any

_bokeh_shown = threading.Event()


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
        from bokeh.resources import INLINE

        script, div = components(self.model)
        head = "" if _bokeh_shown.is_set() else INLINE.render_js()
        _bokeh_shown.set()
        return f"{head}{div}{script}"

    def save(self, path: str) -> str:
        """Write the picture as a standalone HTML page (bokeh's inline resources); returns ``path``."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        with open(path, "w", encoding="utf-8") as f:
            f.write(file_html(self.model, INLINE, title=self.what))
        return path
