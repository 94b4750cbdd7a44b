"""A bokeh picture of task records: a lane per busy slot of each worker, a bar per task or actor call.

Pure rendering from record rows (``lc.list_tasks()`` / ``api.history.fetch``), so dashboards and the
bulk-vs-pipelined comparison can reuse it on any rows. Colour is by function, or by stage when
``color_by="stage"`` (a palette without red); a failed task is red-outlined and cross-hatched, a reconstruction
outlined in black. Lanes pack each worker's bars into as few rows as ran at once (``cpu-0 / slot 1``): Dask's
threads come and go (a task that blocks in ``lc.get`` hands its thread over), the number of slots busy at once
is what a user reads. Every bar is at least two pixels wide, so a 0.1 ms task still shows on a 10 s axis.

>>> from labcluster.diagnostics.timeline import timeline_figure
>>> rows = [{"key": "f-1", "function": "f", "stage": None, "kind": "task", "worker": "tcp://w:1", "thread": 7,
...          "started": 10.0, "finished": 10.5, "attempt": 1, "nbytes": 28, "state": "finished",
...          "reconstruction": False, "error": None}]
>>> fig = timeline_figure(rows)
>>> len(fig.renderers), list(fig.y_range.factors)
(1, ['w:1 / slot 1'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: how far a bar may seem to start before the end of the previous bar of its own thread and still share its lane
_SAME_THREAD = 0.05
#: the colours of a failure and of a reconstruction's outline; the palette leaves red out for them
FAILED, RECONSTRUCTED = "#b00020", "#111111"


def _palette(n: int) -> list[str]:
    from bokeh.palettes import Category10, Category20

    reds = {"#d62728", "#ff9896"}
    base = [c for c in (Category10[10] if n <= 9 else Category20[20]) if c not in reds]
    return [base[i % len(base)] for i in range(max(n, 1))]


def lanes(rows: Sequence[dict[str, Any]], names: Mapping[str, str] | None = None) -> list[str]:
    """The lane of each row (same order): ``cpu-0 / slot 1``, ``cpu-0 / slot 2``, ... Each worker's bars are packed
    into the fewest rows in which none overlap (greedy by start time). A bar whose thread ran the previous bar of a
    lane continues that lane when the two overlap by less than ``_SAME_THREAD`` (one thread runs one task at a
    time: such an overlap is the records' timing, not a third slot). ``names`` maps worker addresses to worker
    names (an address without one shows without ``tcp://``).

    >>> rows = [{"worker": "w", "started": 0, "finished": 2}, {"worker": "w", "started": 1, "finished": 3},
    ...         {"worker": "w", "started": 2.5, "finished": 4}]
    >>> lanes(rows, {"w": "cpu-0"})
    ['cpu-0 / slot 1', 'cpu-0 / slot 2', 'cpu-0 / slot 1']
    >>> busy = [{"worker": "w", "thread": 1, "started": 0, "finished": 1.0}, {"worker": "w", "thread": 2,
    ...          "started": 0.5, "finished": 1.5}, {"worker": "w", "thread": 1, "started": 0.995, "finished": 2}]
    >>> lanes(busy, {"w": "cpu-0"})   # thread 1's second task starts 5 ms before its first one's recorded end
    ['cpu-0 / slot 1', 'cpu-0 / slot 2', 'cpu-0 / slot 1']
    """
    out = [""] * len(rows)
    lanes_of: dict[str, list[tuple[float, Any]]] = {}  # per worker, per slot: when it is free again, whose it was
    for i in sorted(range(len(rows)), key=lambda i: float(rows[i]["started"])):
        row = rows[i]
        worker = str(row.get("worker") or "?")
        slots = lanes_of.setdefault(worker, [])
        start, end, thread = float(row["started"]), float(row["finished"]), row.get("thread")
        slot = next((j for j, (free, by) in enumerate(slots)
                     if thread is not None and by == thread and free <= start + _SAME_THREAD), None)
        if slot is None:  # 2 ms: clocks differ
            slot = next((j for j, (free, _) in enumerate(slots) if free <= start + 0.002), len(slots))
        if slot == len(slots):
            slots.append((end, thread))
        slots[slot] = (end, thread)
        name = (names or {}).get(worker) or worker.removeprefix("tcp://")
        out[i] = f"{name} / slot {slot + 1}"
    return out


def timeline_figure(rows: Sequence[dict[str, Any]], *, color_by: str = "function", title: str = "task timeline",
                    width: int = 1000, worker_names: Mapping[str, str] | None = None) -> Any:
    """A bokeh figure of ``rows`` that ran (have start and finish times); the legend sits beside the lanes."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    if color_by not in ("function", "stage"):
        raise ValueError(f"color_by must be 'function' or 'stage', got {color_by!r}")
    ran = [r for r in rows if r.get("started") is not None and r.get("finished") is not None]
    origin = min((float(r["started"]) for r in ran), default=0.0)
    span = max((float(r["finished"]) - origin for r in ran), default=0.0)
    thinnest = max(span, 1e-3) * 2 / width  # two pixels of the plot's width
    lane_of = lanes(ran, worker_names)
    first: dict[str, float] = {}  # each group's first start: the legend lists them in that order (a pipeline's)
    for r in ran:
        name = str(r.get(color_by) or r["function"])
        first[name] = min(first.get(name, float(r["started"])), float(r["started"]))
    groups = sorted(first, key=lambda g: (first[g], g))
    color = dict(zip(groups, _palette(len(groups)), strict=False))
    data: dict[str, list[Any]] = {k: [] for k in ("left", "right", "lane", "group", "color", "key", "ms", "attempt",
                                                 "bytes", "state", "outline", "width", "hatch", "error")}
    for r, lane in zip(ran, lane_of, strict=True):
        group = str(r.get(color_by) or r["function"])
        failed = r.get("state") in ("failed", "erred")
        left = float(r["started"]) - origin
        data["left"].append(left)
        data["right"].append(max(float(r["finished"]) - origin, left + thinnest))
        data["lane"].append(lane)
        data["group"].append(group)
        data["color"].append(color[group])
        data["key"].append(str(r["key"]))
        data["ms"].append(f"{(float(r['finished']) - float(r['started'])) * 1e3:.2f}")
        data["attempt"].append(r.get("attempt", 1))
        data["bytes"].append(r.get("nbytes"))
        data["state"].append(r.get("state"))
        data["outline"].append(FAILED if failed else RECONSTRUCTED if r.get("reconstruction") else color[group])
        data["width"].append(2.5 if failed or r.get("reconstruction") else 0.5)
        data["hatch"].append("x" if failed else " ")
        data["error"].append(str(r.get("error") or "")[:200])
    factors = sorted(set(data["lane"]), reverse=True) or ["(no tasks ran)"]
    fig = figure(y_range=FactorRange(factors=factors), width=width, height=max(180, 28 * len(factors) + 90),
                 title=title, x_axis_label="seconds since the first task started",
                 tools="xpan,xwheel_zoom,reset,save")
    source = ColumnDataSource(data)
    bars = fig.hbar(y="lane", left="left", right="right", height=0.8, color="color", line_color="outline",
                    line_width="width", hatch_pattern="hatch", hatch_color=FAILED, hatch_alpha=0.9,
                    legend_group="group", source=source)
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("key", "@key"), ("function", "@group"), ("ms", "@ms"),
                                                        ("attempt", "@attempt"), ("bytes", "@bytes"),
                                                        ("state", "@state"), ("error", "@error")]))
    if fig.legend:
        legend = fig.legend[0]
        order = {g: i for i, g in enumerate(groups)}
        legend.items = sorted(legend.items, key=lambda item: order.get(str(getattr(item.label, "value", "")), 0))  # type: ignore[assignment]
        legend.click_policy = "mute"
        legend.title = color_by
        fig.add_layout(legend, "right")  # beside the lanes, never over the last bars
    return fig
