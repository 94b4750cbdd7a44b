"""Worker groups: the unit a heterogeneous cluster is described in (``spec.py`` turns them into a Dask spec).

A cluster is a list of :class:`WorkerGroup`. Each group is ``n`` identical workers with a number of
threads, custom resources and, for GPU groups, one GPU per worker. Every worker without a GPU advertises
the resource ``CPU`` equal to its thread count, which is what makes ``num_cpus`` mean CPU *slots*:
every labcluster task asks for ``CPU: num_cpus``, so a ``num_cpus=2`` task on a 2-thread worker
never shares it with another task. A GPU worker's threads run GPU work, which asks for no CPU slots.
This module imports no Dask: ``lc.init()`` decides the groups and launches the cluster's process
before this process has imported distributed.

>>> [g.name for g in default_groups(num_cpus=2, simulate_gpus=1)]
['cpu', 'gpu']
>>> WorkerGroup.from_dict(WorkerGroup("gpu", n=2, resources={"GPU": 1}).to_dict())
WorkerGroup('gpu', n=2, nthreads=1, resources={'GPU': 1})
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import config
from ..diagnostics import nvml

GPUMode = Literal["nvml", "simulated", "none"]


@dataclass(frozen=True)
class WorkerGroup:
    """``n`` identical workers: threads, custom resources and (for GPU groups) one GPU each.

    Parameters
    ----------
    name:
        Group name; workers are named ``<name>-0``, ``<name>-1``, ...
    n:
        Number of workers in the group.
    nthreads:
        Threads per worker; a worker without a GPU advertises ``CPU: nthreads`` slots, a GPU worker none (its
        threads run the GPU work, which asks for no CPU slots).
    resources:
        Extra resources per worker, e.g. ``{"GPU": 1}`` or ``{"special": 2}``.
    simulated:
        Only for groups with a ``GPU`` resource. ``None``: real GPUs for as many workers as this machine has free,
        simulated ones for the rest. ``True``: always simulate. ``False``: require real GPUs.
    memory_limit:
        Per worker, as Dask takes it (``"4GiB"``, bytes, or ``0`` for no limit). ``"auto"``: this machine's
        memory split over the local cluster's workers by their CPU slots, so the limits add up to the machine.
    env:
        Environment variables for the worker processes.

    >>> WorkerGroup("gpu", n=2, resources={"GPU": 1})
    WorkerGroup('gpu', n=2, nthreads=1, resources={'GPU': 1})
    """

    name: str
    n: int = 1
    nthreads: int = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    simulated: bool | None = None
    memory_limit: str | int | float | None = "auto"
    env: Mapping[str, str] = field(default_factory=dict)
    #: set by :func:`pin_gpus`: the devices of the group's first workers, one each (the others are simulated)
    devices: tuple[nvml.GPUDevice, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"worker group name must be letters, digits, '-' or '_', got {self.name!r}")
        if self.n < 0 or self.nthreads < 1:
            raise ValueError(f"worker group {self.name!r}: need n >= 0 and nthreads >= 1, got n={self.n}, "
                             f"nthreads={self.nthreads}")
        for k, v in self.resources.items():
            if k == "CPU":
                raise ValueError(f"worker group {self.name!r}: CPU slots come from nthreads=, not resources=")
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"worker group {self.name!r}: resource {k!r} must be a number >= 0, got {v!r}")
        if self.gpus_per_worker not in (0, 1) and self.simulated is not True:
            raise ValueError(f"worker group {self.name!r}: real GPU workers hold exactly one GPU each "
                             f"(one process per device); use n= for more GPUs, or simulated=True")

    def __repr__(self) -> str:
        extra = f", resources={dict(self.resources)}" if self.resources else ""
        sim = f", simulated={self.simulated}" if self.simulated is not None else ""
        return f"WorkerGroup({self.name!r}, n={self.n}, nthreads={self.nthreads}{extra}{sim})"

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON), to send the group to the process that starts its workers."""
        out = dataclasses.asdict(self)
        out["resources"], out["env"] = dict(self.resources), dict(self.env)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkerGroup:
        return cls(**{**d, "devices": tuple(nvml.GPUDevice(**dev) for dev in d.get("devices", ()))})

    @property
    def gpus_per_worker(self) -> float:
        return float(self.resources.get("GPU", 0))

    def gpu_mode(self, index: int) -> GPUMode:
        """How worker ``index`` of the group has its GPU: a real device (``nvml``), ``simulated``, or ``none``."""
        if not self.gpus_per_worker:
            return "none"
        return "nvml" if index < len(self.devices) else "simulated"


def pin_gpus(groups: Sequence[WorkerGroup], probe: nvml.ProbeResult) -> list[WorkerGroup]:
    """Give real-GPU workers a device each, in order across groups; the workers left over are simulated.

    A group with ``simulated=False`` that cannot get a device for every worker is an error naming what the
    machine has.
    """
    free = list(probe.devices)
    out = []
    for g in groups:
        if not g.gpus_per_worker or g.simulated:
            out.append(g)
            continue
        if g.simulated is False and len(free) < g.n:
            raise ValueError(
                f"worker group {g.name!r} needs {g.n} real GPU(s) but {len(free)} are free "
                f"(NVML: {probe.state.value}{'; ' + probe.detail if probe.detail else ''}); "
                f"ask for fewer, or pass simulated=True to teach on simulated GPUs"
            )
        taken, free = free[: g.n], free[g.n :]
        out.append(_replace(g, devices=tuple(taken)))
    return out


def _replace(g: WorkerGroup, **changes: Any) -> WorkerGroup:
    return dataclasses.replace(g, **changes)


def default_groups(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: Mapping[str, float] | None = None,
    simulate_gpus: int | None = None,
    probe: nvml.ProbeResult | None = None,
) -> list[WorkerGroup]:
    """The worker groups ``lc.init()`` starts, Ray's ``init`` keywords included.

    - ``cpu``: one worker with ``num_cpus`` CPU slots (default: this machine's cores) and the custom
      ``resources`` -- one Dask worker plays the part of one Ray node. These are the cluster's CPU slots.
    - ``gpu``: one worker per GPU, with ``labcluster.local.gpu-worker-threads`` threads for the GPU work it runs.
      Its threads are not CPU slots: GPU work asks for none (``options.without_cpu_for_gpus``), so CPU work never
      takes a GPU worker's thread and a GPU task never waits behind CPU work while its GPU idles. The GPUs are the
      real ones NVML finds (each pinned by UUID) or, with ``simulate_gpus=N``, N simulated ones; ``num_gpus=N`` asks
      for N: real devices first, simulated ones for the rest (Ray also advertises ``num_gpus`` slots that do not
      exist).

    >>> [(g.name, g.n, g.nthreads) for g in default_groups(num_cpus=4, simulate_gpus=1)]
    [('cpu', 1, 4), ('gpu', 1, 1)]
    """
    probe = probe if probe is not None else nvml.probe()
    cpus = int(num_cpus) if num_cpus is not None else cpu_count()
    if cpus < 1:
        raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
    gpu_threads = int(config.get("local.gpu-worker-threads"))
    if simulate_gpus is not None or (probe.count == 0 and num_gpus is None):
        n_sim = int(simulate_gpus if simulate_gpus is not None else config.get("simulate-gpus"))
        if num_gpus is not None and n_sim != num_gpus:
            raise ValueError(f"num_gpus={num_gpus} and simulate_gpus={n_sim} disagree; pass one of them")
        gpu = WorkerGroup("gpu", n=n_sim, nthreads=gpu_threads, resources={"GPU": 1}, simulated=True) if n_sim else None
    else:
        wanted = probe.count if num_gpus is None else int(num_gpus)
        gpu = WorkerGroup("gpu", n=wanted, nthreads=gpu_threads, resources={"GPU": 1}) if wanted else None
    groups = [WorkerGroup("cpu", n=1, nthreads=cpus, resources=dict(resources or {}))]
    return [*groups, gpu] if gpu is not None else groups


def memory_total() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit when lower (as Dask counts)."""
    import psutil

    total = int(psutil.virtual_memory().total)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def memory_limits(groups: Sequence[WorkerGroup], total: int | None = None) -> dict[str, Any]:
    """Each group's memory limit per worker: ``"auto"`` becomes the machine's memory split over every worker of
    the cluster by its threads (so the limits add up to the machine, as LocalCluster splits it).

    >>> memory_limits([WorkerGroup("cpu", nthreads=3), WorkerGroup("gpu")], total=4000)
    {'cpu': 3000, 'gpu': 1000}
    """
    total = memory_total() if total is None else total
    per_thread = total // (sum(g.n * g.nthreads for g in groups) or 1)  # whole bytes: exact multiples, never over
    return {g.name: per_thread * g.nthreads if g.memory_limit == "auto" else g.memory_limit for g in groups}


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity, as Dask counts them; cgroup quotas aside)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_resources(pairs: Sequence[str]) -> dict[str, float]:
    """``["special=2", "disk=1"]`` -> ``{"special": 2.0, "disk": 1.0}`` (the CLI's and ``%cluster``'s
    ``--resources``); a malformed pair raises ValueError saying what works.

    >>> parse_resources(["special=2"])
    {'special': 2.0}
    """
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--resources takes NAME=NUMBER pairs, got {pair!r}; e.g. --resources special=2 "
                             f"disk=1") from None
    return out


def pin_real_gpus(groups: list[WorkerGroup]) -> list[WorkerGroup]:
    """``groups`` with real GPUs pinned one per worker by UUID (:func:`pin_gpus`), when a group may use real ones;
    unchanged (no NVML probe) when every GPU is simulated."""
    if any(g.gpus_per_worker and g.simulated is not True for g in groups):
        return pin_gpus(groups, nvml.probe())
    return groups
