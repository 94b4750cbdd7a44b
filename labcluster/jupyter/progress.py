"""Progress bars in a notebook, as ipywidgets updated from a background thread (they move while the cell runs).

- :class:`RefBar`: a wait on refs (``lc.get``, ``lc.wait``); installed into ``labcluster.api.progress`` so that a
  wait that lasts shows one by itself.
- :class:`DatasetBars`: one bar per operator of each dataset execution that lasts past
  ``labcluster.progress.auto-after``, labelled by its mode (bulk or pipelined), so ``lc.compare`` shows both runs;
  installed as the data layer's default watcher.

Each ends in a final state: green when done, red with the count when something failed, orange when cancelled or
stopped early.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as w
from IPython.display import display

from .. import config

_STYLES = {"done": "success", "failed": "danger", "cancelled": "warning", "stopped": "warning",
           "timed out": "warning"}


def _display(widget: Any, text: str) -> None:
    """Show ``widget``; a front end without widgets (nbconvert, a console) shows ``text``, not ipywidgets' repr
    (``VBox(children=(HTML(value=...``)."""
    bundle = widget._repr_mimebundle_()
    bundle["text/plain"] = text
    display(bundle, raw=True)


class RefBar:
    """One wait's bar: ``label [#####     ] 12/40``, then its final state."""

    def __init__(self, label: str, total: int) -> None:
        self.total = total
        self.bar = w.IntProgress(value=0, min=0, max=max(1, total), description=label,
                                 style={"description_width": "initial"}, layout=w.Layout(width="420px"))
        self.text = w.HTML(f"0/{total}")
        self.box = w.HBox([self.bar, self.text])
        _display(self.box, f"{label}: waiting for {total} (its progress bar needs a front end that shows ipywidgets)")

    def update(self, done: int, failed: int) -> None:
        self.bar.value = done
        self.text.value = f"{done}/{self.total}" + (f" &middot; <b>{failed} failed</b>" if failed else "")
        if failed:
            self.bar.bar_style = "danger"

    def close(self, state: str, done: int, failed: int) -> None:
        self.update(done, failed)
        self.bar.bar_style = _STYLES.get(state, "")
        what = f"{failed} failed" if state == "failed" and failed else state
        self.text.value = f"{done}/{self.total} &middot; {html.escape(what)}"


class DatasetBars:
    """The data layer's watcher: called with an execution every 0.1 s while it runs, and once when it ends."""

    def __init__(self) -> None:
        self.shown: dict[str, tuple[list[w.IntProgress], list[w.HTML], w.HTML]] = {}
        self.lock = threading.Lock()

    def __call__(self, ex: Any) -> None:
        import time

        with self.lock:
            parts = self.shown.get(ex.id)
            if parts is None:
                if ex.ended or time.perf_counter() - ex.started < config.seconds("progress.auto-after"):
                    return  # quick work shows no bars (as a quick lc.get shows none)
                parts = self.shown[ex.id] = self._show(ex)
        bars, texts, head = parts
        for bar, text, stats, total in zip(bars, texts, ex.stats, ex.totals, strict=True):
            bar.max = max(1, total or stats.blocks or 1)
            bar.value = stats.blocks
            text.value = f"{stats.blocks}/{total if total is not None else '?'} blocks, {stats.rows} rows"
        outcome = getattr(ex, "outcome", None)
        if ex.ended and outcome:
            head.value = f"<b>{html.escape(ex.mode)}</b> &middot; {outcome} in {ex.ended - ex.started:.2f} s"
            for bar in bars:
                bar.bar_style = _STYLES.get(outcome, "")
            with self.lock:
                self.shown.pop(ex.id, None)

    def _show(self, ex: Any) -> tuple[list[w.IntProgress], list[w.HTML], w.HTML]:
        head = w.HTML(f"<b>{html.escape(ex.mode)}</b> &middot; running")
        bars, texts, rows = [], [], []
        for stats in ex.stats:
            name = stats.name.split("->")[-1]
            bar = w.IntProgress(value=0, min=0, max=1, description=name, style={"description_width": "initial"},
                                layout=w.Layout(width="420px"))
            text = w.HTML("")
            bars.append(bar)
            texts.append(text)
            rows.append(w.HBox([bar, text]))
        stages = ", ".join(stats.name for stats in ex.stats)
        _display(w.VBox([head, *rows]), f"{ex.mode} execution of {len(ex.stats)} stage(s): {stages} (its progress "
                                        f"bars need a front end that shows ipywidgets)")
        return bars, texts, head
