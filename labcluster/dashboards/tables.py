"""Two of the scheduler extension's tables as bokeh DataTables: actors, and placement-group reservations.

- :class:`ActorTable` (the actors page): per actor its state (``PENDING``, ``ALIVE``, ``RESTARTING``, ``DEAD``),
  class, name, the worker it lives on, restarts left (``max_restarts`` less those used; "unlimited" for -1), the
  resources it holds, and why a dead one died. Pending calls: a call goes from its caller straight to the actor's
  worker (no scheduler hop, see ``api/actor_host.py``), so the scheduler sees a call only once it has finished;
  the column says so instead of showing a number it does not have (``lc.list_actors()`` in a driver counts that
  driver's own pending calls).
- :class:`PlacementGroupTable` (the resources page): per group its name, state, strategy, each bundle's resources
  and the worker that reserves it.

Both read the same handlers the client API calls (``labcluster_actor_list``, ``labcluster_pg_table``), in process.

>>> actor_rows([{"id": "A-1", "class": "Model", "name": "m", "state": "ALIVE", "worker": "gpu-0",
...              "max_restarts": 2, "restarts": 1, "resources": {"GPU": 1}}])["restarts_left"]
['1 of 2']
>>> resources_text({"CPU": 1.0, "GPU": 1.0})
'CPU 1, GPU 1'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .state import actors, placement_groups

#: what the pending-calls column says (see the module docstring)
PENDING_CALLS = "caller-side"


def resources_text(resources: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k} {float(v):g}" for k, v in sorted((resources or {}).items())) or "-"


def restarts_left(entry: Mapping[str, Any]) -> str:
    limit = int(entry.get("max_restarts") or 0)
    if limit == -1:
        return "unlimited"
    if entry.get("state") == "DEAD":
        return f"0 of {limit}"
    used = int(entry.get("restarts") or 0)
    return f"{max(limit - used, 0)} of {limit}"


ACTOR_COLUMNS = (("state", "state", 90), ("class_name", "class", 140), ("name", "name", 120),
                 ("worker", "worker", 110), ("restarts_left", "restarts left", 100),
                 ("pending_calls", "pending calls", 100), ("resources", "resources", 130), ("id", "actor id", 160),
                 ("error", "error", 320))


def actor_rows(entries: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The columns of :class:`ActorTable`'s source, live actors first."""
    order = {"ALIVE": 0, "RESTARTING": 1, "PENDING": 2, "DEAD": 3}
    data: dict[str, list[Any]] = {name: [] for name, _, _ in ACTOR_COLUMNS}
    for e in sorted(entries, key=lambda e: (order.get(str(e.get("state")), 4), str(e.get("class")),
                                            str(e.get("id")))):
        data["state"].append(str(e.get("state") or "?"))
        data["class_name"].append(str(e.get("class") or "?"))
        data["name"].append(str(e.get("name") or ""))
        data["worker"].append(str(e.get("worker") or "-"))
        data["restarts_left"].append(restarts_left(e))
        data["pending_calls"].append(PENDING_CALLS)
        data["resources"].append(resources_text(e.get("resources")))
        data["id"].append(str(e.get("id") or ""))
        data["error"].append(str(e.get("error") or "")[:300])
    return data


PG_COLUMNS = (("name", "name", 120), ("state", "state", 90), ("strategy", "strategy", 110),
              ("bundle", "bundle", 60), ("resources", "reserves", 160), ("worker", "on worker", 120),
              ("id", "group id", 200))


def placement_rows(table: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The columns of :class:`PlacementGroupTable`'s source: one row per bundle of every group.

    >>> placement_rows({"pg-1": {"name": "g", "state": "CREATED", "strategy": "PACK",
    ...                          "bundles": [{"CPU": 1}, {"GPU": 1}], "workers": ["cpu-0", "gpu-0"]}})["worker"]
    ['cpu-0', 'gpu-0']
    """
    data: dict[str, list[Any]] = {name: [] for name, _, _ in PG_COLUMNS}
    for pg_id, entry in table.items():
        bundles = list(entry.get("bundles") or [])
        placed = list(entry.get("workers") or [])
        for i, bundle in enumerate(bundles):
            data["name"].append(str(entry.get("name") or ""))
            data["state"].append(str(entry.get("state") or "?"))
            data["strategy"].append(str(entry.get("strategy") or ""))
            data["bundle"].append(i)
            data["resources"].append(resources_text(bundle))
            data["worker"].append(placed[i] if i < len(placed) else "(not placed)")
            data["id"].append(str(pg_id))
    return data


def _table(source: Any, columns: tuple[tuple[str, str, int], ...], height: int, **kwargs: Any) -> Any:
    from bokeh.models.widgets import DataTable, HTMLTemplateFormatter, TableColumn

    state = HTMLTemplateFormatter(template=(
        '<span style="font-weight:600;color:<%= value == "ALIVE" || value == "CREATED" ? "#2a7" : '
        'value == "DEAD" || value == "REMOVED" ? "#b00020" : "#c80" %>"><%= value %></span>'))
    cols = [TableColumn(field=field, title=title, width=width) for field, title, width in columns]
    for col in cols:
        if col.field == "state":
            col.formatter = state
    return DataTable(source=source, columns=cols, height=height, index_position=None, sortable=True,
                     autosize_mode="none", **kwargs)


class ActorTable:
    """Every actor the scheduler knows (see the module docstring)."""

    def __init__(self, scheduler: Any, **kwargs: Any) -> None:
        from bokeh.layouts import column
        from bokeh.models import ColumnDataSource
        from bokeh.models.widgets import Div

        self.scheduler = scheduler
        self.source = ColumnDataSource(actor_rows([]))
        self.summary = Div(text="", styles={"font-size": "13px"})
        note = Div(text=f"<i>pending calls</i>: {PENDING_CALLS} &mdash; a call travels from its caller straight to "
                        "the actor's worker, so the scheduler learns of it only once it finished; "
                        "<code>lc.list_actors()</code> in a driver shows the calls that driver has pending.",
                   styles={"font-size": "12px", "color": "#555"}, width=860)
        self.table = _table(self.source, ACTOR_COLUMNS, int(kwargs.pop("height", _height(0, 600))), width=1300,
                            **kwargs)
        self.root = column(self.summary, self.table, note, sizing_mode="stretch_width")

    def update(self) -> None:
        entries = actors(self.scheduler)
        data = actor_rows(entries)
        counts: dict[str, int] = {}
        for state in data["state"]:
            counts[state] = counts.get(state, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none yet"
        markup = f"<b>actors</b> &middot; {len(entries)} in all: {text}"
        if self.summary.text != markup:
            self.summary.text = markup
        if dict(self.source.data) != data:
            self.source.data = data
            self.table.height = _height(len(entries), 600)


def _height(rows: int, most: int) -> int:
    """A table as tall as its rows (a header and at least one row), up to ``most`` pixels (then it scrolls)."""
    return min(most, 28 * (max(rows, 1) + 1) + 8)


class PlacementGroupTable:
    """Placement-group reservations, a row per bundle (see the module docstring)."""

    def __init__(self, scheduler: Any, **kwargs: Any) -> None:
        from bokeh.layouts import column
        from bokeh.models import ColumnDataSource
        from bokeh.models.widgets import Div

        self.scheduler = scheduler
        self.source = ColumnDataSource(placement_rows({}))
        self.summary = Div(text="<b>placement groups</b>", styles={"font-size": "13px"})
        self.table = _table(self.source, PG_COLUMNS, int(kwargs.pop("height", _height(0, 300))), width=860, **kwargs)
        self.root = column(self.summary, self.table, sizing_mode="stretch_width")

    def update(self) -> None:
        table = placement_groups(self.scheduler)
        live = sum(1 for e in table.values() if e.get("state") != "REMOVED")
        markup = (f"<b>placement groups</b> &middot; {live} reserving, {len(table) - live} removed"
                  if table else "<b>placement groups</b> &middot; none")
        if self.summary.text != markup:
            self.summary.text = markup
        data = placement_rows(table)
        if dict(self.source.data) != data:
            self.source.data = data
            self.table.height = _height(len(data["id"]), 300)
