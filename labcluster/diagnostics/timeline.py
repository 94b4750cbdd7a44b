"""A bokeh picture of task records: a lane per worker thread, a bar per task or actor call.

Pure rendering from record rows (``lc.list_tasks()`` / ``api.records.fetch``), so dashboards and the
bulk-vs-pipelined comparison can reuse it on any rows. Colour is by function, or by stage when
``color_by="stage"``; reconstructions get a red outline, failures a hatch.

>>> from labcluster.diagnostics.timeline import timeline_figure
>>> rows = [{"key": "f-1", "function": "f", "stage": None, "kind": "task", "worker": "tcp://w:1", "thread": 7,
...          "started": 10.0, "finished": 10.5, "attempt": 1, "nbytes": 28, "state": "finished",
...          "reconstruction": False, "error": None}]
>>> fig = timeline_figure(rows)
>>> len(fig.renderers)
1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _palette(n: int) -> list[str]:
    from bokeh.palettes import Category10, Category20

    if n <= 10:
        return list(Category10[10])[: max(n, 1)]
    colors = list(Category20[20])
    return [colors[i % 20] for i in range(n)]


def lanes(rows: Sequence[dict[str, Any]], names: Mapping[str, str] | None = None) -> dict[tuple[str, int], str]:
    """A readable lane name per (worker, thread): ``cpu-0 / thread 1``, threads numbered per worker; ``names``
    maps worker addresses to worker names (an address without one shows without ``tcp://``)."""
    lane: dict[tuple[str, int], str] = {}
    per_worker: dict[str, int] = {}
    for row in rows:
        key = (str(row.get("worker") or "?"), int(row.get("thread") or 0))
        if key not in lane:
            per_worker[key[0]] = per_worker.get(key[0], 0) + 1
            worker = (names or {}).get(key[0]) or key[0].removeprefix("tcp://")
            lane[key] = f"{worker} / thread {per_worker[key[0]]}"
    return lane


def timeline_figure(rows: Sequence[dict[str, Any]], *, color_by: str = "function", title: str = "task timeline",
                    width: int = 900, worker_names: Mapping[str, str] | None = None) -> Any:
    """A bokeh figure of ``rows`` that ran (have start and finish times); the legend sits beside the lanes."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    if color_by not in ("function", "stage"):
        raise ValueError(f"color_by must be 'function' or 'stage', got {color_by!r}")
    ran = [r for r in rows if r.get("started") is not None and r.get("finished") is not None]
    origin = min((float(r["started"]) for r in ran), default=0.0)
    lane_of = lanes(ran, worker_names)
    groups = sorted({str(r.get(color_by) or r["function"]) for r in ran})
    color = dict(zip(groups, _palette(len(groups)), strict=False))
    data: dict[str, list[Any]] = {k: [] for k in ("left", "right", "lane", "group", "color", "key", "ms", "attempt",
                                                 "bytes", "state", "outline", "hatch")}
    for r in ran:
        group = str(r.get(color_by) or r["function"])
        data["left"].append(float(r["started"]) - origin)
        data["right"].append(max(float(r["finished"]) - origin, float(r["started"]) - origin + 1e-5))
        data["lane"].append(lane_of[(str(r.get("worker") or "?"), int(r.get("thread") or 0))])
        data["group"].append(group)
        data["color"].append(color[group])
        data["key"].append(str(r["key"]))
        data["ms"].append(f"{(float(r['finished']) - float(r['started'])) * 1e3:.2f}")
        data["attempt"].append(r.get("attempt", 1))
        data["bytes"].append(r.get("nbytes"))
        data["state"].append(r.get("state"))
        data["outline"].append("#d62728" if r.get("reconstruction") else "#333333")
        data["hatch"].append("/" if r.get("state") in ("failed", "erred") else " ")
    factors = sorted(set(data["lane"]), reverse=True) or ["(no tasks ran)"]
    fig = figure(y_range=FactorRange(factors=factors), width=width, height=max(180, 28 * len(factors) + 90),
                 title=title, x_axis_label="seconds since the first task started",
                 tools="xpan,xwheel_zoom,reset,save")
    source = ColumnDataSource(data)
    bars = fig.hbar(y="lane", left="left", right="right", height=0.8, color="color", line_color="outline",
                    hatch_pattern="hatch", legend_group="group", source=source)
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("key", "@key"), ("function", "@group"), ("ms", "@ms"),
                                                        ("attempt", "@attempt"), ("bytes", "@bytes"),
                                                        ("state", "@state")]))
    if fig.legend:
        legend = fig.legend[0]
        legend.click_policy = "mute"
        legend.title = color_by
        fig.add_layout(legend, "right")  # beside the lanes, never over the last bars
    return fig
