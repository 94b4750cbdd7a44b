"""The workers' reports of the blocks they make, as the driver receives them: one topic a session.

Each block task logs an event (``Worker.log_event``, :func:`labcluster.data.tasks.report`) with the block's id, rows,
bytes, wall and CPU time. The session subscribes to its topic once; the executions open their ids here and wait for
their blocks' reports by block id (an execution's id starts each of its block ids). One topic a session, not one a
run: the scheduler keeps every topic it has seen (up to Dask's ``admin.low-level-log-length`` events each), so a topic
a run would grow the scheduler's memory with every run of a long notebook session.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

from ..exceptions import LabclusterError


def block_id(execution: str, position: int, index: int) -> str:
    """A new block's id: its execution's id first (how :meth:`BlockReports.wait` finds its report), then its stage's
    position and its index."""
    return f"{execution}-{position}-{index}-{uuid.uuid4().hex[:8]}"


class BlockReports:
    """A session's part (``session.part(BlockReports)``): the reports of the blocks of its open executions."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.topic = f"labcluster-data-{session.client.id}"
        self._reports: dict[str, dict[str, dict[str, Any]]] = {}  # execution id -> block id -> report
        self._changed = threading.Condition()
        self._subscribed = False

    def open(self, execution: str) -> None:
        """Start keeping the reports of ``execution``'s blocks (its tasks report on :attr:`topic`)."""
        with self._changed:
            self._reports[execution] = {}
            if not self._subscribed:
                # sent before the execution's first task: the scheduler subscribes this client before it runs
                self.session.client.subscribe_topic(self.topic, self._arrived)
                self._subscribed = True

    def forget(self, execution: str) -> None:
        """Drop ``execution``'s reports, and those of its blocks still to come."""
        with self._changed:
            self._reports.pop(execution, None)

    def close(self) -> None:
        """Stop listening (the session closes)."""
        with self._changed:
            self._reports.clear()
            if self._subscribed:
                self._subscribed = False
                with contextlib.suppress(Exception):  # a closing or lost client
                    self.session.client.unsubscribe_topic(self.topic)

    def _arrived(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        block_id = str(msg["id"])
        with self._changed:
            reports = self._reports.get(block_id.split("-", 1)[0])
            if reports is not None:  # not a stopped execution's late block
                reports[block_id] = msg
                self._changed.notify_all()

    def wait(self, execution: str, block_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The report of ``block_id`` (a block of ``execution`` that finished), once it has arrived."""
        with self._changed:
            reports = self._reports.get(execution)
            if reports is None or not self._changed.wait_for(lambda: block_id in reports, timeout=timeout):
                raise LabclusterError(f"dataset block {block_id} finished but its worker's report did not arrive "
                                      f"within {timeout:g}s; is the scheduler overloaded?")
            return reports.pop(block_id)
