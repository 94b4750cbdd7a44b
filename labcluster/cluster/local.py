"""A local cluster of thread workers in this process (``lc.init(processes=False)``): a Dask ``SpecCluster``.

The scheduler and the workers share this process and talk over Dask's in-process transport: the fastest to
start, with no GPU pinning and no isolation. Clusters of worker processes run in a head process of their own
instead (``head.py``). No lifecycle code of our own: ``SpecCluster`` starts, watches and closes the workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from distributed import Scheduler, SpecCluster

from ..scheduler.extension import LabclusterSchedulerPlugin
from .groups import WorkerGroup
from .scaling import Scaler
from .spec import build_spec
from .spec_cluster import KeepingSpecCluster
from .tuning import local_interval

logger = logging.getLogger(__name__)
# With the scheduler in this process its loggers write to the notebook's cells: Dask's shuffle logs two WARNING
# lines for every peer-to-peer shuffle that went well ("Shuffle ... initialized by task ...", "... deactivated
# due to stimulus ..."), which a dataframe's groupby or merge would print into the cell. Its real errors are kept.
logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)


def start_in_process(groups: Sequence[WorkerGroup], dashboard_address: str | None = None) -> SpecCluster:
    """Start a ``SpecCluster`` of thread workers for ``groups``, with labcluster's extension on its scheduler.

    Call inside ``dask.config.set(tuning.local_settings())``: the scheduler reads its settings as it starts.
    """
    interval = local_interval()
    spec = build_spec(groups, processes=False, stream_interval=interval)
    for entry in spec.values():  # Dask's in-process transport has no host to bind
        entry["options"].pop("host")
    plugin = LabclusterSchedulerPlugin.configured(retries=True, stream_interval=interval)
    scheduler: dict[str, Any] = {"cls": Scheduler, "options": {
        # without a dashboard the scheduler still serves /health and /metrics: on a free port, never 8787
        "protocol": "inproc://", "dashboard_address": dashboard_address or "127.0.0.1:0",
        "dashboard": dashboard_address is not None,
        "plugins": [plugin]}}
    logger.info("starting an in-process cluster with groups %s", list(groups))
    cluster = KeepingSpecCluster(workers=spec, scheduler=scheduler, name="labcluster", silence_logs=logging.WARNING)
    scaler = Scaler(cluster, groups, host=None, processes=False, stream_interval=interval)
    scheduler_object: Any = cluster.scheduler
    scaler.install(scheduler_object)
    return cluster


def in_process_address(cluster: SpecCluster) -> str | None:
    """The scheduler's in-process listener address."""
    scheduler = getattr(cluster, "scheduler", None)
    for listener in getattr(scheduler, "listeners", ()):
        address = str(listener.contact_address)
        if address.startswith("inproc://"):
            return address
    return None
