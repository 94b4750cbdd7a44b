"""``lc.util.scheduling_strategies``: Ray's spelling for placing work in a placement group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlacementGroupSchedulingStrategy:
    """Run a task or actor in bundle ``placement_group_bundle_index`` of ``placement_group`` (-1: any bundle)."""

    placement_group: Any
    placement_group_bundle_index: int = -1
    placement_group_capture_child_tasks: bool | None = None
