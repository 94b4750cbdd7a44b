"""Worker groups: the unit a heterogeneous cluster is described in (``spec.py`` turns them into a Dask spec).

A cluster is a list of :class:`WorkerGroup`. Each group is ``n`` identical workers with a number of
threads, custom resources and, for GPU groups, one GPU per worker. Every worker advertises the
resource ``CPU`` equal to its thread count, which is what makes ``num_cpus`` mean CPU *slots*:
every labcluster task asks for ``CPU: num_cpus``, so a ``num_cpus=2`` task on a 2-thread worker
never shares it with another task. This module imports no Dask: ``lc.init()`` decides the groups and launches
the cluster's process before this process has imported distributed.

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
        Threads per worker; the worker advertises ``CPU: nthreads`` slots.
    resources:
        Extra resources per worker, e.g. ``{"GPU": 1}`` or ``{"special": 2}``.
    simulated:
        Only for groups with a ``GPU`` resource. ``None``: pin real GPUs when this machine has enough,
        else simulate them. ``True``: always simulate. ``False``: require real GPUs.
    memory_limit:
        Per worker, as Dask takes it (``"auto"``, ``"4GiB"``, bytes, or ``0`` for no limit).
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
    #: set by :func:`pin_gpus`: the devices of the group's workers, one per worker
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

    @property
    def gpu_mode(self) -> GPUMode:
        if not self.gpus_per_worker:
            return "none"
        return "nvml" if self.devices else "simulated"


def pin_gpus(groups: Sequence[WorkerGroup], probe: nvml.ProbeResult) -> list[WorkerGroup]:
    """Give each real-GPU worker its own device; GPU groups that cannot have real ones become simulated.

    Devices are handed out in order across groups; a group with ``simulated=False`` that cannot get
    enough devices is an error naming what the machine has.
    """
    free = list(probe.devices)
    out = []
    for g in groups:
        if not g.gpus_per_worker or g.simulated:
            out.append(g)
            continue
        if len(free) >= g.n:
            taken, free = free[: g.n], free[g.n :]
            out.append(_replace(g, devices=tuple(taken)))
        elif g.simulated is False:
            raise ValueError(
                f"worker group {g.name!r} needs {g.n} real GPU(s) but {len(free)} are free "
                f"(NVML: {probe.state.value}{'; ' + probe.detail if probe.detail else ''}); "
                f"ask for fewer, or pass simulated=True to teach on simulated GPUs"
            )
        else:
            out.append(_replace(g, simulated=True))
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

    - one CPU worker with ``num_cpus`` threads (default: this machine's cores) and the custom
      ``resources`` -- one Dask worker plays the part of one Ray node;
    - one GPU worker per GPU: the real ones NVML finds (each pinned by UUID) or, with
      ``simulate_gpus=N``, N simulated ones. ``num_gpus=N`` asks for N GPU workers: real devices first,
      simulated ones for the rest (Ray also advertises ``num_gpus`` slots that do not exist).

    >>> [g.name for g in default_groups(num_cpus=2, simulate_gpus=1)]
    ['cpu', 'gpu']
    """
    probe = probe if probe is not None else nvml.probe()
    cpus = int(num_cpus) if num_cpus is not None else cpu_count()
    if cpus < 1:
        raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
    gpu_cpus = int(config.get("local.gpu-worker-cpus"))
    groups = [WorkerGroup("cpu", n=1, nthreads=cpus, resources=dict(resources or {}))]
    if simulate_gpus is not None or (probe.count == 0 and num_gpus is None):
        n_sim = int(simulate_gpus if simulate_gpus is not None else config.get("simulate-gpus"))
        if num_gpus is not None and n_sim != num_gpus:
            raise ValueError(f"num_gpus={num_gpus} and simulate_gpus={n_sim} disagree; pass one of them")
        if n_sim:
            groups.append(WorkerGroup("gpu", n=n_sim, nthreads=gpu_cpus, resources={"GPU": 1}, simulated=True))
        return groups
    wanted = probe.count if num_gpus is None else int(num_gpus)
    real = min(wanted, probe.count)
    if real:
        groups.append(WorkerGroup("gpu", n=real, nthreads=gpu_cpus, resources={"GPU": 1}, simulated=False))
    if wanted > real:
        groups.append(WorkerGroup("gpu-sim", n=wanted - real, nthreads=gpu_cpus, resources={"GPU": 1},
                                  simulated=True))
    return groups


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity, as Dask counts them; cgroup quotas aside)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
