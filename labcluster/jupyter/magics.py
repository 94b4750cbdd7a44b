"""The ``%cluster`` line magic and the ``%%distributed`` cell magic (``%load_ext labcluster``).

Thin: each parses its line with ``commands.py`` (a bad argument is a ``UsageError`` naming it and the fix, never a
traceback) and calls labcluster's public API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

import labcluster as lc

from ..exceptions import SerializationError
from .commands import (
    CELL_USAGE,
    CLUSTER_USAGE,
    ClusterCommand,
    MagicArgumentError,
    parse_cell,
    parse_cluster,
    wants_help,
)
from .remote_cell import namespace_for, run_cell, unpicklable


def _session_or_error(what: str) -> lc.Session:
    if not lc.is_initialized():
        raise UsageError(f"{what}: no cluster in this kernel; start one with %cluster start, or connect with "
                         f"%cluster connect ADDRESS")
    return lc.current_session()


T = TypeVar("T")


def _parsed(line: str, parse: Callable[[str], T], usage: str) -> T | None:
    """A magic's line parsed, or None after printing the usage for ``--help``; a bad line is a UsageError."""
    if wants_help(line):
        print(usage)
        return None
    try:
        return parse(line)
    except MagicArgumentError as e:
        raise UsageError(str(e)) from None


@magics_class
class LabclusterMagics(Magics):
    @line_magic
    def cluster(self, line: str) -> Any:
        """Start, connect to, show, scale and stop the kernel's cluster: ``%cluster --help``."""
        cmd = _parsed(line, parse_cluster, CLUSTER_USAGE)
        return None if cmd is None else self.run_cluster(cmd)

    def run_cluster(self, cmd: ClusterCommand) -> Any:
        from .widgets import ClusterWidget

        if cmd.action in ("start", "connect"):
            if lc.is_initialized():
                raise UsageError(f"%cluster {cmd.action}: this kernel already has a cluster "
                                 f"({lc.current_session().address}); %cluster stop first")
            if cmd.action == "start":
                session = lc.init(**cmd.options())
            else:
                try:
                    session = lc.init(cmd.address)
                except (OSError, TimeoutError, ValueError, lc.exceptions.ClusterError) as e:
                    raise UsageError(f"%cluster connect: cannot connect to {cmd.address} ({e}); is a scheduler "
                                     f"running there? Start one with: labcluster scheduler") from None
            if cmd.name:
                session.name = cmd.name
            display(ClusterWidget(session))
        elif cmd.action == "status":
            display(ClusterWidget(_session_or_error("%cluster status")))
        elif cmd.action == "scale":
            session = _session_or_error("%cluster scale")
            try:
                print(session.scale(cmd.n, group=cmd.group))
            except (ValueError, TimeoutError) as e:
                raise UsageError(f"%cluster scale: {e}") from None
        elif cmd.action == "stop":
            if not lc.is_initialized():
                print("labcluster: no cluster to stop")
                return None
            address = lc.current_session().address
            lc.shutdown()
            print(f"labcluster: stopped the session ({address})")
        elif cmd.action == "dashboard":
            from .dashboards import dashboard

            _session_or_error("%cluster dashboard")
            display(dashboard(cmd.page))
        return None

    @property
    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    @cell_magic
    def distributed(self, line: str, cell: str) -> Any:
        """Run the cell on the cluster as one task: ``%%distributed --help``."""
        cmd = _parsed(line, parse_cell, CELL_USAGE)
        if cmd is None:
            return None
        _session_or_error("%%distributed")
        try:
            namespace = namespace_for(cell, self._user_ns)
        except SyntaxError as e:
            raise UsageError(f"%%distributed: the cell is not valid Python ({e.msg}, line {e.lineno}); fix it "
                             f"and run it again") from None
        # blocking: one task returning (result, *outputs); --no-block: one ref per value, for the namespace
        count = 1 + len(cmd.outputs) if cmd.outputs and not cmd.block else 1
        task = lc.remote(**cmd.task_options(), num_returns=count)(run_cell)
        try:
            refs = task.remote(cell, cmd.outputs, namespace)
        except SerializationError as e:
            name, why = unpicklable(namespace) or ("?", e.reason)
            kind = type(namespace[name]).__name__ if name in namespace else "?"
            raise SerializationError("this %%distributed cell", f"{name!r} ({kind}), which the cell reads,",
                                     why) from None
        if not cmd.block:  # refs for everything: the cell's result and each output
            refs = refs if isinstance(refs, list) else [refs]
            for name, ref in zip(cmd.outputs, refs[1:], strict=True):
                self._user_ns[name] = ref
            return refs[0]
        try:
            value = lc.get(refs)
        except KeyboardInterrupt as e:  # the same words (what was cancelled), under the magic's name
            raise KeyboardInterrupt(str(e).replace("lc.get was", "%%distributed was", 1)) from None
        if not cmd.outputs:
            return value
        for name, item in zip(cmd.outputs, value[1:], strict=True):
            self._user_ns[name] = item
        return value[0]
