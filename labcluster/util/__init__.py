"""``lc.util``: helpers with Ray's names (``ActorPool``, placement groups, scheduling strategies)."""

from ..api.placement import get_placement_group, placement_group_table
from . import placement_group, scheduling_strategies
from .actor_pool import ActorPool

__all__ = ["ActorPool", "get_placement_group", "placement_group", "placement_group_table", "scheduling_strategies"]
