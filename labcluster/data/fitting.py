"""Whether a plan's actor pools fit the cluster, decided before anything runs.

A pool's actors hold their resources for the whole execution (``map_batches(Model, num_gpus=1, concurrency=2)``
holds two GPUs), and every pool starts when the execution does. So pools the cluster cannot hold would wait for an
actor that never starts (``actors.start-timeout`` later, with nothing done), and pools that hold every CPU slot
leave none for the tasks of the other stages, which then never run. Both fail at once here, naming the stages and
the fix. A pool's ``(min, max)`` range grows only into what is left when every pool has its smallest size and one
task of each task stage can run, the pools in stage order.

>>> workers = [("cpu-0", {"CPU": 2.0}), ("gpu-0", {"GPU": 1.0})]
>>> room({"GPU": 1.0}, workers), room({"GPU": 0.5}, workers), room({"CPU": 1.0}, workers), room({}, workers)
(1, 2, 2, None)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .. import config
from ..api.actors import ActorOptions
from ..api.options import TaskOptions
from ..cluster.info import sum_resources
from ..exceptions import InfeasibleResourceError
from ..text import resources as _fmt
from ..warn import warn_user
from .plan import Stage

Workers = Sequence[tuple[str, Mapping[str, float]]]
_EPS = 1e-9


def request_of(stage: Stage) -> dict[str, float]:
    """What each task (or each actor) of ``stage`` asks for, as the engine asks for it."""
    options = (ActorOptions if stage.actors else TaskOptions)().merged(**stage.resources.options())
    return {k: float(v) for k, v in options.request().items() if v}


def room(request: Mapping[str, float], workers: Workers) -> int | None:
    """How many holders of ``request`` the workers have room for at once (each on one worker); None: no limit."""
    asks = {k: v for k, v in request.items() if v > 0}
    if not asks:
        return None
    return sum(min(math.floor(float(res.get(k, 0.0)) / v + _EPS) for k, v in asks.items()) for _, res in workers)


def _less(request: Mapping[str, float], workers: Workers) -> str:
    """The option that asks for half of the resource that binds (the one with the least room)."""
    k = min(request, key=lambda k: room({k: request[k]}, workers) or 0)
    half = f"{request[k] / 2:g}"
    return {"GPU": f"num_gpus={half}", "CPU": f"num_cpus={half}"}.get(k, f"resources={{{k!r}: {half}}}")


def without_holders(workers: Workers, actors: Sequence[Mapping[str, Any]],
                    groups: Mapping[str, Mapping[str, Any]]) -> tuple[Workers, list[str]]:
    """``workers`` less what the live ``actors`` (rows of the actor table) and the placed placement ``groups`` (the
    groups' table) hold on them, and what each holds. An actor inside a group holds part of its bundle: counted
    once, as the bundle."""
    left = {name: dict(res) for name, res in workers}
    held = []

    def take(where: Any, res: Mapping[str, float], what: str) -> None:
        if where in left and res:
            for k, v in res.items():
                left[where][k] = left[where].get(k, 0.0) - float(v)
            held.append(f"{what} holds {_fmt(res)} on {where}")

    for actor in actors:
        if actor.get("state") == "ALIVE" and not actor.get("in_group"):
            take(actor.get("worker"), actor.get("resources") or {}, f"actor {actor.get('class')} ({actor.get('id')})")
    for pg_id, group in groups.items():
        if group.get("state") == "CREATED":
            label = f"placement group {group.get('name') or pg_id}, bundle"
            for i, (where, bundle) in enumerate(zip(group.get("workers") or [], group.get("bundles") or [],
                                                     strict=False)):
                take(where, bundle, f"{label} {i}")
    return list(left.items()), held


def fit_pools(stages: Sequence[Stage], workers: Workers, held: Sequence[str] = (),
              skip: Collection[int] = ()) -> dict[int, int]:
    """The most actors each pool stage may have (by position); raises :class:`InfeasibleResourceError` when the
    pools' smallest sizes cannot be held together, or leave a task stage no room (where ``labcluster.infeasible`` is
    ``warn``, for a cluster that autoscales, it warns instead and lets each pool grow to the top of its range).
    ``workers``: what is left to the pools; ``held``: what other actors hold (said in the error); ``skip``: the
    positions of pools not to fit (no worker could ever hold them, and the user was told so)."""
    pools = [(i, s, request_of(s)) for i, s in enumerate(stages) if s.kind == "map" and s.actors and i not in skip]
    if not pools:
        return {}
    # what other actors and placement groups hold leads the fixes: no smaller pool fits where they hold it all
    others = (f"; other work holds part of it ({'; '.join(held[:3])}{' ...' if len(held) > 3 else ''}): "
              f"lc.kill those actors or lc.remove_placement_group those groups first, or") if held else ":"
    warn = config.get("infeasible") == "warn"
    total = sum_resources(res for _, res in workers)
    rooms = {position: room(request, workers) for position, _, request in pools}
    need: dict[str, float] = {}  # one task of every task stage may run at any time
    for stage in stages:
        if stage.kind == "map" and not stage.actors:
            for k, v in request_of(stage).items():
                need[k] = max(need.get(k, 0.0), v)
    holds: dict[str, float] = {}  # what the pools hold at their smallest sizes
    for position, stage, request in pools:
        low, _ = stage.pool_size()
        fits = rooms[position]
        if fits is not None and low > fits:
            # the size to suggest: one that also leaves the task stages a task's room
            leaves = min((math.floor((total.get(k, 0.0) - need[k]) / v + _EPS) for k, v in request.items()
                          if need.get(k)), default=fits)
            most = min(fits, leaves)
            fixes = [f"ask for concurrency={most} or (1, {low})"] if most >= 1 else []
            half = {k: v / 2 for k, v in request.items()}
            if (room(half, workers) or 0) >= low:
                fixes.append(f"ask for less per actor ({_less(request, workers)})")
            fixes.append("add workers")
            _fail(f"dataset operator {stage.name!r} asks for an actor pool of {low}, each actor holding "
                  f"{_fmt(request)} while the execution runs (actors do not share what they hold), but the cluster "
                  f"has room for {fits}{others} {_either(fixes)}", request, workers)
        for k, v in request.items():
            holds[k] = holds.get(k, 0.0) + low * v
    named = ", ".join(f"{s.name!r} ({s.pool_size()[0]} x {_fmt(r)})" for _, s, r in pools)
    pronoun = ("pools", "hold") if len(pools) > 1 else ("pool", "holds")
    for k, amount in holds.items():
        if amount > total.get(k, 0.0) + _EPS:
            _fail(f"the actor {pronoun[0]} of {named} {pronoun[1]} {amount:g} {k} at the smallest, but the cluster "
                  f"has {total.get(k, 0.0):g}{others} ask for smaller pools (concurrency=), for less per actor, or "
                  f"add workers", {k: amount}, workers)
    for stage in stages:  # each task stage must have room for one task beside the pools
        if stage.kind != "map" or stage.actors:
            continue
        request = request_of(stage)
        short = [k for k, v in request.items() if holds.get(k, 0.0) > 0 and holds[k] + v > total.get(k, 0.0) + _EPS]
        if short:
            k = short[0]
            less = _less({k: max(r.get(k, 0.0) for _, _, r in pools)}, workers)
            smaller = "concurrency="
            if len(pools) == 1:  # the size that leaves this stage's tasks one slot
                most = math.floor((total.get(k, 0.0) - request[k]) / pools[0][2][k] + _EPS)
                smaller = f"concurrency={most}" if most >= 1 else smaller
            _fail(f"the actor {pronoun[0]} of {named} {pronoun[1]} {holds[k]:g} of the cluster's "
                  f"{total.get(k, 0.0):g} {k} for the whole execution, leaving the tasks of dataset operator "
                  f"{stage.name!r} (each asking for {_fmt(request)}) no room to ever run{others} ask for a smaller "
                  f"{pronoun[0]} ({smaller}), for less per actor ({less}), or add workers", request, workers)
    spare = {k: total.get(k, 0.0) - holds.get(k, 0.0) - need.get(k, 0.0) for k in total}
    caps: dict[int, int] = {}
    for position, stage, request in pools:  # the range's growth, from what is left, the pools in stage order
        low, high = stage.pool_size()
        if warn:
            caps[position] = high
            continue
        more = min((math.floor(max(spare.get(k, 0.0), 0.0) / v + _EPS) for k, v in request.items()), default=high)
        fits = rooms[position]
        caps[position] = max(low, min(high, low + more, fits if fits is not None else high))
        for k, v in request.items():
            spare[k] = spare.get(k, 0.0) - (caps[position] - low) * v
    return caps


def _either(fixes: Sequence[str]) -> str:
    """``a, b or c``."""
    return fixes[0] if len(fixes) == 1 else f"{', '.join(fixes[:-1])} or {fixes[-1]}"


def _fail(message: str, request: Mapping[str, float], workers: Workers) -> None:
    if config.get("infeasible") == "warn":
        warn_user(message)
        return
    raise InfeasibleResourceError.because(message, request, workers)
