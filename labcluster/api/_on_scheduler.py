"""Functions that run on the scheduler through ``Client.run_on_scheduler``.

This module is registered with cloudpickle *by value*, so it works against any Dask scheduler,
including one where labcluster is not installed. Keep it free of labcluster imports.
"""

from __future__ import annotations

from typing import Any


def used_resources(dask_scheduler: Any) -> dict[str, dict[str, float]]:
    """``{worker address: {resource: amount in use}}`` from the scheduler's own accounting."""
    return {addr: dict(ws.used_resources) for addr, ws in dask_scheduler.workers.items()}
