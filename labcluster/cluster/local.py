"""Start a heterogeneous cluster on this machine: worker groups -> a distributed ``SpecCluster``.

No lifecycle code of our own: ``SpecCluster`` starts, watches and closes the Nannies; labcluster only
decides the spec (:func:`default_groups`) and the Dask settings local clusters run with
(``labcluster.local.dask-config`` in ``labcluster.yaml``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dask.system import CPU_COUNT
from distributed import Scheduler, SchedulerPlugin, SpecCluster

from .. import config
from ..diagnostics import nvml
from .groups import WorkerGroup, build_spec, pin_gpus
from .held import SpillPlugin
from .records import records_plugins
from .retries import RetryLimitPlugin
from .scheduler_process import SchedulerProcess
from .tuning import StreamsSchedulerPlugin, StreamTuning

logger = logging.getLogger(__name__)


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
    cpus = int(num_cpus) if num_cpus is not None else CPU_COUNT
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


def local_dask_config() -> dict[str, Any]:
    """The Dask settings a local labcluster cluster runs with (see ``labcluster.yaml`` for why)."""
    return dict(config.get("local.dask-config") or {})


def labcluster_plugins(streams: StreamTuning) -> list[SchedulerPlugin]:
    """The plugins of every scheduler labcluster starts (local clusters and ``labcluster scheduler``): stream
    settings, per-task max_retries for worker deaths, spilling tasks stuck behind holders, and task records."""
    return [StreamsSchedulerPlugin(streams), RetryLimitPlugin(int(config.get("max-retries"))),
            SpillPlugin(config.seconds("spill-interval")), *records_plugins()]


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
    streams = StreamTuning.configured(local=True)
    spec = build_spec(groups, host=host, processes=bool(processes), streams=streams)
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
                                                   "plugins": labcluster_plugins(streams)}}
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
