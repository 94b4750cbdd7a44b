"""Whether a plan's actor pools fit the cluster, decided before anything runs.

A pool's actors hold their resources for the whole execution (``map_batches(Model, num_gpus=1, concurrency=2)``
holds two GPUs), and every pool starts when the execution does. So a pool the cluster cannot hold would wait for
an actor that never starts (``actors.start-timeout`` later, with nothing done), and pools that hold every CPU slot
leave none for the tasks of the other stages, which then never run. Both fail at once here, naming the stage and
the fix; a pool's ``(min, max)`` range grows only as far as the cluster has room.

>>> workers = [("cpu-0", {"CPU": 2.0}), ("gpu-0", {"GPU": 1.0})]
>>> room({"GPU": 1.0}, workers), room({"GPU": 0.5}, workers), room({"CPU": 1.0}, workers), room({}, workers)
(1, 2, 2, None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .. import config
from ..api.actors import ActorOptions
from ..api.options import TaskOptions
from ..exceptions import InfeasibleResourceError
from ..warn import warn_user
from .plan import Stage

Workers = Sequence[tuple[str, Mapping[str, float]]]


def request_of(stage: Stage) -> dict[str, float]:
    """What each task (or each actor) of ``stage`` asks for, as the engine asks for it."""
    options = (ActorOptions if stage.actors else TaskOptions)().merged(**stage.resources.options())
    return {k: float(v) for k, v in options.request().items() if v}


def room(request: Mapping[str, float], workers: Workers) -> int | None:
    """How many holders of ``request`` the workers have room for at once (each on one worker); None: no limit."""
    asks = {k: v for k, v in request.items() if v > 0}
    if not asks:
        return None
    return sum(min(math.floor(float(res.get(k, 0.0)) / v + 1e-9) for k, v in asks.items()) for _, res in workers)


def _fmt(request: Mapping[str, float]) -> str:
    return ", ".join(f"{k}: {v:g}" for k, v in sorted(request.items()))


def fit_pools(stages: Sequence[Stage], workers: Workers) -> dict[int, int]:
    """The most actors each pool stage may have (by position); raises :class:`InfeasibleResourceError` when a pool's
    smallest size cannot be held, or the pools together leave a task stage no room (a warning instead where
    ``labcluster.infeasible`` is ``warn``: a cluster that autoscales may yet grow)."""
    caps: dict[int, int] = {}
    held: dict[str, float] = {}
    holders: list[str] = []
    for i, stage in enumerate(stages):
        if stage.kind != "map" or not stage.actors:
            continue
        low, high = stage.pool_size()
        request = request_of(stage)
        fits = room(request, workers)
        if fits is not None and low > fits:
            smaller = f"concurrency={fits} or (1, {low})" if fits else "a pool"
            _fail(f"dataset operator {stage.name!r} asks for an actor pool of {low}, each actor holding "
                  f"{{{_fmt(request)}}} while the execution runs, but the cluster has room for {fits} (actors do not "
                  f"share what they hold): ask for {smaller}, for less per actor ({_less(request, workers)}), or "
                  f"add workers", request, workers)
            continue
        caps[i] = high if fits is None else max(low, min(high, fits))
        for k, v in request.items():
            held[k] = held.get(k, 0.0) + low * v
        holders.append(f"{stage.name!r} ({low} x {{{_fmt(request)}}})")
    if not held:
        return caps
    total: dict[str, float] = {}
    for _, res in workers:
        for k, v in res.items():
            total[k] = total.get(k, 0.0) + float(v)
    for stage in stages:
        if stage.kind != "map" or stage.actors:
            continue
        request = request_of(stage)
        short = [k for k, v in request.items() if held.get(k, 0.0) > 0 and held[k] + v > total.get(k, 0.0) + 1e-9]
        if short:
            k = short[0]
            pools = "pools" if len(holders) > 1 else "pool"
            less = {"GPU": "num_gpus=", "CPU": "num_cpus="}.get(k, "resources=")
            _fail(f"the actor {pools} of {', '.join(holders)} hold {held[k]:g} of the cluster's "
                  f"{total.get(k, 0.0):g} {k}, for the whole execution, leaving the tasks of dataset operator "
                  f"{stage.name!r} (each asking for {{{_fmt(request)}}}) no room to ever run: ask for a smaller "
                  f"{pools} (concurrency=), for less per actor ({less}), or add workers", request, workers)
    return caps


def _less(request: Mapping[str, float], workers: Workers) -> str:
    """The option that asks for half of the resource that binds (the one with the least room)."""
    k = min(request, key=lambda k: room({k: request[k]}, workers) or 0)
    half = f"{request[k] / 2:g}"
    return {"GPU": f"num_gpus={half}", "CPU": f"num_cpus={half}"}.get(k, f"resources={{{k!r}: {half}}}")


def _fail(message: str, request: Mapping[str, float], workers: Workers) -> None:
    if config.get("infeasible") == "warn":
        warn_user(message)
        return
    raise InfeasibleResourceError.because(message, request, workers)
