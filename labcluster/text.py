"""How labcluster writes counts and tables in reprs and messages (one rule, so every repr reads the same).

>>> plural(1, "block"), plural(16, "block")
('1 block', '16 blocks')
>>> table = html_table(["stage", "rows"], [["read", 4]])
>>> table.count("text-align:left"), "<td style='text-align:left; white-space:nowrap'>read</td>" in table
(4, True)
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless ``count`` is 1."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def resources(request: Any) -> str:
    """A resource request as messages write it: ``{CPU: 1, GPU: 0.5}`` (names sorted).

    >>> resources({"GPU": 0.5, "CPU": 1.0})
    '{CPU: 1, GPU: 0.5}'
    """
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(request.items())) + "}"


def html_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A notebook table: every cell escaped and left-aligned under its left-aligned header (Jupyter's own style
    right-aligns cells, which puts names under their headers askew)."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left; white-space:nowrap'>{html.escape(str(v))}</td>"
                                    for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
