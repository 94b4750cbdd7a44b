"""What one execution of a Dataset did, stage by stage (``ds.stats()``; ``lc.compare`` reads the same)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..text import html_table
from .progress import StageStats, size_label

if TYPE_CHECKING:
    from .executor import Execution


class DatasetStats:
    """Per stage of one execution: blocks, rows, bytes, the tasks' summed wall and CPU seconds, and the stage's
    span (first start to last end, from the driver)."""

    def __init__(self, ex: Execution) -> None:
        self.mode = ex.mode
        self.wall = ex.ended - ex.started if ex.ended else None
        self.first_output = ex.first_output
        self.peak_bytes = ex.peak_bytes
        #: the workers' held result bytes at the peak, over what they held when the execution started
        self.peak_worker_bytes = max(0, ex.managed_peak - ex.managed_start)
        #: a union's parts' stages first (they ran first), then its own
        self.stages: list[StageStats] = [s for part in ex.parts for s in DatasetStats(part).stages] + ex.stats

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "wall": self.wall, "first_output": self.first_output,
                "peak_bytes": self.peak_bytes, "peak_worker_bytes": self.peak_worker_bytes,
                "stages": [s.to_dict() for s in self.stages]}

    def __repr__(self) -> str:
        head = (f"{self.mode} execution: {_secs(self.wall)} wall, first block after {_secs(self.first_output)}, "
                f"peak {size_label(self.peak_bytes)} of blocks held")
        lines = [head] + [f"  {s!r}" for s in self.stages]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cols = ("stage", "runs on", "blocks", "rows", "bytes", "task wall", "task CPU", "span", "max at once")
        rows = [(s.name, s.resources, s.blocks, s.rows, size_label(s.bytes), f"{s.task_wall:.2f} s",
                 f"{s.task_cpu:.2f} s", f"{s.wall:.2f} s", s.max_in_flight) for s in self.stages]
        return (f"<div><strong>DatasetStats</strong> ({html.escape(self.mode)}): {_secs(self.wall)} wall, first "
                f"block after {_secs(self.first_output)}, peak {size_label(self.peak_bytes)} held"
                f"{html_table(cols, rows)}</div>")


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"
