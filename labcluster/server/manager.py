"""What the JupyterLab sidebar asks of clusters, with no web code: list, create, get, scale and delete, each
answering one JSON-able cluster model (``handlers.py`` only translates HTTP to these calls and back).

The clusters are those of the registry (``cluster/registry.py``): the ones any kernel or script started, and the
ones this server started (their head process is this server's child, stopped by its PID). Live facts (workers,
groups, totals, use) are read from each scheduler with Dask's ``identity`` RPC: no Dask client is opened, so the
sidebar polling a cluster adds nothing to its scheduler but one message.

Errors are labcluster exceptions, each mapped by the handlers to one status code: :class:`ClusterNotFound` (404),
:class:`InvalidRequest` (400, naming the field and the fix), :class:`ClusterConflict` (409: stopping a cluster
someone else started without ``confirm``, scaling a cluster that cannot scale), ``ClusterError`` (500: a start
that failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import time
from typing import Any

from .. import config
from ..cluster import registry
from ..cluster.groups import WorkerGroup, default_groups, pin_real_gpus
from ..cluster.info import WorkerInfo, shown, total_resources, workers_from_info
from ..cluster.launcher import Head
from ..exceptions import LabclusterError

#: what a create request may say, and its bounds (a sidebar form; a script wanting more calls lc.init itself)
CREATE_FIELDS = {
    "name": "a name for the cluster (text, at most 64 characters)",
    "workers": "CPU workers (1 to 64)",
    "threads": "threads per CPU worker (1 to 256)",
    "gpus": "GPU workers, one GPU each (0 to 64)",
    "simulate_gpus": "true: the GPUs are simulated; false: real ones first (NVML), simulated for the rest",
    "resources": "custom resources per CPU worker, e.g. {\"special\": 2} (at most 16, each 0 to 1e6)",
}
#: a cluster model's fields, in order (the sidebar's IClusterModel, jupyter_extension/src/model.ts, mirrors them)
MODEL_FIELDS = ("id", "name", "address", "owner", "started", "processes", "status", "workers", "groups", "totals",
                "use", "dashboard_port", "dashboards", "connect_code")
SCALE_FIELDS = {"group": "the worker group to resize (e.g. \"cpu\" or \"gpu\")", "workers": "its new size (0 to 64)"}
MAX_WORKERS, MAX_THREADS, MAX_RESOURCES = 64, 256, 16
#: the dashboard pages the sidebar opens as tabs: labcluster's, then Dask's own status page
DASHBOARD_PAGES = (("resources", "labcluster: resources", "individual-labcluster-resources"),
                   ("timeline", "labcluster: timeline", "individual-labcluster-timeline"),
                   ("lineage", "labcluster: lineage", "individual-labcluster-lineage"),
                   ("actors", "labcluster: actors", "individual-labcluster-actors"),
                   ("dask-status", "Dask: status", "status"))


class ClusterNotFound(LabclusterError, KeyError):
    """No running cluster has this id (it stopped, or never was)."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        super().__init__(f"no running labcluster cluster has the id {cluster_id!r}: it may have stopped; "
                         "refresh the list of clusters")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidRequest(LabclusterError, ValueError):
    """A request body that cannot be: names the field and what it takes."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class ClusterConflict(LabclusterError):
    """The cluster cannot do this now (stop someone else's cluster without confirming; scale one that cannot)."""


#: not custom resources: CPU and GPU slots, and memory (its own total); what to set instead
_INSTEAD = {"CPU": "CPU slots are the threads of each CPU worker: set threads instead",
            "GPU": "GPUs come with GPU workers, one each: set gpus instead",
            "memory": "memory is the machine's, split over the workers by their threads"}
_NOT_CUSTOM = tuple(_INSTEAD)


def _integer(body: dict[str, Any], field: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(field, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(field, f"must be from {low} to {high}, got {value}")
    return value


def _known(body: Any, fields: dict[str, str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("body", f"must be a JSON object with some of: {', '.join(fields)}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise InvalidRequest(unknown[0], f"is not a field this request takes; it takes {', '.join(fields)}")
    return body


def groups_from_request(body: Any) -> tuple[str | None, list[WorkerGroup]]:
    """The name and the worker groups a create request asks for (see :data:`CREATE_FIELDS`).

    >>> name, groups = groups_from_request({"workers": 2, "threads": 1, "gpus": 1, "simulate_gpus": True})
    >>> [(g.name, g.n, g.nthreads, dict(g.resources), g.simulated) for g in groups]
    [('cpu', 2, 1, {}, None), ('gpu', 1, 1, {'GPU': 1}, True)]
    """
    body = _known(body, CREATE_FIELDS)
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name.strip()) <= 64):
        raise InvalidRequest("name", f"must be text of 1 to 64 characters, got {name!r}")
    workers = _integer(body, "workers", 1, MAX_WORKERS, 1)
    assert workers is not None
    threads = _integer(body, "threads", 1, MAX_THREADS, max(1, (os.cpu_count() or 1) // workers))
    gpus = _integer(body, "gpus", 0, MAX_WORKERS, 0)
    simulate = body.get("simulate_gpus", True)
    if not isinstance(simulate, bool):
        raise InvalidRequest("simulate_gpus", f"must be true or false, got {simulate!r}")
    resources = body.get("resources") or {}
    if not isinstance(resources, dict) or len(resources) > MAX_RESOURCES:
        raise InvalidRequest("resources", f"must be an object of at most {MAX_RESOURCES} names and amounts, e.g. "
                                          f"{{\"special\": 2}}, got {str(resources)[:80]!r}")
    for key, amount in resources.items():
        if not (isinstance(key, str) and 0 < len(key) <= 64 and key.replace("_", "").replace("-", "").isalnum()):
            raise InvalidRequest("resources", f"a resource name must be letters, digits, '-' or '_' (at most 64), "
                                              f"got {key!r}")
        if key in _NOT_CUSTOM:
            raise InvalidRequest("resources", f"{key} is not a custom resource: {_INSTEAD[key]}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or \
                not 0 <= amount <= 1e6:
            raise InvalidRequest("resources", f"the amount of {key!r} must be a number from 0 to 1e6, got {amount!r}")
    amounts = {k: float(v) for k, v in resources.items()}
    try:
        groups = (default_groups(num_cpus=threads, resources=amounts, simulate_gpus=gpus) if simulate else
                  default_groups(num_cpus=threads, resources=amounts, num_gpus=gpus))
    except ValueError as e:
        raise InvalidRequest("gpus", str(e)) from None
    groups[0] = dataclasses.replace(groups[0], n=workers)
    return (name.strip() if name is not None else None), groups


def _groups(workers: list[WorkerInfo], spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group's live workers and what they add up to; a group of the cluster's ``spec`` with no worker up
    (scaled to 0, or still starting) is listed too, with 0 of everything, so it can be scaled back up."""
    out: dict[str, dict[str, Any]] = {}

    def group(name: str) -> dict[str, Any]:
        return out.setdefault(name, {"name": name, "workers": 0, "threads": 0, "gpus": 0.0, "simulated_gpus": 0.0,
                                     "resources": {}})

    for g in spec:
        group(str(g["name"]))
    for w in workers:
        g = group(w.group)
        g["workers"] += 1
        g["threads"] += w.nthreads
        gpus = float(w.resources.get("GPU", 0))
        g["simulated_gpus" if w.simulated else "gpus"] += gpus
        for key, amount in shown(w.resources).items():
            if key not in _NOT_CUSTOM:
                g["resources"][key] = g["resources"].get(key, 0.0) + float(amount)
    return list(out.values())


def _live(info: dict[str, Any]) -> dict[str, Any]:
    """The model's live part from a scheduler's ``identity``."""
    workers = workers_from_info(info)
    total = total_resources(workers)
    simulated = sum(float(w.resources.get("GPU", 0)) for w in workers if w.simulated)
    metrics = [w.get("metrics") or {} for w in info.get("workers", {}).values()]
    cpu = [float(m.get("cpu") or 0.0) for m in metrics]
    return {
        "status": "running",
        "workers": len(workers),
        "groups": _groups(workers, list(info.get("labcluster_groups") or [])),
        "totals": {"cpus": float(total.get("CPU", 0)), "gpus": float(total.get("GPU", 0)) - simulated,
                   "simulated_gpus": simulated, "threads": sum(w.nthreads for w in workers),
                   "memory": sum(w.memory_limit for w in workers),
                   "resources": {k: v for k, v in shown(total).items() if k not in _NOT_CUSTOM}},
        "use": {"cpu_percent": sum(cpu) / len(cpu) if cpu else 0.0,
                "memory": int(sum(float(m.get("memory") or 0) for m in metrics))},
        "dashboard_port": (info.get("services") or {}).get("dashboard"),
    }


def _unreachable() -> dict[str, Any]:
    return {"status": "unreachable", "workers": 0, "groups": [],
            "totals": {"cpus": 0.0, "gpus": 0.0, "simulated_gpus": 0.0, "threads": 0, "memory": 0, "resources": {}},
            "use": {"cpu_percent": 0.0, "memory": 0}, "dashboard_port": None}


def _refused(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is refused at once: nothing listens there any more."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:  # unreachable, or slow to accept: not known to be closed
        return False


class ClusterManager:
    """The clusters of the registry, and the ones this server starts (see the module docstring)."""

    def __init__(self, rpc_timeout: float = 3.0) -> None:
        self.rpc_timeout = rpc_timeout
        #: registry id -> the head process of a cluster this server started
        self._heads: dict[str, Head] = {}

    # -- read ------------------------------------------------------------------------------------------------------
    async def list_clusters(self) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(registry.entries)
        return list(await asyncio.gather(*(self._model(e) for e in entries)))

    async def get_cluster(self, cluster_id: str) -> dict[str, Any]:
        return await self._model(await self._entry(cluster_id))

    async def _entry(self, cluster_id: str) -> dict[str, Any]:
        for entry in await asyncio.to_thread(registry.entries):
            if entry["id"] == cluster_id:
                return entry
        raise ClusterNotFound(cluster_id)

    async def _identity(self, address: str) -> dict[str, Any] | None:
        """The scheduler's ``identity``, with ``"labcluster_groups"`` added: its worker groups' names, those with
        no worker up included (empty where the scheduler has no such handler: a cluster of an older labcluster)."""
        try:
            async with self._scheduler(address) as scheduler:  # both questions at once, on one connection
                info, groups = await asyncio.wait_for(asyncio.gather(
                    scheduler.identity(n_workers=-1), scheduler.labcluster_groups(), return_exceptions=True),
                    self.rpc_timeout)
        except Exception:  # gone or slow: one card says so
            return None
        if isinstance(info, BaseException):  # not a Dask scheduler any more (its port reused), or failing
            return None
        return {**info, "labcluster_groups": [] if isinstance(groups, BaseException) else list(groups)}

    async def _closed(self, address: str) -> bool:
        """Whether the scheduler at ``address`` no longer listens. Over TCP, whether a connection is refused:
        Dask's own connect cannot tell that from a slow scheduler (it retries until its timeout). Other
        transports (in-process ones): whether it no longer answers."""
        from distributed.comm.addressing import parse_address, parse_host_port

        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            return await asyncio.to_thread(_refused, *parse_host_port(location))
        return await self._identity(address) is None

    def _scheduler(self, address: str) -> Any:
        """Dask's RPC to a scheduler (an async context manager), connecting within ``rpc_timeout``."""
        from distributed.core import rpc

        return rpc(address, timeout=self.rpc_timeout)

    async def _ask(self, address: str, op: str, reply: float | None = None, **kwargs: Any) -> Any:
        """One Dask RPC to a scheduler: the answer within ``reply`` seconds (default ``rpc_timeout``)."""
        async with self._scheduler(address) as scheduler:
            return await asyncio.wait_for(getattr(scheduler, op)(**kwargs), reply or self.rpc_timeout)

    async def _model(self, entry: dict[str, Any]) -> dict[str, Any]:
        info = await self._identity(str(entry["address"]))
        live = _live(info) if info is not None else _unreachable()
        port = live["dashboard_port"]
        owner = dict(entry.get("owner") or {})
        return {
            "id": str(entry["id"]),
            "name": entry.get("name") or (f"cluster of {owner['notebook']}" if owner.get("notebook") else
                                          f"cluster {entry['id'][:6]}"),
            "address": str(entry["address"]),
            "owner": {"kind": str(owner.get("kind", "process")), "notebook": owner.get("notebook"),
                      "pid": owner.get("pid")},
            "started": float(entry.get("started") or 0.0),
            "processes": bool(entry.get("processes")),
            **live,
            "dashboards": [{"page": page, "title": title, "path": f"proxy/{port}/{route}"}
                           for page, title, route in DASHBOARD_PAGES] if port else [],
            "connect_code": f"import labcluster as lc\nlc.init(address={str(entry['address'])!r})",
        }

    # -- change ----------------------------------------------------------------------------------------------------
    async def create_cluster(self, body: Any) -> dict[str, Any]:
        """Start a cluster in a head process of this server's; returns its model once its workers are up."""
        name, groups = await asyncio.to_thread(groups_from_request, body)  # it probes NVML: off the server's loop
        try:
            entry = await asyncio.to_thread(self._start, name, groups)
        except ValueError as e:  # the head refused the groups (its own validation): the request's fault
            raise InvalidRequest("body", str(e)) from None
        return await self._model(entry)

    def _start(self, name: str | None, groups: list[WorkerGroup]) -> dict[str, Any]:
        groups = pin_real_gpus(groups)
        host = str(config.get("local.host"))
        head = Head(groups, host=host, dashboard_address=f"{host}:0")
        head.start()
        try:
            wait = config.seconds("timeouts.worker-start")
            address = str(head.wait_for("scheduler", wait))
            head.wait_for("workers", wait)
            assert head.process is not None
            entry = registry.publish({"name": name, "address": address, "processes": True,
                                      "head_pid": head.process.pid, "dashboard": None,
                                      "owner": {"kind": "server", "notebook": None, "pid": os.getpid()}})
        except BaseException:
            head.close()
            raise
        self._heads[str(entry["id"])] = head
        return entry

    async def scale_cluster(self, cluster_id: str, body: Any) -> dict[str, Any]:
        body = _known(body, SCALE_FIELDS)
        group = body.get("group", "cpu")
        if not isinstance(group, str) or not group:
            raise InvalidRequest("group", f"must be a worker group's name, got {group!r}")
        workers = _integer(body, "workers", 0, MAX_WORKERS, None)
        if workers is None:
            raise InvalidRequest("workers", "is required: the group's new size (0 to 64)")
        entry = await self._entry(cluster_id)
        try:
            result = await self._ask(str(entry["address"]), "labcluster_scale", reply=120.0, group=group, n=workers)
        except OSError as e:
            raise ClusterConflict(f"the cluster's scheduler at {entry['address']} does not answer ({e})") from None
        except Exception as e:  # its scheduler has no labcluster_scale handler
            raise ClusterConflict(f"this cluster cannot be scaled from here ({type(e).__name__}: {e}); scale it "
                                  "where it was started") from None
        if isinstance(result, dict) and "error" in result:
            if result.get("type") == "TimeoutError":
                raise ClusterConflict(str(result["error"]))
            raise InvalidRequest("group" if "group" in str(result["error"]) else "workers", str(result["error"]))
        return await self._model(entry)

    async def delete_cluster(self, cluster_id: str, confirm: bool = False) -> None:
        """Stop a cluster: this server's by its head's PID; one a kernel or script started only with ``confirm``
        (its scheduler is asked to close; its owner's session then says the cluster is gone)."""
        head = self._heads.pop(cluster_id, None)
        if head is not None:
            await asyncio.to_thread(head.close)
            registry.withdraw(cluster_id)
            return
        entry = await self._entry(cluster_id)
        owner = (entry.get("owner") or {}).get("kind", "process")
        if not confirm:
            raise ClusterConflict(f"this cluster was started by a {owner}"
                                  + (f" ({entry['owner']['notebook']})" if entry["owner"].get("notebook") else "")
                                  + ", whose work stops with it: confirm to stop it anyway")
        address = str(entry["address"])
        with contextlib.suppress(OSError):  # gone already, closed before it answered, or slow (TimeoutError)
            await self._ask(address, "terminate", reply=30.0)
        # once its scheduler no longer listens, its entry goes, though the process that started it may live on (a
        # kernel whose cluster ran in the kernel's own process); a scheduler that is only slow keeps it
        deadline = time.monotonic() + 10.0
        while not await self._closed(address):
            if time.monotonic() > deadline:
                raise ClusterConflict(f"the cluster's scheduler at {address} was asked to stop and still listens "
                                      "10 s later (it may be busy); try again, or stop it where it was started "
                                      "(lc.shutdown())")
            await asyncio.sleep(0.2)
        registry.withdraw(cluster_id)

    def close(self) -> None:
        """Stop every cluster this server started (when the server stops)."""
        for cluster_id, head in list(self._heads.items()):
            head.close()
            registry.withdraw(cluster_id)
        self._heads.clear()
