"""The cluster widget ``%cluster start`` and ``lc.init()`` show in a notebook: workers by group, resources, GPUs
(real or simulated, labelled), memory and CPU use, live; buttons to scale a group and to stop.

It refreshes itself from a background thread (``labcluster.jupyter.refresh``), so it keeps moving while other cells
run, and says "stopped" once the session is closed. Where no widget front end runs (plain IPython, nbconvert, a
notebook viewer), its display bundle carries the session's HTML table as well, which those show instead.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from typing import Any

import ipywidgets as w

from .. import config
from ..api.session import Session
from ..cluster.info import LIVE_STYLE, live_html


class ClusterWidget(w.VBox):  # type: ignore[misc]
    """A session, live: ``display(ClusterWidget(lc.current_session()))``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        title = session.name or ("local cluster" if session.owns_cluster else "connected cluster")
        link = session.dashboard_link
        dash = f" &middot; <a href='{html.escape(link)}' target='_blank'>dashboard</a>" if link else ""
        self.header = w.HTML(f"{LIVE_STYLE}<b>labcluster</b> &middot; {html.escape(title)} &middot; "
                             f"<code>{html.escape(session.address)}</code>{dash}")
        self.body = w.HTML(live_html(session))
        self.status = w.HTML("")
        groups = sorted({wk.group for wk in session.workers()}) if not session.closed else []
        self.group = w.Dropdown(options=groups or ["cpu"], description="group", layout=w.Layout(width="160px"))
        self.count = w.BoundedIntText(value=1, min=0, max=256, description="workers", layout=w.Layout(width="160px"))
        self.scale_button = w.Button(description="Scale", icon="arrows-v", disabled=not session.owns_cluster,
                                     tooltip="grow or shrink the group" if session.owns_cluster else
                                     "a connected cluster is scaled where it runs")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.scale_button.on_click(self._scale)
        self.stop_button.on_click(self._stop)
        controls = w.HBox([self.group, self.count, self.scale_button, self.stop_button])
        super().__init__([self.header, self.body, controls, self.status])
        _watch(self)

    def refresh(self, body: str) -> bool:
        """Show ``body``; False once the session is closed (the widget then stops refreshing)."""
        self.body.value = body
        if self.session.closed:
            self.scale_button.disabled = self.stop_button.disabled = True
            return False
        return True

    def _scale(self, _button: Any = None) -> None:
        self.status.value = f"scaling {html.escape(str(self.group.value))} to {self.count.value} ..."
        try:
            said = self.session.scale(int(self.count.value), group=str(self.group.value))
            self.status.value = html.escape(said, quote=False)
        except Exception as e:
            self.status.value = f"<span style='color:#c00'>{html.escape(str(e))}</span>"
        self.body.value = live_html(self.session)

    def _stop(self, _button: Any = None) -> None:
        import labcluster as lc

        if lc.is_initialized() and lc.current_session() is self.session:
            lc.shutdown()
        else:
            self.session.close()
        self.status.value = "stopped"
        self.body.value = live_html(self.session)
        self.scale_button.disabled = self.stop_button.disabled = True

    def __repr__(self) -> str:  # what text-only front ends print (ipywidgets' own repr lists every child's state)
        return f"<labcluster cluster widget: {self.session!r}>"

    def close(self) -> None:
        _live.discard(self)
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # front ends without widgets show the table instead
            bundle["text/html"] = self.session._repr_html_()
        return bundle


#: the widgets still showing an open session; one thread refreshes them all, reading each session once a tick
_live: weakref.WeakSet[ClusterWidget] = weakref.WeakSet()
_refresher: list[threading.Thread] = []
_lock = threading.Lock()


def _watch(widget: ClusterWidget) -> None:
    with _lock:
        _live.add(widget)
        if not _refresher or not _refresher[0].is_alive():
            _refresher[:] = [threading.Thread(target=_refresh_all, name="labcluster-cluster-widgets", daemon=True)]
            _refresher[0].start()


def _refresh_all() -> None:
    every = config.seconds("jupyter.refresh")
    while True:
        time.sleep(every)
        with _lock:
            widgets = list(_live)
            if not widgets:
                _refresher.clear()
                return
        bodies: dict[int, str] = {}
        for widget in widgets:
            key = id(widget.session)
            if key not in bodies:
                bodies[key] = live_html(widget.session)
            if not widget.refresh(bodies[key]):
                _live.discard(widget)
