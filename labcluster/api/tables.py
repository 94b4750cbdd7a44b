"""Rows that render as a table: what ``lc.list_tasks()`` and ``lc.list_actors()`` return.

A :class:`Table` is a list of dicts (so existing code that iterates rows keeps working) with a short ``repr``, an
HTML table in a notebook (the first 50 rows), and ``to_pandas()`` for analysis.

>>> t = Table([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
>>> t
<Table: 2 rows>
>>> t.to_pandas().shape
(2, 2)
"""

from __future__ import annotations

import html
from typing import Any, ClassVar

from ..text import html_table


class Table(list[dict[str, Any]]):
    """Rows (dicts) that render as a table; ``to_pandas()`` gives a DataFrame with every column."""

    #: the columns the HTML table shows (every key of the first row when empty)
    columns: ClassVar[tuple[str, ...]] = ()
    shown = 50

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self))

    def _columns(self) -> tuple[str, ...]:
        return self.columns or (tuple(self[0]) if self else ())

    def cell(self, row: dict[str, Any], column: str) -> str:
        """How one value reads in the HTML table."""
        value = row.get(column)
        return "" if value is None else str(value)

    def summary(self) -> str:
        return f"{len(self)} rows"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.summary()}>"

    def _repr_html_(self) -> str:
        columns = self._columns()
        rows = self[: self.shown]
        table = html_table(columns, ([self.cell(r, c) for c in columns] for r in rows))
        more = (f"<p>... {len(self) - len(rows)} more rows (to_pandas() has them all)</p>"
                if len(self) > len(rows) else "")
        title = html.escape(self.summary())
        return f"<div><strong>{type(self).__name__}</strong>: {title}{table}{more}</div>"
