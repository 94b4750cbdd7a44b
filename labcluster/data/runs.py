"""What one execution keeps per block and per stage: a block on its way (:class:`Item`), and a stage's running,
held and finished blocks, its actors and its stats (``_StageRun``). The loop that moves them is ``executor.py``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .plan import Stage
from .progress import StageStats
from .sources import ReadTask

if TYPE_CHECKING:
    from ..api.refs import ObjectRef
    from .executor import Execution


@dataclass
class Item:
    """A block on its way: its index in the stage's order, the ref (or the read task) and what it holds."""

    index: int
    ref: ObjectRef | None = None
    read: ReadTask | None = None
    rows: int | None = None
    nbytes: int = 0
    #: for a block an actor made: the input it was made from, kept until the next stage has used the block. An
    #: actor's result has no lineage in Dask: if its worker dies, the block is made again from this
    source: Item | None = None
    #: for a block made (by tasks) from an actor's block: that input, kept alive so that Dask can rebuild this
    #: block if it is lost (its lineage ends at the actor's block)
    parent: Item | None = None
    #: the stage that uses it is done with it (its bytes no longer count against the stage that made it)
    released: bool = False


@dataclass
class _Actor:
    handle: Any
    running: int = 0


class _StageRun:
    """A stage's state in one execution."""

    def __init__(self, stage: Stage, position: int, execution: Execution) -> None:
        self.stage, self.position, self.ex = stage, position, execution
        self.inputs: deque[Item] = deque()
        #: what each running ref makes: its input block and the id of its report
        self.running: dict[ObjectRef, tuple[Item, str]] = {}
        #: finished outputs not yet taken downstream (blocks, bytes)
        self.held_blocks = 0
        self.held_bytes = 0
        self.upstream_done = False
        self.finished = False
        where = {"map": stage.resources.label(), "all_to_all": "CPU: 1, one task"}.get(stage.kind, "driver")
        self.stats = StageStats(stage.name, where)
        self.actors: list[_Actor] = []
        #: the most actors its pool may have: the top of its range, or what the cluster has room for
        self.pool_cap = stage.pool_size()[1] if stage.actors else 0
        self.remote: Any = None
        self.limit_rows = 0
        self.limit_next = 0
        #: an all-to-all stage's inputs, gathered until the stages before it are done
        self.gathered: list[Item] = []
        self.launched = False
        self.running_actor: dict[ObjectRef, _Actor] = {}
        #: pipelined: running blocks already handed to the next stage (which started on them: Dask moves the
        #: block from worker to worker when it is done, without a turn through this loop)
        self.ahead: dict[ObjectRef, Item] = {}

    # how many blocks may be out (running + held) at once in pipelined mode
    def budget(self) -> int:
        configured = self.ex.max_blocks
        if configured:
            return int(configured)
        return max(8, 4 * self.slots())

    def slots(self) -> int:
        if self.stage.actors:
            return self.pool_cap
        if self.stage.concurrency:
            c = self.stage.concurrency
            return int(c[1] if isinstance(c, tuple) else c)
        return max(1, self.ex.slots_for(self.stage))
