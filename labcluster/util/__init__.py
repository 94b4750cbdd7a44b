"""``lc.util``: helpers with Ray's names (``ActorPool``, ``placement_group_table``, scheduling strategies)."""

from ..api.placement import placement_group_table
from . import scheduling_strategies
from .actor_pool import ActorPool

__all__ = ["ActorPool", "placement_group_table", "scheduling_strategies"]
