"""``lc.lineage(ref)``: everything an object depends on, from the task records, at two grains.

- **tasks** (fine-grained, Ray's view): a node per task, actor call or ``lc.put`` object, an edge per
  dependency, marked when the object was lost with a worker or rebuilt from its lineage.
- **stages** (coarse, Spark's view): tasks grouped by stage (``with lc.stage("name"):`` around the
  ``.remote()`` calls, else the function name), with counts, and an edge between groups wherever one
  group's task feeds another's.

Both render as pictures in a notebook and export with ``to_dict()`` and ``to_dot()`` (Graphviz).

>>> g = lc.lineage(ref)                 # doctest: +SKIP
>>> g                                   # a picture in a notebook   # doctest: +SKIP
>>> g.stages.to_dict()["nodes"]         # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..diagnostics.graph_svg import Node, layered_svg, layers
from .boundary import entry
from .calls import call
from .history import STATE_NAMES, duration
from .refs import ObjectRef
from .start import current_session

_PALETTE = ("#9ecae1", "#a1d99b", "#fdd0a2", "#dadaeb", "#c7e9c0", "#fdae6b", "#bcbddc", "#9e9ac8", "#e7cb94",
            "#d9d9d9")
LOST, RECONSTRUCTED, FAILED = "#d62728", "#ff7f0e", "#7b0000"
#: a failed node's fill: the palette has no colour this red
FAILED_FILL = "#f4b6b0"
#: the marks a node can carry: (node field that says so, stroke, dashed, what the legend says)
_MARKS = (("lost", LOST, True, "dashed red: lost"), ("failed", FAILED, False, "red: failed"),
          ("reconstructed", RECONSTRUCTED, False, "orange: reconstructed"))
MAX_DRAWN = 400


def _color(name: str, names: list[str]) -> str:
    return _PALETTE[names.index(name) % len(_PALETTE)] if name in names else _PALETTE[-1]


def _legend(names: list[str], marks: list[tuple[str, str, bool, str]]) -> str:
    """One legend: the groups' colours, in pipeline order, and only the marks some node carries."""
    groups = " ".join(f'<span style="background:{_color(n, names)}; padding:0 4px">{html.escape(n)}</span>'
                      for n in names[:20])
    shown = " &middot; ".join(f'<span style="color:{stroke}">&#9711; {html.escape(text)}</span>'
                              for _, stroke, _, text in marks)
    return f"<div style='margin: 4px 0'>{groups}{'<br>' + shown if shown else ''}</div>"


def _dot_id(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _View:
    """One grain of a lineage graph: ``nodes`` (dicts) and ``edges`` ((source, target) or with a count)."""

    grain = ""

    def __init__(self, nodes: dict[str, dict[str, Any]], edges: list[tuple[str, str, int]]) -> None:
        self.nodes = nodes
        self.edges = edges

    def to_dict(self) -> dict[str, Any]:
        return {"grain": self.grain, "nodes": list(self.nodes.values()),
                "edges": [{"source": a, "target": b, "count": n} for a, b, n in self.edges]}

    def _style(self, node: dict[str, Any]) -> tuple[str, bool]:
        for field, stroke, dashed, _ in _MARKS:
            if node.get(field):
                return stroke, dashed
        return "#333333", False

    def groups(self) -> list[str]:
        """The groups (stages, or functions) in pipeline order: by how early their first node comes, then name."""
        depth = layers(list(self.nodes), [(a, b) for a, b, _ in self.edges])
        first: dict[str, int] = {}
        for nid, node in self.nodes.items():
            group = str(node.get("group") or node.get("function"))
            first[group] = min(first.get(group, depth.get(nid, 0)), depth.get(nid, 0))
        return sorted(first, key=lambda g: (first[g], g))

    def marks(self) -> list[tuple[str, str, bool, str]]:
        """The marks some node of this view carries (lost, failed, reconstructed)."""
        return [m for m in _MARKS if any(n.get(m[0]) for n in self.nodes.values())]

    def to_dot(self) -> str:
        lines = [f"digraph lineage_{self.grain} {{", "  rankdir=LR;", '  node [style=filled, fontname="sans-serif"];']
        for nid, node in self.nodes.items():
            stroke, dashed = self._style(node)
            shape = "box" if self._boxed(node) else "ellipse"
            label = self._label(node).replace('"', "'")
            extra = ", style=\"filled,dashed\"" if dashed else ""
            lines.append(f'  {_dot_id(nid)} [label="{label}", shape={shape}, color="{stroke}", penwidth=2{extra}];')
        for a, b, n in self.edges:
            label = f' [label="{n}"]' if n > 1 else ""
            lines.append(f"  {_dot_id(a)} -> {_dot_id(b)}{label};")
        lines.append("}")
        return "\n".join(lines)

    def _label(self, node: dict[str, Any]) -> str:
        raise NotImplementedError

    def _boxed(self, node: dict[str, Any]) -> bool:
        """Stages and data (``lc.put``) are boxes; tasks are round."""
        return self.grain == "stages" or node.get("kind") == "data"

    def _title(self, node: dict[str, Any]) -> str:
        """The hover text: the error first, for a failed node, then every known field."""
        error = f"error: {node['error']}\n" if node.get("error") else ""
        return error + "\n".join(f"{k}: {v}" for k, v in node.items() if v not in (None, "", [], {}, False)
                                  and k != "error")

    def _svg(self, names: list[str] | None = None, legend: bool = True) -> str:
        names = names if names is not None else self.groups()
        drawn = list(self.nodes)[:MAX_DRAWN]
        keep = set(drawn)
        nodes = []
        for nid in drawn:
            node = self.nodes[nid]
            stroke, dashed = self._style(node)
            fill = FAILED_FILL if node.get("failed") else _color(str(node.get("group") or node.get("function")), names)
            nodes.append(Node(nid, self._label(node), fill=fill, stroke=stroke, dashed=dashed, title=self._title(node),
                              shape="box" if self._boxed(node) else "circle"))
        svg = layered_svg(nodes, [(a, b) for a, b, _ in self.edges if a in keep and b in keep])
        more = (f"<p>{len(self.nodes) - len(drawn)} more nodes not drawn; to_dot() / to_dict() have them all.</p>"
                if len(drawn) < len(self.nodes) else "")
        key = _legend(names, self.marks()) if legend else ""
        return f"<div>{key}{svg}{more}</div>"

    def _repr_html_(self) -> str:
        return f"<div><strong>lineage, {self.grain} view</strong>: {len(self.nodes)} nodes{self._svg()}</div>"

    def __repr__(self) -> str:
        return f"<lineage {self.grain} view: {len(self.nodes)} nodes, {len(self.edges)} edges>"


class TaskView(_View):
    grain = "tasks"

    def _label(self, node: dict[str, Any]) -> str:
        return str(node["function"])


class StageView(_View):
    grain = "stages"

    def _label(self, node: dict[str, Any]) -> str:
        marks = [f"{node[k]} {word}" for k, word in (("reconstructed", "rebuilt"), ("lost", "lost"),
                                                     ("failed", "failed")) if node.get(k)]
        return f"{node['group']} x{node['count']}" + (f" ({', '.join(marks)})" if marks else "")


class LineageGraph:
    """What an object depends on, from the task records: ``.tasks`` (fine) and ``.stages`` (coarse) views."""

    def __init__(self, roots: Sequence[str], rows: Sequence[dict[str, Any]], missing: Sequence[str],
                 current: dict[str, str], truncated: bool = False) -> None:
        self.roots = list(roots)
        self.truncated = truncated
        attempts: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            attempts.setdefault(row["key"], []).append(row)
        nodes: dict[str, dict[str, Any]] = {}
        edges: list[tuple[str, str, int]] = []
        for key, tries in attempts.items():
            last = tries[-1]
            state = STATE_NAMES.get(last["state"], last["state"])
            nodes[key] = {
                "key": key, "function": last["function"], "group": last.get("stage") or last["function"],
                "name": last.get("name"), "kind": last["kind"], "state": state, "attempts": len(tries),
                "reconstructed": any(t["reconstruction"] for t in tries),
                "reconstructions": sum(1 for t in tries if t["reconstruction"]),
                "lost": state == "lost", "failed": state == "failed",
                "worker": last.get("worker"), "nbytes": last.get("nbytes"),
                "seconds": duration(last),
                "reasons": [t["reason"] for t in tries if t.get("reason")], "error": last.get("error"),
            }
            edges.extend((dep, key, 1) for dep in last["deps"])
        for key in missing:  # lc.put data (never a task) or rows already dropped
            state = current.get(key, "forgotten")
            nodes[key] = {"key": key, "function": "put" if state in ("memory", "forgotten") else key.split("-")[0],
                          "group": "put", "name": None, "kind": "data",
                          "state": "finished" if state == "memory" else "lost" if state == "forgotten" else state,
                          "attempts": 0, "reconstructed": False, "reconstructions": 0,
                          "lost": state in ("forgotten", "released"), "failed": False, "worker": None, "nbytes": None,
                          "seconds": None, "reasons": [], "error": None}
        self.tasks = TaskView(nodes, [e for e in edges if e[0] in nodes])
        self.stages = self._group(nodes, self.tasks.edges)

    @staticmethod
    def _group(nodes: dict[str, dict[str, Any]], edges: list[tuple[str, str, int]]) -> StageView:
        groups: dict[str, dict[str, Any]] = {}
        for node in nodes.values():
            g = groups.setdefault(str(node["group"]), {"group": str(node["group"]), "count": 0, "states": Counter(),
                                                       "reconstructed": 0, "lost": 0, "failed": 0, "seconds": 0.0})
            g["count"] += 1
            g["states"][node["state"]] += 1
            g["reconstructed"] += int(node["reconstructed"])
            g["lost"] += int(node["lost"])
            g["failed"] += int(node["failed"])
            if node.get("error") and not g.get("error"):
                g["error"] = node["error"]
            g["seconds"] += node["seconds"] or 0.0
        for g in groups.values():
            g["states"] = dict(g["states"])
        counts: Counter[tuple[str, str]] = Counter()
        for a, b, _ in edges:
            ga, gb = str(nodes[a]["group"]), str(nodes[b]["group"])
            if ga != gb:
                counts[(ga, gb)] += 1
        return StageView(groups, [(a, b, n) for (a, b), n in counts.items()])

    @property
    def reconstructed(self) -> list[str]:
        """Keys rebuilt from their lineage after their result was lost with a worker."""
        return [k for k, n in self.tasks.nodes.items() if n["reconstructed"]]

    @property
    def lost(self) -> list[str]:
        """Keys whose only copy was lost and that have not been rebuilt (yet)."""
        return [k for k, n in self.tasks.nodes.items() if n["lost"]]

    def to_dict(self) -> dict[str, Any]:
        return {"roots": self.roots, "truncated": self.truncated, "tasks": self.tasks.to_dict(),
                "stages": self.stages.to_dict()}

    def to_dot(self, grain: str = "tasks") -> str:
        """Graphviz source of the ``tasks`` (default) or ``stages`` view."""
        if grain not in ("tasks", "stages"):
            raise ValueError(f"grain must be 'tasks' or 'stages', got {grain!r}")
        return self.tasks.to_dot() if grain == "tasks" else self.stages.to_dot()

    def __repr__(self) -> str:
        return (f"<LineageGraph of {len(self.roots)} object(s): {len(self.tasks.nodes)} tasks in "
                f"{len(self.stages.nodes)} stages; {len(self.reconstructed)} reconstructed, {len(self.lost)} lost>")

    def _repr_html_(self) -> str:
        note = "<p>(truncated: the graph is larger than the limit)</p>" if self.truncated else ""
        failed = sum(1 for n in self.tasks.nodes.values() if n["failed"])
        names = self.stages.groups()
        marks = [m for m in _MARKS if any(n.get(m[0]) for n in self.tasks.nodes.values())]
        head = "margin: 8px 0 2px 0"
        return (f"<div><strong>LineageGraph</strong>: {len(self.tasks.nodes)} tasks in {len(self.stages.nodes)} "
                f"stages, {len(self.reconstructed)} reconstructed, {len(self.lost)} lost, {failed} failed{note}"
                f"{_legend(names, marks)}<div style='{head}'><em>stages</em> (Spark's coarse lineage)</div>"
                f"{self.stages._svg(names, legend=False)}<div style='{head}'><em>tasks</em> (Ray's fine lineage)</div>"
                f"{self.tasks._svg(names, legend=False)}</div>")


@entry
def lineage(refs: ObjectRef | Sequence[ObjectRef], *, limit: int = 100_000) -> LineageGraph:
    """The lineage of one object or several: every task, actor call and ``lc.put`` they depend on.

    >>> g = lc.lineage(result_ref)          # doctest: +SKIP
    >>> g.stages                            # the coarse, Spark-style picture   # doctest: +SKIP
    """
    items = [refs] if isinstance(refs, ObjectRef) else list(refs)
    if not items or not all(isinstance(r, ObjectRef) for r in items):
        raise TypeError("lc.lineage() takes an ObjectRef or a list of them")
    for ref in items:  # an actor call's small result becomes a key only when a task needs it; its record exists
        if ref._call is not None:
            ref._call.done.wait()
    return lineage_of_keys([r.key for r in items], limit=limit)


def lineage_of_keys(keys: Sequence[str], *, limit: int = 100_000) -> LineageGraph:
    """The lineage of the objects with these keys, held or not (the records outlive them): for layers that keep
    a job's keys, not its results (``RDD.lineage()``)."""
    session = current_session(auto_init=False)
    session.require_extension("lineage")
    result = call(session.client, "lineage", keys=list(keys), limit=limit)
    if not result["enabled"]:
        raise RuntimeError("this scheduler keeps no task records: start it with `labcluster scheduler` or lc.init()")
    names = call(session.client, "worker_names")  # node titles name workers as lc.nodes() does, not by address
    for row in result["rows"]:
        row["worker"] = names.get(row.get("worker"), row.get("worker"))
    return LineageGraph(list(keys), result["rows"], result["missing"], result["current"], result["truncated"])
