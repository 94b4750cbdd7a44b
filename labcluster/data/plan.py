"""A Dataset's plan: the logical operators a user chained, and the stages that run them.

Consecutive one-to-one operators with the same resources and no actor pool fuse into one stage (one task per
block), as Spark fuses narrow transformations; the read fuses with what follows it when that asks for the default
resources (one CPU). An operator that runs a class, asks for other resources or limits its concurrency starts a
stage of its own. All-to-all operators (repartition, shuffle, sort, groupby) and ``limit`` are stages of their own.
Stage boundaries are what ``explain()`` shows, what the lineage's stage view groups by and, in bulk mode, where the
barriers are.

>>> from .operators import Step
>>> ops = (OneToOne(Step("Map(f)", "map", len)), OneToOne(Step("Filter(g)", "filter", len)),
...        OneToOne(Step("MapBatches(Model)", "map_batches", dict), Resources(0, 1), concurrency=1))
>>> [s.name for s in stages("ReadRange", ops)]
['ReadRange->Map(f)->Filter(g)', 'MapBatches(Model)']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .operators import Step


@dataclass(frozen=True)
class Resources:
    """What each task (or each actor of a pool) of an operator asks for."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: tuple[tuple[str, float], ...] = ()

    @staticmethod
    def of(num_cpus: float | None, num_gpus: float | None, resources: Mapping[str, float] | None) -> Resources:
        gpus = float(num_gpus or 0)
        # a GPU operator asks for no CPU slot unless it says so (the engine's rule: GPU workers have none)
        cpus = float(num_cpus) if num_cpus is not None else (0.0 if gpus else 1.0)
        return Resources(cpus, gpus, tuple(sorted((resources or {}).items())))

    def options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "resources": dict(self.resources)}

    def label(self, simulated_gpus: bool = False) -> str:
        """``CPU: 1, GPU: 1``; ``simulated_gpus``: ``GPU (simulated): 1``, where the cluster's GPUs are."""
        parts = [f"CPU: {self.num_cpus:g}"] if self.num_cpus else []
        parts += [f"GPU{' (simulated)' if simulated_gpus else ''}: {self.num_gpus:g}"] if self.num_gpus else []
        parts += [f"{k}: {v:g}" for k, v in self.resources]
        return ", ".join(parts) or "nothing"


DEFAULT = Resources()


@dataclass(frozen=True)
class OneToOne:
    """A per-block operator: its step, resources, and ``concurrency`` (tasks or actors at once; a class needs it)."""

    step: Step
    resources: Resources = DEFAULT
    concurrency: int | tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.step.name


@dataclass(frozen=True)
class AllToAll:
    """An operator that needs every block at once: ``fn(blocks, num_outputs, *args)`` returns the new blocks."""

    name: str
    fn: Callable[..., list[pa.Table]]
    args: tuple[Any, ...] = ()
    #: blocks it makes (None: as many as it got)
    num_outputs: int | None = None


@dataclass(frozen=True)
class Limit:
    n: int

    @property
    def name(self) -> str:
        return f"Limit({self.n})"


Operator = OneToOne | AllToAll | Limit


@dataclass(frozen=True)
class Stage:
    """What runs as one unit: a task per block (or an actor call per block) doing ``steps`` in order."""

    name: str
    kind: str  # map | all_to_all | limit
    steps: tuple[Step, ...] = ()
    resources: Resources = DEFAULT
    concurrency: int | tuple[int, int] | None = None
    #: the stage reads the source's blocks first
    reads: bool = False
    op: AllToAll | Limit | None = field(default=None, repr=False)

    @property
    def actors(self) -> bool:
        return any(s.is_class for s in self.steps)

    def pool_size(self) -> tuple[int, int]:
        """(min, max) actors of a class stage."""
        c = self.concurrency
        if isinstance(c, tuple):
            return c
        return (c, c) if c else (1, 1)


def _fusable(op: OneToOne) -> bool:
    return op.concurrency is None and not op.step.is_class


def stages(source_name: str, ops: Sequence[Operator], reads: bool = True) -> list[Stage]:
    """The stages that run ``ops`` after a source called ``source_name`` (``reads``: its blocks still have to be
    read; False for blocks already in the object store)."""
    out: list[Stage] = []
    if reads:
        out.append(Stage(source_name, "map", reads=True))
    for op in ops:
        last = out[-1] if out else None
        if isinstance(op, OneToOne):
            if (last is not None and last.kind == "map" and not last.actors and last.concurrency is None
                    and last.resources == op.resources and _fusable(op)):
                out[-1] = Stage(f"{last.name}->{op.name}", "map", (*last.steps, op.step), last.resources,
                                reads=last.reads)
            else:
                out.append(Stage(op.name, "map", (op.step,), op.resources, op.concurrency))
        else:
            out.append(Stage(op.name, "all_to_all" if isinstance(op, AllToAll) else "limit", op=op))
    return out
