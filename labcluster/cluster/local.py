"""Start a heterogeneous cluster on this machine: worker groups -> a distributed ``SpecCluster``.

No lifecycle code of our own: ``SpecCluster`` starts, watches and closes the Nannies; labcluster only
decides the spec (:func:`default_groups`) and the Dask settings local clusters run with
(``labcluster.local.dask-config`` in ``labcluster.yaml``); ``groups.default_groups`` decides the groups.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from distributed import Scheduler, SpecCluster

from .. import config
from ..diagnostics import nvml
from ..scheduler.extension import LabclusterSchedulerPlugin
from .groups import WorkerGroup, build_spec, pin_gpus
from .scheduler_process import SchedulerProcess
from .tuning import local_interval

logger = logging.getLogger(__name__)


def local_dask_config() -> dict[str, Any]:
    """The Dask settings a local labcluster cluster runs with (see ``labcluster.yaml`` for why)."""
    return dict(config.get("local.dask-config") or {})


def start_local_cluster(
    groups: Sequence[WorkerGroup],
    host: str | None = None,
    dashboard_address: str | None = None,
    processes: bool | None = None,
    probe: nvml.ProbeResult | None = None,
    include_dashboard: bool = True,
) -> SpecCluster:
    """Start a ``SpecCluster`` for ``groups``; all listeners bind ``host`` (default 127.0.0.1).

    Call inside ``dask.config.set(local_dask_config())`` so that the client, the scheduler and every
    worker process (the Nanny hands its config to the worker) share the tuned settings.
    """
    host = host or config.get("local.host")
    processes = config.get("local.processes") if processes is None else processes
    # no bokeh server when include_dashboard is False: saves ~0.35 s of start-up
    dashboard_address = (dashboard_address or config.get("local.dashboard-address")) if include_dashboard else None
    if any(g.gpus_per_worker and g.simulated is not True for g in groups):
        groups = pin_gpus(groups, probe if probe is not None else nvml.probe())
    interval = local_interval()
    spec = build_spec(groups, host=host, processes=bool(processes), stream_interval=interval)
    scheduler: dict[str, Any]
    if processes and config.get("local.scheduler-process"):
        scheduler = {"cls": SchedulerProcess, "options": {"host": host, "dashboard_address": dashboard_address}}
    else:
        options: dict[str, Any] = {"host": host, "port": 0}
        if not processes:
            # threads in this process talk over Dask's in-process transport, which has no host to bind
            options = {"protocol": "inproc://"}
            for entry in spec.values():
                entry["options"].pop("host")
        elif config.get("local.in-process-client"):
            # a second, in-process listener for this process's own client (see in_process_address)
            options = {"host": [host, None], "port": [0, None], "protocol": ["tcp://", "inproc://"]}
        scheduler = {"cls": Scheduler, "options": {**options, "dashboard_address": dashboard_address,
                                                   "dashboard": include_dashboard,
                                                   "plugins": [LabclusterSchedulerPlugin.configured(
                                                       retries=True, stream_interval=interval)]}}
    logger.info("starting local cluster with groups %s", list(groups))
    return SpecCluster(workers=spec, scheduler=scheduler, name="labcluster",
                       silence_logs=logging.WARNING)


def in_process_address(cluster: SpecCluster) -> str | None:
    """The scheduler's in-process listener address, when it has one (``local.in-process-client``)."""
    scheduler = getattr(cluster, "scheduler", None)
    for listener in getattr(scheduler, "listeners", ()):
        address = str(listener.contact_address)
        if address.startswith("inproc://"):
            return address
    return None
