"""Layered SVG drawings of directed acyclic graphs, for notebook ``_repr_html_`` (no graphviz needed).

Nodes go in columns by their longest distance from a source (left to right, the order work ran in) and
are stacked within a column; edges are straight lines. Big graphs stay cheap: no labels past ``labels_up_to``
nodes (every node keeps a hover title), and the caller caps how many nodes are drawn at all.

>>> svg = layered_svg([Node("a", "load"), Node("b", "train")], [("a", "b")])
>>> svg.startswith("<svg") and "train" in svg
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass


def _box_width(label: str, labelled: bool, radius: int) -> float:
    return 8 + 6.5 * min(len(label), 22) if labelled else 2.0 * radius


@dataclass
class Node:
    id: str
    label: str
    fill: str = "#9ecae1"
    stroke: str = "#333333"
    dashed: bool = False
    title: str = ""
    shape: str = "circle"  # or "box"


def layers(ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: 0 for sources, else 1 + the largest column of its predecessors."""
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        if a in preds and b in preds:
            preds[b].append(a)
            succs[a].append(b)
    indegree = {i: len(p) for i, p in preds.items()}
    ready = [i for i in ids if indegree[i] == 0]
    depth = dict.fromkeys(ids, 0)
    while ready:
        node = ready.pop()
        for nxt in succs[node]:
            depth[nxt] = max(depth[nxt], depth[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return depth


def layered_svg(nodes: Sequence[Node], edges: Sequence[tuple[str, str]], *, labels_up_to: int = 60,
                max_width: int = 1100, max_height: int = 520) -> str:
    """An ``<svg>`` (wrapped in a scrolling ``<div>`` when larger than ``max_width`` x ``max_height``)."""
    by_id = {n.id: n for n in nodes}
    depth = layers([n.id for n in nodes], edges)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(depth[n.id], []).append(n.id)
    # one left-to-right pass: order each column by where its predecessors sit (fewer crossing edges)
    preds: dict[str, list[str]] = {}
    for a, b in edges:
        preds.setdefault(b, []).append(a)
    row_of: dict[str, float] = {}
    for col in sorted(columns):
        ids = columns[col]
        ids.sort(key=lambda i: sum(row_of.get(p, 0.0) for p in preds.get(i, ())) / max(1, len(preds.get(i, ()))))
        row_of.update({i: float(r) for r, i in enumerate(ids)})
    labelled = len(nodes) <= labels_up_to
    boxes = any(n.shape == "box" for n in nodes)
    dx = (170 if boxes else 90) if labelled else 22
    dy = 48 if labelled else 18
    radius = 9 if labelled else 6
    pos = {nid: (30 + col * dx, 24 + row * dy) for col, ids in columns.items() for row, nid in enumerate(ids)}
    width = 60 + max(columns, default=0) * dx + (160 if labelled else 0)
    rows = max((len(ids) for ids in columns.values()), default=1)
    height = 24 + (rows - 1) * dy + (radius + 16 if labelled else radius + 4)  # the last row, its label: no more
    def extent(nid: str) -> tuple[float, float]:  # left and right x of a node's shape
        x = pos[nid][0]
        if by_id[nid].shape == "box":
            return x - 6, x - 6 + _box_width(by_id[nid].label, labelled, radius)
        return x - radius, x + radius

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'style="font: 11px sans-serif"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
             f'markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
             f'fill="#888"/></marker></defs>']
    for a, b in edges:
        if a in pos and b in pos:
            x1, x2 = extent(a)[1], extent(b)[0]
            parts.append(f'<line x1="{x1:.1f}" y1="{pos[a][1]}" x2="{x2:.1f}" y2="{pos[b][1]}" stroke="#888" '
                         f'stroke-width="1" marker-end="url(#arrow)"/>')
    for nid, (x, y) in pos.items():
        n = by_id[nid]
        dash = ' stroke-dasharray="3,2"' if n.dashed else ""
        title = f"<title>{html.escape(n.title or n.label)}</title>"
        if n.shape == "box":
            parts.append(f'<g><rect x="{x - 6}" y="{y - 11}" width="{_box_width(n.label, labelled, radius):.1f}" '
                         f'height="22" rx="4" fill="{n.fill}" stroke="{n.stroke}" stroke-width="2"{dash}/>{title}</g>')
            if labelled:
                parts.append(f'<text x="{x}" y="{y + 4}">{html.escape(n.label[:22])}</text>')
            continue
        parts.append(f'<g><circle cx="{x}" cy="{y}" r="{radius}" fill="{n.fill}" stroke="{n.stroke}" '
                     f'stroke-width="2"{dash}/>{title}</g>')
        if labelled:  # under the node, clear of the edges
            parts.append(f'<text x="{x}" y="{y + radius + 12}" text-anchor="middle">{html.escape(n.label[:14])}</text>')
    parts.append("</svg>")
    svg = "".join(parts)
    if width > max_width or height > max_height:
        return f'<div style="max-width:{max_width}px; max-height:{max_height}px; overflow:auto">{svg}</div>'
    return svg
