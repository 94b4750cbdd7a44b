"""What the dashboard pages read from the scheduler, as plain values: the pages run in the scheduler process.

Every page reads labcluster's state through the scheduler extension (``scheduler.extensions["labcluster"]``, see
``labcluster/scheduler/extension.py``): its handlers (``actor_list``, ``pg_table``, ``records_page``) answer with the
plain dicts the client API gets, and its objects (the task records' store, the holder tasks) are read where a page
needs more than a handler gives. Worker facts come from Dask's public ``WorkerState`` fields (``resources``,
``used_resources``, ``metrics``, ``extra``, ``memory_limit``) and from the description each labcluster worker sends
with its heartbeat (``metrics["labcluster"]``: its GPU mode and GPU UUIDs). Roles are never read from key names.

>>> slot_label("gpu-0", "GPU", simulated=True)
'gpu-0 · GPU (simulated)'
>>> round(in_use({"CPU": 1.0}, {"CPU": 1.0, "GPU": 1.0})["CPU"], 1)
2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..scheduler.placement import is_bundle_resource
from ..scheduler.protocol import WORKER_INFO

GIB = 2**30
#: the key distributed's own NVML metrics have in a worker's ``metrics`` (readings) and ``extra`` (name, total)
DASK_GPU_METRIC = "gpu"


def extension(scheduler: Any) -> Any | None:
    """labcluster's scheduler extension on ``scheduler``, or None where its plugin does not run."""
    return getattr(scheduler, "extensions", {}).get("labcluster")


def missing_extension_text() -> str:
    return ("labcluster's scheduler extension does not run on this scheduler: start the cluster with lc.init() or "
            "`labcluster scheduler`, or connect once with lc.init(address=...) to add it")


@dataclass(frozen=True)
class WorkerView:
    """One worker as the pages show it."""

    address: str
    name: str
    #: "nvml" (a real GPU), "simulated" (a GPU slot, no device) or "none"
    gpu_mode: str
    gpu_uuids: tuple[str, ...]
    #: its own resources (without placement-group bundle resources)
    resources: dict[str, float]
    #: resources taken now: Dask's running tasks plus labcluster's holders (actors, bundles)
    used: dict[str, float]
    cpu_percent: float
    memory: int
    memory_limit: int
    #: distributed's NVML readings ({"utilization", "memory-used"}) and device facts ({"name", "memory-total"})
    gpu_metrics: dict[str, Any] = field(default_factory=dict)
    gpu_facts: dict[str, Any] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return self.gpu_mode == "simulated"


def own(resources: Mapping[str, float]) -> dict[str, float]:
    """A worker's own resources, without the ``pg_*`` ones its bundle holders add."""
    return {str(k): float(v) for k, v in resources.items() if not is_bundle_resource(str(k))}


def in_use(running: Mapping[str, float], held: Mapping[str, float]) -> dict[str, float]:
    """What is taken of each resource: running tasks (Dask counts them) plus holders (Dask stopped counting them
    once they seceded; the extension's ``Holders`` counts them again)."""
    out = {str(k): float(v) for k, v in running.items()}
    for k, v in held.items():
        out[str(k)] = out.get(str(k), 0.0) + float(v)
    return {k: v for k, v in out.items() if not is_bundle_resource(k)}


def slot_label(worker: str, resource: str, simulated: bool) -> str:
    """The row label of one worker's resource; a simulated worker's GPU says so."""
    suffix = " (simulated)" if simulated and resource == "GPU" else ""
    return f"{worker} · {resource}{suffix}"


def workers(scheduler: Any) -> list[WorkerView]:
    """Every worker here now, sorted by name."""
    ext = extension(scheduler)
    held: dict[Any, dict[str, float]] = ext.holders.held_by_worker() if ext is not None else {}
    out = []
    for ws in list(scheduler.workers.values()):
        metrics = dict(ws.metrics or {})
        desc = metrics.get(WORKER_INFO) or {}
        out.append(WorkerView(
            address=str(ws.address), name=str(ws.name), gpu_mode=str(desc.get("gpu_mode") or "none"),
            gpu_uuids=tuple(str(u) for u in desc.get("gpu_uuids") or ()), resources=own(ws.resources),
            used=in_use(ws.used_resources or {}, held.get(ws, {})), cpu_percent=float(metrics.get("cpu") or 0.0),
            memory=int(metrics.get("memory") or 0), memory_limit=int(ws.memory_limit or 0),
            gpu_metrics=dict(metrics.get(DASK_GPU_METRIC) or {}),
            gpu_facts=dict((getattr(ws, "extra", None) or {}).get(DASK_GPU_METRIC) or {})))
    return sorted(out, key=lambda w: w.name)


@dataclass(frozen=True)
class Device:
    """One real GPU, counted once however many workers name its UUID."""

    uuid: str
    name: str
    workers: tuple[str, ...]
    utilization: float | None
    memory_used: int | None
    memory_total: int | None

    @property
    def label(self) -> str:
        return f"{', '.join(self.workers)}: {self.name} ({self.uuid[:12]})"


def devices(views: list[WorkerView]) -> tuple[list[Device], list[str]]:
    """The real GPUs of ``views``, each once (by UUID), and a line per worker whose GPU sends no readings.

    >>> w = WorkerView("tcp://a:1", "gpu-0", "nvml", ("GPU-1",), {"GPU": 1.0}, {}, 0.0, 0, 0,
    ...                {"utilization": 40, "memory-used": 2**30}, {"name": "H200", "memory-total": 2**31})
    >>> twin = WorkerView("tcp://a:2", "gpu-1", "nvml", ("GPU-1",), {"GPU": 1.0}, {}, 0.0, 0, 0, {}, {})
    >>> found, silent = devices([w, twin])
    >>> [(d.workers, d.utilization) for d in found], silent
    ([(('gpu-0', 'gpu-1'), 40.0)], [])
    """
    found: dict[str, Device] = {}
    silent: list[str] = []
    for w in views:
        if w.gpu_mode != "nvml":
            continue
        for uuid in w.gpu_uuids or (f"{w.name}-gpu",):
            known = found.get(uuid)
            if known is not None:  # one device named by two workers: counted once
                found[uuid] = Device(uuid, known.name, (*known.workers, w.name), known.utilization,
                                     known.memory_used, known.memory_total)
                continue
            readings = w.gpu_metrics if uuid == (w.gpu_uuids or (uuid,))[0] else {}
            if not readings:
                silent.append(f"{w.name} has GPU {uuid} but sends no NVML readings (distributed.diagnostics.nvml "
                              f"is off there, or pynvml is missing on that machine)")
            util = readings.get("utilization")
            used = readings.get("memory-used")
            total = w.gpu_facts.get("memory-total")
            found[uuid] = Device(uuid, str(w.gpu_facts.get("name") or "GPU"), (w.name,),
                                 float(util) if util is not None else None, int(used) if used is not None else None,
                                 int(total) if total is not None else None)
    return list(found.values()), silent


def placement_groups(scheduler: Any) -> dict[str, Any]:
    """The extension's placement-group table (``labcluster_pg_table``), with worker names."""
    ext = extension(scheduler)
    return dict(ext.pg_table()) if ext is not None else {}


def actors(scheduler: Any) -> list[dict[str, Any]]:
    """The extension's actor table (``labcluster_actor_list``)."""
    ext = extension(scheduler)
    return list(ext.actor_list()) if ext is not None else []


def worker_names(scheduler: Any) -> dict[str, str]:
    """Address -> name of every worker seen (those that left too), as pictures show it: a simulated GPU's worker
    says so (``gpu-0 (simulated GPU)``)."""
    ext = extension(scheduler)
    names = dict(ext.worker_names(labelled=True)) if ext is not None else {}
    for address, ws in list(scheduler.workers.items()):
        names.setdefault(str(address), str(ws.name))
    return names


def records(scheduler: Any) -> Any | None:
    """The task recorder (``RecordsPlugin``: its ``store`` and ``page``), or None where records are off."""
    ext = extension(scheduler)
    return getattr(ext, "records", None) if ext is not None else None


def departures(scheduler: Any) -> tuple[float, ...]:
    """When each worker that left did (it changes exactly when results may have been lost with a worker)."""
    ext = extension(scheduler)
    left = getattr(ext, "left", None) or {}
    return tuple(sorted(float(when) for _, when in left.values()))


def replace_data(source: Any, data: dict[str, list[Any]]) -> bool:
    """Give ``source`` new columns only when they differ: an unchanged page sends the browser nothing (each send
    makes it redraw; four pages redrawn twice a second kept most of a core busy in a headless Chromium)."""
    if {k: list(v) for k, v in source.data.items()} == data:
        return False
    source.data = data
    return True
