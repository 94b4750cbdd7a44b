"""Worker groups -> a Dask ``SpecCluster`` worker spec: each worker's Nanny (or Worker) options.

>>> spec = build_spec([WorkerGroup("cpu", n=2, nthreads=2), WorkerGroup("gpu", resources={"GPU": 1})])
>>> sorted(spec)
['cpu-0', 'cpu-1', 'gpu-0']
>>> spec["gpu-0"]["options"]["resources"]  # its thread runs GPU work: no CPU slot of the cluster's
{'GPU': 1}
>>> spec["cpu-0"]["options"]["resources"]
{'CPU': 2}
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

from distributed import Nanny, Worker

from ..scheduler.protocol import WORKER_INFO
from .groups import GPUMode, WorkerGroup, memory_limits
from .worker_plugin import LabclusterWorkerPlugin


def describe_worker(worker: Worker, group: str, gpu_mode: GPUMode, gpu_ids: list[int],
                    gpu_uuids: list[str]) -> dict[str, Any]:
    """What a labcluster worker tells the scheduler about itself (sent with every heartbeat).

    Registered as a Dask worker ``metrics`` entry, so it works the same for local workers and for
    ``labcluster worker`` processes on other machines.
    """
    return {"group": group, "gpu_mode": gpu_mode, "gpu_ids": gpu_ids, "gpu_uuids": gpu_uuids,
            "pid": os.getpid()}


def dask_gpu_readings(worker: Worker) -> dict[str, Any]:
    """distributed's ``gpu`` worker metric (utilisation %, memory used) of this worker's device, sent with every
    heartbeat (the resources page reads it). distributed adds it to ``DEFAULT_METRICS`` only once NVML is
    initialised in the worker process, after a Worker copied its metrics, and ``metrics=`` replaces those anyway."""
    from distributed.diagnostics import nvml as dask_nvml

    return dict(dask_nvml.real_time())


def dask_gpu_facts(worker: Worker) -> dict[str, Any]:
    """distributed's ``gpu`` start-up information (device name, memory total), for the same reason."""
    from distributed.diagnostics import nvml as dask_nvml

    return dict(dask_nvml.one_time())


def worker_options(group: WorkerGroup, index: int, host: str, processes: bool = True,
                   prefix: str = "", stream_interval: float | None = None,
                   memory_limit: Any = None) -> dict[str, Any]:
    """Dask Worker/Nanny keyword arguments for worker ``index`` of ``group``, named ``<prefix><group>-<i>``: the one
    naming rule, whatever the worker's GPU (real or simulated) and however it was started."""
    env = dict(group.env)
    gpu_ids: list[int] = []
    gpu_uuids: list[str] = []
    mode = group.gpu_mode(index)
    if mode == "nvml":
        device = group.devices[index]
        env["CUDA_VISIBLE_DEVICES"] = device.uuid
        gpu_ids, gpu_uuids = [device.index], [device.uuid]
    elif mode == "simulated":
        gpu_ids = [index]
        gpu_uuids = [f"simulated-{prefix}{group.name}-{index}"]
    metric = functools.partial(describe_worker, group=group.name, gpu_mode=mode, gpu_ids=gpu_ids, gpu_uuids=gpu_uuids)
    options: dict[str, Any] = {
        "name": f"{prefix}{group.name}-{index}",
        "nthreads": group.nthreads,
        # a GPU worker's threads run GPU work: its slots are not the cluster's CPU slots (see groups.py)
        "resources": {**({"CPU": group.nthreads} if mode == "none" else {}), **group.resources},
        "memory_limit": group.memory_limit if memory_limit is None else memory_limit,
        "host": host,
        "metrics": {WORKER_INFO: metric, **({"gpu": dask_gpu_readings} if mode == "nvml" else {})},
        **({"startup_information": {"gpu": dask_gpu_facts}} if mode == "nvml" else {}),
        "plugins": (LabclusterWorkerPlugin(stream_interval),),
    }
    if processes:
        options["env"] = env
        # the worker process logs warnings and up only: its INFO chatter would land in notebook cells
        options["silence_logs"] = logging.WARNING
    elif env:
        raise ValueError(f"worker group {group.name!r}: env= and real GPUs need processes=True "
                         f"(threads share one environment)")
    return options


def build_spec(groups: Sequence[WorkerGroup], host: str = "127.0.0.1", processes: bool = True,
               prefix: str = "", stream_interval: float | None = None) -> dict[str, dict[str, Any]]:
    """Turn worker groups into a ``SpecCluster`` worker spec ``{name: {"cls", "options"}}``.

    ``prefix`` keeps worker names unique when several machines run the same groups.
    """
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"worker group names must be unique, got {names}")
    cls = Nanny if processes else Worker
    limits = memory_limits(groups)
    spec = {}
    for g in groups:
        for i in range(g.n):
            opts = worker_options(g, i, host, processes, prefix, stream_interval, limits[g.name])
            spec[opts["name"]] = {"cls": cls, "options": opts}
    return spec
