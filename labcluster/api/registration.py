"""A session's entry in the registry of running clusters (``cluster/registry.py``): written when ``lc.init``
starts a cluster, rewritten when the session's name changes, removed when the session closes. A session that
connected to someone else's cluster writes none: the process that started the cluster did.

What the entry says of its owner: ``kind`` is ``kernel`` inside a Jupyter kernel (with the notebook's path, from
``JPY_SESSION_NAME``, which Jupyter Server sets for the kernels it starts), ``server`` for clusters the Jupyter
server's sidebar started, else ``process`` (a script, a terminal).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .. import __version__, config
from ..cluster import registry

logger = logging.getLogger("labcluster")


def _in_kernel() -> bool:
    """Whether this process is a running IPython kernel (looked up, never imported: the engine imports no IPython)."""
    app = sys.modules.get("ipykernel.kernelapp")
    return app is not None and bool(app.IPKernelApp.initialized())


def _owner(kind: str | None) -> dict[str, Any]:
    if kind is None:
        kind = "kernel" if _in_kernel() else "process"
    notebook = os.environ.get("JPY_SESSION_NAME") if kind == "kernel" else None
    return {"kind": kind, "notebook": notebook, "pid": os.getpid()}


class Registration:
    """A session part (``Session.part``): this session's registry entry, if it has one."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.entry: dict[str, Any] | None = None
        self._owner_kind: str | None = None

    def publish(self, owner: str | None = None) -> dict[str, Any] | None:
        """Write (or rewrite) the entry; ``owner`` sets the owner's kind (see the module docstring). A registry that
        cannot be written (a read-only home) is a warning, never an error: the cluster works without it."""
        if not config.get("registry.enabled", True):
            return None
        self._owner_kind = owner or self._owner_kind
        session = self.session
        process = getattr(session.cluster, "process", None)  # a Head's; an in-process cluster has none
        fields = {"name": session.name, "address": session.address, "dashboard": session.dashboard_link,
                  "processes": process is not None, "head_pid": process.pid if process is not None else None,
                  "owner": _owner(self._owner_kind), "labcluster": __version__}
        if self.entry is not None:
            fields["id"], fields["started"] = self.entry["id"], self.entry["started"]
        try:
            self.entry = registry.publish(fields)
        except OSError as e:
            logger.warning("labcluster could not list this cluster in its registry (%s); the JupyterLab sidebar will "
                           "not show it: set labcluster.registry.directory to a writable directory", e)
            return None
        return self.entry

    def close(self) -> None:
        if self.entry is not None:
            entry, self.entry = self.entry, None
            try:
                registry.withdraw(str(entry["id"]))
            except OSError as e:
                logger.warning("labcluster could not remove this cluster's registry entry: %s", e)
