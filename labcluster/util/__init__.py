"""``lc.util``: helpers with Ray's names (``ActorPool``)."""

from .actor_pool import ActorPool

__all__ = ["ActorPool"]
