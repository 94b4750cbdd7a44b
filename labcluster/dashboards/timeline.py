"""The task timeline page: a live lane per worker thread, a bar per task attempt or actor call of the last N seconds.

:class:`TaskTimeline` (distributed's dashboard contract: ``source``, ``root``, ``update()``) reads labcluster's task
records (``labcluster/diagnostics/recorder.py``) on the scheduler, as ``lc.timeline`` does, but incrementally: each
update reads only the rows recorded since the last one (the store's monotonic index), and looks again at the rows
that were still running. A bar is coloured by its stage (``with lc.stage(...)``) where it has one, else by its
function; a failed attempt is outlined red and cross-hatched (a glyph of its own: hatching every bar, even with a
blank pattern, made the browser redraw 2,000 bars at ~1.5 cores) and a reconstruction outlined black, with the
same colours as ``lc.timeline_figure`` (``diagnostics/timeline.py``). Tasks too short to see, back to back in a
lane, are drawn as one bar that says how many they are. The axis reads seconds before now: bars drift
left and leave after ``labcluster.dashboard.timeline-window``; the newest ``timeline-max-bars`` are kept. Each
update sends the browser only the bars that finished since the last one (``ColumnDataSource.stream`` with a
rollover) and moves the visible range: bars sit at fixed times, so neither side redoes the bars it has.

Lanes are ``<worker> / thread <n>``, numbered per worker in the order its threads first ran something: a lane keeps
its place while the window slides (packing bars into as few rows as possible, as ``lc.timeline`` does for a
finished run, would move them between updates).

>>> lanes = ThreadLanes()
>>> lanes.lane("cpu-0", 140), lanes.lane("cpu-0", 150), lanes.lane("cpu-0", 140), lanes.lane("gpu-0", 7)
('cpu-0 / thread 1', 'cpu-0 / thread 2', 'cpu-0 / thread 1', 'gpu-0 / thread 1')
"""

from __future__ import annotations

from collections import deque
from typing import Any

from distributed.metrics import time

from .. import config
from ..diagnostics.timeline import FAILED, RECONSTRUCTED
from .state import missing_extension_text, records, worker_names

#: read at most this many new rows per update (a burst beyond it: the oldest of the burst are skipped)
READ_LIMIT = 20_000
#: a palette without red (red marks failures), in the order groups are first seen: a group keeps its colour
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")
COLUMNS = ("left", "right", "lane", "group", "color", "outline", "line_width", "key", "function", "stage",
           "worker", "ms", "attempt", "state", "kind")


class ThreadLanes:
    """Stable lane names: ``<worker> / thread <n>``, n counted per worker from 1 in order of first use."""

    def __init__(self) -> None:
        self._numbers: dict[str, dict[Any, int]] = {}

    def lane(self, worker: str, thread: Any) -> str:
        numbers = self._numbers.setdefault(worker, {})
        n = numbers.get(thread)
        if n is None:
            n = numbers[thread] = len(numbers) + 1
        return f"{worker} / thread {n}"

    @staticmethod
    def order(lane: str) -> tuple[str, int]:
        worker, _, n = lane.rpartition(" / thread ")
        return worker, int(n) if n.isdigit() else 0


class TaskTimeline:
    """Live task lanes from the task records (see the module docstring)."""

    def __init__(self, scheduler: Any, window: float | None = None, max_bars: int | None = None,
                 **kwargs: Any) -> None:
        from bokeh.layouts import column
        from bokeh.models import (
            ColumnDataSource,
            CustomJSTickFormatter,
            FactorRange,
            FixedTicker,
            HoverTool,
            Range1d,
        )
        from bokeh.models.widgets import Div
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self.window = float(window if window is not None else config.seconds("dashboard.timeline-window"))
        self.max_bars = int(max_bars if max_bars is not None else config.get("dashboard.timeline-max-bars"))
        self.lanes = ThreadLanes()
        self._colors: dict[str, str] = {}
        self._next = -1  # the index of the next row to read; -1: start from the rows of the last window
        self._open: dict[int, None] = {}  # rows that were still running when read (insertion-ordered set)
        self._ran: deque[dict[str, Any]] = deque(maxlen=self.max_bars)  # finished rows, oldest first
        self._fresh: list[dict[str, Any]] = []  # finished since the last update: what the browser has not got
        self._origin = time()  # bars sit at seconds since this moment; the range follows now
        self.source = ColumnDataSource({c: [] for c in COLUMNS})
        self.summary = Div(text="", styles={"font-size": "13px"})
        self.lane_range = FactorRange(factors=["(no tasks yet)"])
        self.x_range = Range1d(start=-self.window, end=0)
        self.figure = figure(title=f"task timeline: the last {self.window:g} s, a lane per worker thread",
                             y_range=self.lane_range, x_range=self.x_range,
                             height=int(kwargs.pop("height", 360)), width=1100,
                             x_axis_label="seconds before now", y_axis_label="worker / thread",
                             tools="xpan,xwheel_zoom,reset,save", **kwargs)
        bars = self.figure.hbar(y="lane", left="left", right="right", height=0.8, color="color",
                                line_color="outline", line_width="line_width", legend_field="group", source=self.source)
        # failed attempts, cross-hatched, on top: a glyph of their own (hatching every bar, even with a blank
        # pattern, made the browser redraw 2,000 bars at ~1.5 cores; failures are few)
        self.failed_source = ColumnDataSource({("failed_lane" if c == "lane" else c): [] for c in COLUMNS})
        failed = self.figure.hbar(y="failed_lane", left="left", right="right", height=0.8, color="color",
                                  line_color=FAILED, line_width=2.5, hatch_pattern="x", hatch_color=FAILED,
                                  hatch_alpha=0.9, source=self.failed_source)
        self.figure.add_tools(HoverTool(renderers=[bars, failed], tooltips=[
            ("key", "@key"), ("function", "@function"), ("stage", "@stage"), ("worker", "@worker"), ("ms", "@ms"),
            ("attempt", "@attempt"), ("state", "@state"), ("kind", "@kind")]))
        legend = self.figure.legend[0]
        legend.title = "stage or function"
        legend.click_policy = "mute"
        self.figure.add_layout(legend, "right")
        self.figure.ygrid.visible = False
        # bars are at fixed times; the ticks say how long before now (the range's end) each one is
        self.ticker = FixedTicker(ticks=[])  # round seconds before now, placed at each update
        self.figure.xaxis.ticker = self.ticker
        self.figure.xaxis.formatter = CustomJSTickFormatter(args={"r": self.x_range},
                                                            code="return String(Math.round(tick - r.end))")
        self.root = column(self.summary, self.figure, sizing_mode="stretch_width")

    def _bars(self, rows: list[dict[str, Any]], names: dict[str, str]) -> dict[str, list[Any]]:
        """The bars of ``rows``, at seconds since the page's origin. Tasks too short to see (under ~2 pixels) that
        follow each other in one lane, of one stage or function, with gaps under ~2 pixels, are one bar ("37
        tasks ..."): a flood of tiny tasks draws as the busy stretch it is, and the browser draws tens of bars a
        second instead of hundreds (a flood of no-op tasks made the timeline the costliest page to watch)."""
        data: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        thinnest = self.window * 2 / 1000  # about two pixels
        runs: dict[str, list[Any] | None] = {}  # lane -> [bar, tasks, busy s, first key] of a mergeable bar
        for r in sorted(rows, key=lambda r: float(r["started"])):
            worker = str(r.get("worker") or "?")
            name = names.get(worker) or worker.removeprefix("tcp://")
            group = str(r.get("stage") or r.get("function") or "?")
            failed = r.get("state") == "erred"
            lane = self.lanes.lane(name, r.get("thread"))
            left = float(r["started"]) - self._origin
            took = float(r["finished"]) - float(r["started"])
            right = max(float(r["finished"]) - self._origin, left + thinnest)
            tiny = took < thinnest and not failed and not r.get("reconstruction")
            run = runs.get(lane) if tiny else None
            if run is not None and data["group"][run[0]] == group and left - data["right"][run[0]] < thinnest:
                i = run[0]
                run[1] += 1
                run[2] += took
                data["right"][i] = max(data["right"][i], right)
                data["key"][i] = f"{run[1]} tasks, from {run[3]}"
                data["ms"][i] = f"{run[2] * 1e3:.2f} busy in all"
                continue
            color = self._color(group)
            runs[lane] = [len(data["left"]), 1, took, str(r["key"])] if tiny else None
            data["left"].append(left)
            data["right"].append(right)
            data["lane"].append(lane)
            data["group"].append(group)
            data["color"].append(color)
            data["outline"].append(FAILED if failed else RECONSTRUCTED if r.get("reconstruction") else color)
            data["line_width"].append(2.5 if failed or r.get("reconstruction") else 0.5)
            data["key"].append(str(r["key"]))
            data["function"].append(str(r.get("function") or ""))
            data["stage"].append(str(r.get("stage") or "-"))
            data["worker"].append(name)
            data["ms"].append(f"{took * 1e3:.2f}")
            data["attempt"].append(int(r.get("attempt") or 1))
            data["state"].append(str(r.get("state")))
            data["kind"].append(str(r.get("kind") or "task"))
        return data

    def _color(self, group: str) -> str:
        color = self._colors.get(group)
        if color is None:
            color = self._colors[group] = PALETTE[len(self._colors) % len(PALETTE)]
        return color

    def _read(self, plugin: Any, now: float) -> None:
        """Take in the rows recorded since the last update, and those of the still-running ones that ended."""
        store = plugin.store
        if self._next < 0:  # first read: only what can still show
            self._next = max(store.first_index, store.next_index - self.max_bars)
        start = max(self._next, store.first_index, store.next_index - READ_LIMIT)
        self._next = min(store.next_index, start + READ_LIMIT)
        # a whole row is built only for an attempt that ended: one still running is only its index until then (a
        # flood of 10,000 queued tasks made each update build 10,000 rows it then threw away)
        ended = [i for i in self._open if not store.is_open(i)]
        for i in ended:
            del self._open[i]
        closed = []
        for i in range(start, self._next):
            if store.is_open(i):
                self._open[i] = None
            else:
                closed.append(i)
        for row in plugin.live([store.row(i) for i in (*closed, *ended) if store.holds(i)]):
            if (row.get("started") is not None and row.get("finished") is not None
                    and float(row["finished"]) >= now - self.window):
                self._ran.append(row)
                self._fresh.append(row)

    def update(self) -> None:
        plugin = records(self.scheduler)
        if plugin is None:
            text = ("task records are off (labcluster.records.enabled: false): no timeline"
                    if self.scheduler.extensions.get("labcluster") is not None else missing_extension_text())
            self.summary.text = f"<b>task timeline</b> &middot; {text}"
            return
        now = time()
        self._read(plugin, now)
        while self._ran and float(self._ran[0]["finished"]) < now - self.window - 60:
            self._ran.popleft()  # long gone from the window (rows arrive roughly in finishing order)
        names = worker_names(self.scheduler)
        fresh, self._fresh = self._fresh[-self.max_bars:], []
        data = self._bars(fresh, names)
        lanes: list[str] = sorted({str(f) for f in self.lane_range.factors} - {"(no tasks yet)"} | set(data["lane"]),
                                  key=ThreadLanes.order, reverse=True) or ["(no tasks yet)"]
        if list(self.lane_range.factors) != lanes:
            self.lane_range.factors = lanes
            self.figure.height = max(240, 26 * len(lanes) + 120)
        if fresh:
            ok = [i for i, state in enumerate(data["state"]) if state != "erred"]
            if ok:
                self.source.stream({c: [v[i] for i in ok] for c, v in data.items()}, rollover=self.max_bars)
            if len(ok) < len(fresh):
                bad = [i for i, state in enumerate(data["state"]) if state == "erred"]
                self.failed_source.stream({("failed_lane" if c == "lane" else c): [v[i] for i in bad]
                                           for c, v in data.items()}, rollover=self.max_bars)
        end = now - self._origin
        self.x_range.start, self.x_range.end = end - self.window, end
        step = max(1, round(self.window / 5))
        self.ticker.ticks = [end - k * step for k in range(int(self.window // step) + 1)]
        shown = sum(1 for r in self._ran if float(r["finished"]) >= now - self.window)
        running = len(self._open)
        markup = (f"<b>task timeline</b> &middot; {shown} finished in the last {self.window:g} s "
                  f"&middot; {running} running or waiting &middot; {plugin.store.next_index} recorded in all")
        if self.summary.text != markup:
            self.summary.text = markup
