"""The cluster widget ``%cluster start`` and ``lc.init()`` show in a notebook: workers by group, resources, GPUs
(real or simulated, labelled), memory and CPU use, live; buttons to scale a group and to stop.

It refreshes itself from a background thread (``labcluster.jupyter.refresh``), so it keeps moving while other cells
run, and says "stopped" once the session is closed. Where no widget front end runs (plain IPython, nbconvert, a
notebook viewer), its display bundle carries the session's HTML table as well, which those show instead.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as w

from .. import config
from ..api.session import Session
from ..cluster.info import shown, total_resources

_STYLE = ("<style>.lc-w table{border-collapse:collapse;font-size:12px}.lc-w td,.lc-w th{padding:2px 8px;"
          "text-align:left;border-bottom:1px solid #ddd}.lc-w .sim{color:#b35900}.lc-w .bar{display:inline-block;"
          "height:8px;background:#4a90d9;vertical-align:middle}</style>")


def _bar(fraction: float, width: int = 60) -> str:
    f = max(0.0, min(1.0, fraction))
    return (f"<span class='bar' style='width:{int(f * width)}px'></span>"
            f"<span class='bar' style='width:{width - int(f * width)}px;background:#e6e6e6'></span>")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def cluster_html(session: Session) -> str:
    """The live part of the widget: one row per worker, grouped, with its use now (also useful without widgets)."""
    if session.closed:
        return "<div class='lc-w'><em>stopped</em> (the session was shut down)</div>"
    try:
        info = session.client.scheduler_info(n_workers=-1)
        workers = session.workers()
    except Exception as e:
        return f"<div class='lc-w'><em>unreachable</em>: {html.escape(str(e))}</div>"
    metrics = {str(v.get("name")): v.get("metrics", {}) for v in info.get("workers", {}).values()}
    rows = []
    for wk in workers:
        m = metrics.get(wk.name, {})
        cpu = float(m.get("cpu", 0.0)) / 100.0
        mem = float(m.get("memory", 0))
        limit = float(wk.memory_limit or 0)
        gpu = html.escape(wk.gpu_label)
        if wk.simulated:
            gpu = f"<span class='sim' title='a GPU slot without a device: scheduling only'>{gpu}</span>"
        cpus = wk.resources.get("CPU", 0)
        rows.append(f"<tr><td>{html.escape(wk.group)}</td><td>{html.escape(wk.name)}</td><td>{cpus:g}</td>"
                    f"<td>{gpu}</td><td>{_bar(cpu)} {cpu:.0%}</td>"
                    f"<td>{_bar(mem / limit if limit else 0)} {_gib(mem)}"
                    f"{' / ' + _gib(limit) if limit else ''}</td></tr>")
    total = shown(total_resources(workers))
    res = ", ".join(f"{k} {v:g}" for k, v in sorted(total.items()) if k != "memory")
    sim = sum(1 for wk in workers if wk.simulated)
    note = f" &middot; <span class='sim'>{sim} simulated GPU{'s' if sim != 1 else ''}</span>" if sim else ""
    return (f"<div class='lc-w'>{len(workers)} workers &middot; {html.escape(res)}{note}<table><tr><th>group</th>"
            f"<th>worker</th><th>CPU slots</th><th>GPU</th><th>CPU use</th><th>memory</th></tr>{''.join(rows)}"
            f"</table></div>")


class ClusterWidget(w.VBox):  # type: ignore[misc]
    """A session, live: ``display(ClusterWidget(lc.current_session()))``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        title = session.name or ("local cluster" if session.owns_cluster else "connected cluster")
        link = session.dashboard_link
        dash = f" &middot; <a href='{html.escape(link)}' target='_blank'>dashboard</a>" if link else ""
        self.header = w.HTML(f"{_STYLE}<b>labcluster</b> &middot; {html.escape(title)} &middot; "
                             f"<code>{html.escape(session.address)}</code>{dash}")
        self.body = w.HTML(cluster_html(session))
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
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="labcluster-cluster-widget", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        every = config.seconds("jupyter.refresh")
        while not self._closing.wait(every):
            self.body.value = cluster_html(self.session)
            if self.session.closed:
                self.scale_button.disabled = self.stop_button.disabled = True
                return

    def _scale(self, _button: Any = None) -> None:
        self.status.value = f"scaling {html.escape(str(self.group.value))} to {self.count.value} ..."
        try:
            self.status.value = html.escape(self.session.scale(int(self.count.value), group=str(self.group.value)))
        except Exception as e:
            self.status.value = f"<span style='color:#c00'>{html.escape(str(e))}</span>"
        self.body.value = cluster_html(self.session)

    def _stop(self, _button: Any = None) -> None:
        import labcluster as lc

        if lc.is_initialized() and lc.current_session() is self.session:
            lc.shutdown()
        else:
            self.session.close()
        self.status.value = "stopped"
        self.body.value = cluster_html(self.session)
        self.scale_button.disabled = self.stop_button.disabled = True

    def __repr__(self) -> str:  # what text-only front ends print (ipywidgets' own repr lists every child's state)
        return f"<labcluster cluster widget: {self.session!r}>"

    def close(self) -> None:
        self._closing.set()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # front ends without widgets show the table instead
            bundle["text/html"] = self.session._repr_html_()
        return bundle
