"""``lc.actor``: Ray's ``ray.actor`` module, for programs that import its names (``from ray.actor import ActorHandle``).

>>> from labcluster.actor import ActorClass, ActorHandle
"""

from .api.actors import ActorClass, ActorHandle, ActorMethod, method

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "method"]
