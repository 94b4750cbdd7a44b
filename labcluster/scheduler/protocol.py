"""Names shared by the scheduler extension and the client side: task annotations and task roles.

A task's role is an annotation, never a key prefix: a user function named ``actor`` is just a task.

>>> annotations_for(role=ROLE_ACTOR, owner="Counter-1f2e")
{'labcluster_role': 'actor', 'labcluster_owner': 'Counter-1f2e'}
"""

from __future__ import annotations

from typing import Any

#: annotations labcluster sets on tasks (``dask.annotate``); the scheduler reads them from ``TaskState.annotations``
ROLE, OWNER, STAGE, NAME, MAX_RETRIES = ("labcluster_role", "labcluster_owner", "labcluster_stage",
                                         "labcluster_name", "labcluster_max_retries")
#: where what a task prints goes: ``"<driver's event topic> <scope id>"`` (``api/scopes.py``, ``api/output.py``)
ORIGIN = "labcluster_origin"

#: an actor's holder task: constructs the actor and keeps its resources for the actor's life
ROLE_ACTOR = "actor"
#: a placement-group bundle's holder task: keeps the bundle's resources until the group is removed
ROLE_BUNDLE = "bundle"
#: a placement group's ``ready()`` task: places the group and starts its bundles
ROLE_GROUP = "placement-group"
#: roles whose tasks keep their resources until released (the scheduler's own accounting forgets them once they
#: secede); their owner key is the one whose holders end the holder when they all let go
HOLDER_ROLES = frozenset({ROLE_ACTOR, ROLE_BUNDLE})
#: every role: tasks that are labcluster's plumbing, not the user's work (left out of the task records)
ROLES = frozenset({ROLE_ACTOR, ROLE_BUNDLE, ROLE_GROUP})

#: what ``labcluster_hold`` answers a holder task
RELEASED, HELD, ABANDONED = "released", "held", "abandoned"


def annotations_for(*, role: str | None = None, owner: str | None = None, stage: str | None = None,
                    name: str | None = None, max_retries: int | None = None,
                    origin: str | None = None) -> dict[str, Any]:
    """The annotations for a task, leaving out what is None (Dask copies every annotation into each task)."""
    values = {ROLE: role, OWNER: owner, STAGE: stage, NAME: name, MAX_RETRIES: max_retries, ORIGIN: origin}
    return {k: v for k, v in values.items() if v is not None}

#: the key under which labcluster workers describe themselves in the scheduler's worker metrics (group, GPU mode)
WORKER_INFO = "labcluster"
#: the event topic the extension publishes notices for a user on (a worker died, results will be recomputed)
NOTICES = "labcluster-notices"
