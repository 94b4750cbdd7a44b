"""What ``%cluster`` and ``%%distributed`` mean, as plain functions: parse a magic's line, then act on it.

Nothing here needs IPython: the magics (``magics.py``) only call these and turn :class:`MagicArgumentError` into
IPython's ``UsageError``. Each error names the bad argument and the fix; ``--help`` returns the usage text.

>>> [(g.name, g.n, dict(g.resources)) for g in parse_cluster("start --workers 2 --threads 1 --gpus sim:1 "
...                                                            "--resources special=2").options()["workers"]]
[('cpu', 2, {'special': 2.0}), ('gpu', 1, {'GPU': 1})]
>>> parse_cluster("scale gpu 2").group, parse_cluster("scale 3").group
('gpu', 'cpu')
>>> parse_cell("--num-gpus 1 -o model --no-block").outputs
['model']
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

CLUSTER_USAGE = """\
%cluster start [--workers N] [--threads N] [--gpus auto|N|sim:N] [--resources K=V ...]
               [--name NAME]
                           start a local cluster and show it: N CPU worker processes of --threads
                           slots each; GPU workers: auto = one per GPU found, N = N GPUs (simulated
                           where the machine has fewer), sim:N = N simulated GPUs
%cluster connect ADDRESS   connect to a running scheduler, e.g. tcp://10.0.0.5:8786
%cluster status            show the cluster: workers, resources, GPUs, memory
%cluster scale [GROUP] N   grow or shrink a worker group of the local cluster (default: cpu)
%cluster stop              shut the session down (a connected cluster keeps running)
%cluster dashboard [resources|timeline|lineage|actors]
                           show a dashboard page (live in JupyterLab, a link elsewhere)"""

CELL_USAGE = """\
%%distributed [--num-cpus N] [--num-gpus N] [--resources K=V ...] [--retries N]
              [-o NAME ...] [--name NAME] [--no-block]
    Run the cell on the cluster as one task with those resources. The names the cell reads
    come from the notebook's namespace (ObjectRefs stay refs); the cell's last expression is
    its result; the names after -o come back into the namespace (as ObjectRefs with
    --no-block, and then the cell's result is a ref too)."""

DASHBOARD_PAGES = ("resources", "timeline", "lineage", "actors")
SUBCOMMANDS = ("start", "connect", "status", "scale", "stop", "dashboard")


class MagicArgumentError(ValueError):
    """A magic's line that cannot be run: the message names the argument and the fix."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, magic: str) -> None:
        super().__init__(prog=magic, add_help=False, allow_abbrev=False)
        self.magic = magic

    def error(self, message: str) -> NoReturn:
        raise MagicArgumentError(f"{self.magic}: {message}; see {self.magic} --help")


def _resources(pairs: Sequence[str], magic: str) -> dict[str, float]:
    from ..cluster.groups import parse_resources

    try:
        return parse_resources(pairs)
    except ValueError as e:
        raise MagicArgumentError(f"{magic}: {e}") from None


def _split(line: str, magic: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as e:
        raise MagicArgumentError(f"{magic}: cannot read {line!r} ({e}); close the quote") from None


@dataclass
class ClusterCommand:
    """One ``%cluster`` line, parsed."""

    action: str
    workers: int | None = None
    threads: int | None = None
    gpus: str = "auto"
    resources: dict[str, float] = field(default_factory=dict)
    name: str | None = None
    address: str | None = None
    group: str = "cpu"
    n: int = 0
    page: str = "resources"

    def options(self) -> dict[str, Any]:
        """``lc.init`` keywords for ``start``."""
        from ..cluster.groups import default_groups

        kwargs: dict[str, Any] = {}
        if self.gpus.startswith("sim:"):
            kwargs["simulate_gpus"] = int(self.gpus[4:])
        elif self.gpus != "auto":
            kwargs["num_gpus"] = int(self.gpus)
        if self.workers is None and self.threads is None:
            return {**kwargs, **({"resources": self.resources} if self.resources else {})}
        n = self.workers or 1
        threads = self.threads or max(1, (os.cpu_count() or 1) // n)
        groups = default_groups(num_cpus=threads, resources=self.resources, **kwargs)
        groups[0] = dataclasses.replace(groups[0], n=n)
        return {"workers": groups}


def _number(cast: type, minimum: float, label: str) -> Any:
    """An argparse type: ``cast(value)`` of at least ``minimum``; argparse names ``label`` in its message."""

    def parse(value: str) -> Any:
        n = cast(value)
        if n < minimum:
            raise ValueError
        return n

    parse.__name__ = label
    return parse


_positive = _number(int, 1, "positive int")
_count = _number(int, 0, "count (0 or more)")
_amount = _number(float, 0, "number (0 or more)")


def _gpus(value: str) -> str:
    if value == "auto" or value.isdigit() or (value.startswith("sim:") and value[4:].isdigit()):
        return value
    raise ValueError


_gpus.__name__ = "auto, N or sim:N"


def parse_cluster(line: str) -> ClusterCommand:
    """Parse a ``%cluster`` line (without ``%cluster``); ``--help`` raises nothing: see :func:`wants_help`."""
    words = _split(line, "%cluster")
    if not words:
        raise MagicArgumentError(f"%cluster needs a subcommand: {', '.join(SUBCOMMANDS)}; see %cluster --help")
    action, rest = words[0], words[1:]
    if action not in SUBCOMMANDS:
        raise MagicArgumentError(f"%cluster has no subcommand {action!r}; use one of {', '.join(SUBCOMMANDS)} "
                                 f"(see %cluster --help)")
    magic = f"%cluster {action}"
    p = _Parser(magic)
    if action == "start":
        p.add_argument("--workers", type=_positive)
        p.add_argument("--threads", type=_positive)
        p.add_argument("--gpus", type=_gpus, default="auto")
        p.add_argument("--resources", nargs="+", default=[])
        p.add_argument("--name")
        a = p.parse_args(rest)
        return ClusterCommand("start", workers=a.workers, threads=a.threads, gpus=a.gpus,
                              resources=_resources(a.resources, magic), name=a.name)
    if action == "connect":
        p.add_argument("address")
        a = p.parse_args(rest)
        return ClusterCommand("connect", address=a.address)
    if action == "scale":
        p.add_argument("args", nargs="+", metavar="[GROUP] N")
        a = p.parse_args(rest)
        if len(a.args) > 2:
            p.error(f"takes [GROUP] N, got {' '.join(a.args)!r}")
        group, n = (a.args if len(a.args) == 2 else ["cpu", a.args[0]])
        try:
            count = _count(n)
        except ValueError:
            p.error(f"N must be a number of workers (0 or more), got {n!r}")
        return ClusterCommand("scale", group=group, n=count)
    if action == "dashboard":
        p.add_argument("page", nargs="?", default="resources", choices=DASHBOARD_PAGES)
        a = p.parse_args(rest)
        return ClusterCommand("dashboard", page=a.page)
    p.parse_args(rest)  # status, stop: no arguments
    return ClusterCommand(action)


@dataclass
class CellCommand:
    """One ``%%distributed`` line, parsed: the task's options and what comes back."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    retries: int | None = None
    outputs: list[str] = field(default_factory=list)
    name: str | None = None
    block: bool = True

    def task_options(self) -> dict[str, Any]:
        """``lc.remote(...)`` keywords."""
        out: dict[str, Any] = {"name": self.name or "distributed_cell"}
        for key, value in (("num_cpus", self.num_cpus), ("num_gpus", self.num_gpus),
                           ("max_retries", self.retries)):
            if value is not None:
                out[key] = value
        if self.resources:
            out["resources"] = self.resources
        return out




def parse_cell(line: str) -> CellCommand:
    """Parse a ``%%distributed`` line."""
    magic = "%%distributed"
    p = _Parser(magic)
    p.add_argument("--num-cpus", type=_amount)
    p.add_argument("--num-gpus", type=_amount)
    p.add_argument("--resources", nargs="+", default=[])
    p.add_argument("--retries", type=_count)
    p.add_argument("-o", "--output", nargs="+", default=[], dest="outputs")
    p.add_argument("--name")
    p.add_argument("--no-block", action="store_true")
    a = p.parse_args(_split(line, magic))
    bad = [n for n in a.outputs if not n.isidentifier()]
    if bad:
        raise MagicArgumentError(f"{magic}: -o takes variable names, got {bad[0]!r}; e.g. -o model scores")
    return CellCommand(num_cpus=a.num_cpus, num_gpus=a.num_gpus, resources=_resources(a.resources, magic),
                       retries=a.retries, outputs=list(a.outputs), name=a.name, block=not a.no_block)


def wants_help(line: str) -> bool:
    words = line.split()
    return "--help" in words or "-h" in words
