"""The lineage page: what fed what, from the task records, at stage level by default.

**Stages** (the default, Spark's view): a node per stage (``with lc.stage(...)``) or, for tasks outside a stage,
per function, with counts (tasks, running, failed, lost, reconstructed); an arrow wherever one group's result fed
another's task, labelled with how many times. It is aggregated as rows arrive (:class:`LineageAggregate` reads each
record once, by the store's monotonic index), so its source has a row per group whether 10 or 10,000,000 tasks ran.
**Tasks** (Ray's view): a node per task attempt for the newest ``labcluster.dashboard.lineage-task-threshold``
tasks only, without labels (hover says what each is); older ones are left out and the page says so.

Marks, as in ``lc.lineage``: a dashed red outline where results were lost with a worker, orange where they were
rebuilt from lineage (reconstructions), dark red where tasks failed. Lost marks are looked for again whenever a
worker leaves (the only moment results are lost).

>>> agg = LineageAggregate()
>>> agg.add({"index": 0, "key": "a-1", "function": "load", "stage": None, "deps": [], "state": "memory"})
>>> agg.add({"index": 1, "key": "b-1", "function": "train", "stage": "fit", "deps": ["a-1"], "state": "memory",
...          "reconstruction": True})
>>> sorted(agg.groups), agg.edges, agg.groups["fit"].reconstructed
(['fit', 'load'], {('load', 'fit'): 1}, 1)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .. import config
from ..diagnostics.graph_svg import layers
from ..diagnostics.record_store import OPEN_SET
from .state import departures, missing_extension_text, records, replace_data

#: read at most this many new rows per update: a bigger burst (or a page opened late) is read over several updates,
#: so one update never holds the scheduler's event loop for long
READ_LIMIT = 10_000
#: keys remembered to find the group of a dependency (a dependency older than that counts as "(older tasks)")
KEYS_KEPT = 200_000
LOST, RECONSTRUCTED, FAILED = "#d62728", "#ff7f0e", "#7b0000"
_FILLS = ("#9ecae1", "#a1d99b", "#fdd0a2", "#dadaeb", "#c7e9c0", "#fdae6b", "#bcbddc", "#9e9ac8", "#e7cb94")
_STATE_FILL = {"memory": "#a1d99b", "erred": "#f4b6b0", "lost": "#ffffff", "released": "#d9d9d9"}
NODE_COLUMNS = ("x", "y", "name", "text", "fill", "stroke", "dash", "tasks", "running", "failed", "lost",
                "reconstructed", "kind")


@dataclass
class Group:
    """The counts of one stage or function."""

    tasks: int = 0
    running: int = 0
    failed: int = 0
    lost: int = 0
    reconstructed: int = 0
    actor_calls: int = 0
    order: int = 0


class LineageAggregate:
    """Groups and edges between them, built from record rows as they arrive (see the module docstring)."""

    def __init__(self, recent: int = 200) -> None:
        self.groups: dict[str, Group] = {}
        self.edges: dict[tuple[str, str], int] = {}
        self.key_group: dict[str, str] = {}
        #: rows still running when read: index -> group (looked at again each update)
        self.open: dict[int, str] = {}
        #: rows that finished in memory: index -> group (looked at again when a worker leaves: lost?)
        self.kept: dict[int, str] = {}
        self.lost_rows: set[int] = set()
        #: the newest rows, for the task-level view: (index, key, group, deps)
        self.recent: deque[tuple[int, str, str, tuple[str, ...]]] = deque(maxlen=recent)

    def group_of(self, row: dict[str, Any]) -> str:
        return str(row.get("stage") or row.get("function") or "?")

    def add(self, row: dict[str, Any]) -> None:
        """Take in one record row (a dict, as ``lc.list_tasks`` gives)."""
        self.add_brief(int(row["index"]), str(row["key"]), self.group_of(row),
                       tuple(str(d) for d in row.get("deps") or ()), str(row.get("state")),
                       row.get("kind") == "actor call", bool(row.get("reconstruction")))

    def add_brief(self, index: int, key: str, name: str, deps: tuple[str, ...], state: str, actor_call: bool,
                  rebuilt: bool) -> None:
        """Take in one row as ``RecordsPlugin.lineage_rows`` gives it (what :meth:`add` reads of a whole row)."""
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(order=len(self.groups))
        group.tasks += 1
        group.actor_calls += actor_call
        group.reconstructed += rebuilt
        for dep in deps:
            edge = (self.key_group.get(dep, "(older tasks)"), name)
            self.edges[edge] = self.edges.get(edge, 0) + 1
        self.key_group[key] = name
        while len(self.key_group) > KEYS_KEPT:
            self.key_group.pop(next(iter(self.key_group)))
        self.recent.append((index, key, name, deps))
        self._count(index, name, state)

    def _count(self, index: int, name: str, state: str) -> None:
        group = self.groups[name]
        if state in OPEN_SET:
            group.running += 1
            self.open[index] = name
        elif state == "erred":
            group.failed += 1
        elif state == "lost":
            group.lost += 1
            self.lost_rows.add(index)
        elif state == "memory":
            self.kept[index] = name
            while len(self.kept) > KEYS_KEPT:
                self.kept.pop(next(iter(self.kept)))

    def recheck(self, store: Any, worker_left: bool) -> None:
        """Rows that were running and ended since; when a worker left, results lost with it."""
        for index in [i for i in self.open if not store.holds(i) or store.state_of(i) not in OPEN_SET]:
            name = self.open.pop(index)
            self.groups[name].running -= 1
            if store.holds(index):
                self._count(index, name, store.state_of(index))
        if worker_left:
            for index in [i for i in self.kept if store.holds(i) and store.state_of(i) == "lost"]:
                name = self.kept.pop(index)
                if index not in self.lost_rows:
                    self.lost_rows.add(index)
                    self.groups[name].lost += 1

    def stage_nodes(self) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The stage-level graph: (node columns, edge columns), laid out in layers left to right."""
        names = sorted(self.groups, key=lambda n: self.groups[n].order)
        if any(a == "(older tasks)" for a, _ in self.edges):
            names.insert(0, "(older tasks)")
        edges = [(a, b) for a, b in self.edges if a != b]
        nodes: dict[str, list[Any]] = {c: [] for c in NODE_COLUMNS}
        pos = _layout(names, edges)
        for i, name in enumerate(names):
            g = self.groups.get(name, Group())
            parts = [f"{g.tasks} task{'s' if g.tasks != 1 else ''}"]
            parts += [f"{n} {what}" for n, what in ((g.running, "running"), (g.failed, "failed"), (g.lost, "lost"),
                                                    (g.reconstructed, "rebuilt")) if n]
            stroke, dash = ((LOST, "dashed") if g.lost else (FAILED, "solid") if g.failed else
                            (RECONSTRUCTED, "solid") if g.reconstructed else ("#555555", "solid"))
            x, y = pos[name]
            for col, value in (("x", x), ("y", y), ("name", name), ("text", f"{name}\n{' · '.join(parts)}"),
                               ("fill", _FILLS[i % len(_FILLS)] if name != "(older tasks)" else "#eeeeee"),
                               ("stroke", stroke), ("dash", dash), ("tasks", g.tasks), ("running", g.running),
                               ("failed", g.failed), ("lost", g.lost), ("reconstructed", g.reconstructed),
                               ("kind", "stage or function")):
                nodes[col].append(value)
        return nodes, _edge_columns(pos, [(a, b, self.edges[(a, b)]) for a, b in edges])

    def task_nodes(self, store: Any) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The task-level graph of the newest rows: a node per attempt, no labels."""
        latest = {key: (index, group, deps) for index, key, group, deps in self.recent}
        ids = list(latest)
        edges = [(d, k) for k, (_, _, deps) in latest.items() for d in deps if d in latest]
        pos = _layout(ids, edges)
        nodes: dict[str, list[Any]] = {c: [] for c in NODE_COLUMNS}
        for key in ids:
            index, group, _ = latest[key]
            state = store.state_of(index) if store.holds(index) else "dropped"
            x, y = pos[key]
            rebuilt = store.holds(index) and bool(store.row(index)["reconstruction"])
            stroke = LOST if state == "lost" else FAILED if state == "erred" else RECONSTRUCTED if rebuilt else "#555"
            for col, value in (("x", x), ("y", y), ("name", key), ("text", ""),
                               ("fill", _STATE_FILL.get(state, "#9ecae1")), ("stroke", stroke),
                               ("dash", "dashed" if state == "lost" else "solid"), ("tasks", 1),
                               ("running", int(state in OPEN_SET)), ("failed", int(state == "erred")),
                               ("lost", int(state == "lost")), ("reconstructed", int(rebuilt)), ("kind", group)):
                nodes[col].append(value)
        return nodes, _edge_columns(pos, [(a, b, 1) for a, b in edges])


def _layout(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Columns by longest path from a source (``diagnostics.graph_svg.layers``, as ``lc.lineage`` draws), rows in
    order of first appearance within a column, centred."""
    depth = layers(ids, edges)
    columns: dict[int, list[str]] = {}
    for i in ids:
        columns.setdefault(depth[i], []).append(i)
    pos: dict[str, tuple[float, float]] = {}
    for col, members in columns.items():
        for row, i in enumerate(members):
            pos[i] = (float(col), -(row - (len(members) - 1) / 2))
    return pos


EDGE_COLUMNS = ("x0", "y0", "x1", "y1", "mx", "my", "count", "width")


def _edge_columns(pos: dict[str, tuple[float, float]], edges: list[tuple[str, str, int]]) -> dict[str, list[Any]]:
    """An arrow per edge, ending short of the target node (so its head shows), and where its count label goes."""
    out: dict[str, list[Any]] = {c: [] for c in EDGE_COLUMNS}
    for a, b, n in edges:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        for col, value in (("x0", x0 + 0.04), ("y0", y0), ("x1", x1 - 0.06), ("y1", y1),
                           ("mx", (x0 + x1) / 2), ("my", (y0 + y1) / 2), ("count", f"{n:,}"),
                           ("width", 1.0 + min(4.0, n ** 0.5 / 8))):
            out[col].append(value)
    return out


class LineageGraph:
    """The lineage page's graph, stage level by default (see the module docstring)."""

    def __init__(self, scheduler: Any, threshold: int | None = None, **kwargs: Any) -> None:
        from bokeh.layouts import column, row
        from bokeh.models import ColumnDataSource, HoverTool, Range1d, SingleIntervalTicker
        from bokeh.models.annotations import Arrow, LabelSet, VeeHead
        from bokeh.models.widgets import Div, RadioButtonGroup
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self.threshold = int(threshold if threshold is not None else config.get("dashboard.lineage-task-threshold"))
        self.aggregate = LineageAggregate(recent=self.threshold)
        self._next = 0
        self._departures: tuple[float, ...] = departures(scheduler)
        self.source = ColumnDataSource({c: [] for c in NODE_COLUMNS})
        self.edge_source = ColumnDataSource({c: [] for c in EDGE_COLUMNS})
        self.view = RadioButtonGroup(labels=["stages", f"tasks (newest {self.threshold})"], active=0)
        self.summary = Div(text="", styles={"font-size": "13px"})
        self.x_range, self.y_range = Range1d(start=-0.5, end=1.5), Range1d(start=-1.5, end=1.5)
        self.figure = figure(title="lineage: stages (or functions) and what fed what", x_range=self.x_range,
                             y_range=self.y_range, height=int(kwargs.pop("height", 480)), width=1100,
                             tools="pan,wheel_zoom,reset,save", x_axis_label="depth (longest chain of inputs)",
                             **kwargs)
        # bokeh's type stubs call the shaft's line properties body_line_*; at run time they are line_*
        shaft: dict[str, Any] = {"line_width": "width", "line_color": "#999999", "line_alpha": 0.9}
        self.figure.add_layout(Arrow(x_start="x0", y_start="y0", x_end="x1", y_end="y1", source=self.edge_source,
                                     end=VeeHead(size=10, fill_color="#777777", line_color="#777777"), **shaft))
        self.edge_labels = LabelSet(x="mx", y="my", text="count", y_offset=4, text_font_size="10px",
                                    text_color="#666666", text_align="center", source=self.edge_source)
        self.figure.add_layout(self.edge_labels)
        nodes = self.figure.scatter(x="x", y="y", size=22, marker="square", fill_color="fill", line_color="stroke",
                                    line_dash="dash", line_width=3, source=self.source)
        self.labels = LabelSet(x="x", y="y", text="text", x_offset=16, y_offset=-10, text_font_size="11px",
                               source=self.source)
        self.figure.add_layout(self.labels)
        self.figure.add_tools(HoverTool(renderers=[nodes], tooltips=[
            ("name", "@name"), ("of", "@kind"), ("tasks", "@tasks"), ("running", "@running"), ("failed", "@failed"),
            ("lost", "@lost"), ("reconstructed", "@reconstructed")]))
        self.figure.xaxis.ticker = SingleIntervalTicker(interval=1)
        self.figure.yaxis.visible = False
        self.figure.grid.visible = False
        legend = Div(text=(f'marks: <span style="color:{LOST}">dashed red: results lost with a worker</span> '
                           f'&middot; <span style="color:{RECONSTRUCTED}">orange: rebuilt from lineage</span> '
                           f'&middot; <span style="color:{FAILED}">dark red: failed</span>'),
                     styles={"font-size": "12px"})
        self.root = column(row(self.view, self.summary), self.figure, legend, sizing_mode="stretch_width")

    def update(self) -> None:
        plugin = records(self.scheduler)
        if plugin is None:
            text = ("task records are off (labcluster.records.enabled: false): no lineage"
                    if self.scheduler.extensions.get("labcluster") is not None else missing_extension_text())
            self.summary.text = f"<b>lineage</b> &middot; {text}"
            return
        store = plugin.store
        rows = plugin.lineage_rows(max(self._next, store.first_index), READ_LIMIT)
        self._next = rows[-1][0] + 1 if rows else max(self._next, store.first_index)
        for row in rows:
            self.aggregate.add_brief(*row)
        now_left = departures(self.scheduler)
        self.aggregate.recheck(store, worker_left=now_left != self._departures)
        self._departures = now_left
        tasks = sum(g.tasks for g in self.aggregate.groups.values())
        task_view = self.view.active == 1
        nodes, edges = self.aggregate.task_nodes(store) if task_view else self.aggregate.stage_nodes()
        self.labels.visible = self.edge_labels.visible = not task_view
        xs, ys = nodes["x"] or [0.0], nodes["y"] or [0.0]
        self.x_range.start, self.x_range.end = min(xs) - 0.5, max(xs) + (1.5 if not task_view else 0.5)
        self.y_range.start, self.y_range.end = min(ys) - 0.8, max(ys) + 0.8
        replace_data(self.source, nodes)
        replace_data(self.edge_source, edges)
        left_out = max(0, tasks - self.threshold) if task_view else 0
        dropped = f" &middot; {store.dropped} oldest records dropped" if store.dropped else ""
        view = (f"the newest {len(nodes['name'])} tasks" + (f" ({left_out} older not drawn)" if left_out else "")
                if task_view else f"{len(self.aggregate.groups)} stages or functions")
        markup = f"<b>lineage</b> &middot; {tasks} task attempts recorded &middot; showing {view}{dropped}"
        if self.summary.text != markup:
            self.summary.text = markup
