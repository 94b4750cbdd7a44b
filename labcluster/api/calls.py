"""The client side of the scheduler extension: ``call(client, "pg_place", ...)`` runs handler ``labcluster_pg_place``.

Arguments and replies are plain (msgpack-able) values; ``labcluster/scheduler/extension.py`` lists the handlers.
Replies read as JSON would: Dask's msgpack decodes lists as tuples, and :func:`plain` turns them back.
A scheduler without the extension answers every op with None (and logs a warning), so a session asks ``info``
once and, where it gets None, adds the extension or says why it cannot (``api/session.py``).
"""

from __future__ import annotations

from typing import Any

PREFIX = "labcluster_"


def plain(value: Any) -> Any:
    """``value`` with tuples as lists, all the way down.

    >>> plain({"a": (1, (2, 3)), "b": [(4,)]})
    {'a': [1, [2, 3]], 'b': [[4]]}
    """
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def call(client: Any, op: str, **kwargs: Any) -> Any:
    """Run handler ``labcluster_<op>`` on the client's scheduler and return its reply (blocking)."""
    return plain(client.sync(getattr(client.scheduler, PREFIX + op), **kwargs))


async def acall(client: Any, op: str, **kwargs: Any) -> Any:
    """The same, awaited on the client's event loop."""
    return plain(await getattr(client.scheduler, PREFIX + op)(**kwargs))
