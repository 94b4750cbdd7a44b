"""The client side of the scheduler extension: ``call(client, "pg_place", ...)`` runs handler ``labcluster_pg_place``.

Arguments and replies are plain (msgpack-able) values; ``labcluster/scheduler/extension.py`` lists the handlers.
A scheduler without the extension answers every op with None (and logs a warning), so a session asks ``info``
once and, where it gets None, adds the extension or says why it cannot (``api/session.py``).
"""

from __future__ import annotations

from typing import Any

PREFIX = "labcluster_"


def call(client: Any, op: str, **kwargs: Any) -> Any:
    """Run handler ``labcluster_<op>`` on the client's scheduler and return its reply (blocking)."""
    return client.sync(getattr(client.scheduler, PREFIX + op), **kwargs)


async def acall(client: Any, op: str, **kwargs: Any) -> Any:
    """The same, awaited on the client's event loop."""
    return await getattr(client.scheduler, PREFIX + op)(**kwargs)
