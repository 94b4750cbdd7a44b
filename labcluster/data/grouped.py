"""``ds.groupby(key)``: a dataset's rows grouped by key columns, aggregated in one all-to-all stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import labcluster.data.tasks as tasks

from .plan import AllToAll

if TYPE_CHECKING:
    from .dataset import Dataset


class GroupedData:
    """``ds.groupby(key)``: aggregate with ``count``, ``sum``, ``mean``, ``min``, ``max``, ``std``, ``aggregate``."""

    def __init__(self, ds: Dataset, keys: list[str]) -> None:
        self._ds, self._keys = ds, keys

    def aggregate(self, *aggs: tuple[str | None, str, str]) -> Dataset:
        """``(column, pyarrow aggregate, output name)`` triples, e.g. ``("price", "mean", "avg_price")``."""
        for agg in aggs:
            if not (isinstance(agg, tuple) and len(agg) == 3):
                raise TypeError(f"aggregate takes (column, function, name) triples, got {agg!r}")
        return self._with(list(aggs))

    def _with(self, aggs: list[tuple[Any, ...]]) -> Dataset:
        label = f"Aggregate({', '.join(self._keys) or 'all'})"
        return self._ds._with(AllToAll(label, tasks.aggregate, (self._keys, aggs), 1))

    def count(self) -> Dataset:
        return self.aggregate((None, "count_all", "count()"))

    def _one(self, fn: str, on: str | Sequence[str], name: str | None = None, ddof: int | None = None) -> Dataset:
        cols = [on] if isinstance(on, str) else list(on)
        return self._with([(c, fn, f"{name or fn}({c})", *(() if ddof is None else (ddof,))) for c in cols])

    def sum(self, on: str | Sequence[str]) -> Dataset:
        return self._one("sum", on)

    def mean(self, on: str | Sequence[str]) -> Dataset:
        return self._one("mean", on)

    def min(self, on: str | Sequence[str]) -> Dataset:
        return self._one("min", on)

    def max(self, on: str | Sequence[str]) -> Dataset:
        return self._one("max", on)

    def std(self, on: str | Sequence[str], ddof: int = 1) -> Dataset:
        """Standard deviations, ``std(column)``; ``ddof=1`` (the sample's), as Ray Data."""
        return self._one("stddev", on, "std", ddof)
