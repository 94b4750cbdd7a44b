"""Submitting an RDD job's stages as labcluster tasks, each task in the stage it belongs to.

A stage is what Spark calls one: the narrow transformations fused between two boundaries (the source, a shuffle, a
persisted RDD). Its tasks run in ``lc.stage("stage <id>: <operations>")``, so the records, the timeline and the
lineage's stage view group them as Spark's UI does, while the lineage's task view shows every partition's task
(Ray's fine-grained lineage). The stage ids count up over the context's life, as Spark's do.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import labcluster as lc
import labcluster.spark.tasks as tasks

from ..api.refs import ObjectRef
from ..api.submit import stage as in_stage
from .plan import Plan

_COMPUTE = lc.remote(tasks.compute)
_ACT = lc.remote(tasks.act)
_SHUFFLE_MAP = lc.remote(tasks.shuffle_map)


class Stages:
    """A context's stage counter and the submission of its tasks."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        #: stages submitted so far: (id, name, tasks)
        self.submitted: list[tuple[int, str, int]] = []

    def _named(self, plans: Sequence[Plan], tail: str, count: int) -> str:
        ops = list(plans[0].ops) if plans else []
        sid = next(self._ids)
        name = f"stage {sid}: {' -> '.join(ops if ops and ops[-1] == tail else [*ops, tail])}"
        self.submitted.append((sid, name, count))
        return name

    def compute(self, plans: Sequence[Plan], op: str) -> list[ObjectRef]:
        """Each plan's partition as an object (a persisted RDD's partitions)."""
        remote = _COMPUTE.options(name=op)
        with in_stage(self._named(plans, f"persist {op}", len(plans))):
            return [remote.remote(p.node, *p.inputs) for p in plans]

    def act(self, plans: Sequence[Plan], action: Callable[[Iterator[Any]], Any], op: str) -> list[ObjectRef]:
        """``action`` over each plan's partition: a small result a partition (the job's last stage)."""
        remote = _ACT.options(name=op)
        with in_stage(self._named(plans, op, len(plans))):
            return [remote.remote(p.node, action, *p.inputs) for p in plans]

    def shuffle_map(self, plans: Sequence[Plan], bucketer: tasks.Bucketer, op: str) -> list[list[ObjectRef]]:
        """The map side of a shuffle: per plan, one object per reduce partition."""
        out = []
        with in_stage(self._named(plans, f"{op} (map side)", len(plans))):
            # "shuffle map" (items: "shuffle_map[i]"): the stage names the operation; short names stay readable
            # in the lineage picture, which cuts labels
            remote = _SHUFFLE_MAP.options(name="shuffle map", num_returns=bucketer.n)
            for i, p in enumerate(plans):
                got = remote.remote(p.node, bucketer, i, *p.inputs)
                out.append(list(got) if isinstance(got, list) else [got])
        return out
