"""The one submission funnel for tasks and actors (Ray's ``_remote``): resources, placement, checks, annotations.

:func:`submit` turns a call into one Dask task: its arguments are checked (picklable, and large ones sent ahead as
objects, as Ray puts arguments over 100 KB into its store), its resource request is checked against the cluster
(or turned into one for its placement-group bundle), and it carries labcluster's annotations (stage, name, retry
limit, role). ``RemoteFunction.remote`` and ``ActorClass.remote`` both come through here.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dask.base import annotate
from distributed import Future

from .. import config
from ..scheduler.protocol import annotations_for
from . import feasibility, scopes, serialization
from .objects import put_in
from .options import Options
from .refs import ObjectRef
from .session import Session

_stage: contextvars.ContextVar[str | None] = contextvars.ContextVar("labcluster_stage", default=None)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Tasks submitted inside ``with lc.stage(name):`` belong to stage ``name`` in the task records: the
    lineage's coarse view groups by it, and ``lc.timeline_figure(color_by="stage")`` colours by it.

    >>> with lc.stage("load"):                             # doctest: +SKIP
    ...     parts = [load.remote(i) for i in range(8)]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a stage name must be a non-empty string, got {name!r}")
    token = _stage.set(name)
    try:
        yield
    finally:
        _stage.reset(token)


def current_stage() -> str | None:
    return _stage.get()


def arguments(session: Session, args: Sequence[Any], kwargs: Mapping[str, Any], what: str
              ) -> tuple[list[Any], dict[str, Any]]:
    """Check ``args`` and ``kwargs`` and make them what the task gets: refs become dependencies (they arrive as
    values), and arguments larger than ``labcluster.inline-argument-bytes`` travel as objects, not in the graph."""
    pickles = serialization.check_arguments(args, kwargs, what)
    limit = int(config.get("inline-argument-bytes"))

    def one(where: int | str, value: Any) -> Any:
        if isinstance(value, ObjectRef):
            return value.future  # an actor call's result: waits for the call and makes it a key
        p = pickles.get(where)
        if p is not None and serialization.nbytes(p) > limit:
            return put_in(session, value, p).future  # the pickle of the check travels: no second one
        return value

    return [one(i, a) for i, a in enumerate(args)], {k: one(k, v) for k, v in kwargs.items()}


@contextlib.contextmanager
def _submitting(session: Session, options: Options, what: str, role: str | None = None, owner: str | None = None,
                retries: int | None = None, pin_to_bundle: bool = False) -> Iterator[dict[str, Any]]:
    """The Dask keywords a task with ``options`` is submitted with, inside labcluster's annotations for it: its
    resource request (checked against the cluster, or made one for its placement-group bundle) and the workers it
    may run on."""
    request = options.request()
    workers: list[str] | None = None
    group = options.in_group()
    if group is None:
        feasibility.check(session, request, what)
    else:  # the bundle's resources appear on its worker once the group is placed: wait for that
        pg, index = group
        placement = pg.wait_placed()
        index = pg.bundle(index)
        request = pg.request_in_bundle(request, index)
        if pin_to_bundle or not request:  # nothing of the bundle's to ask for: run on its worker all the same
            workers = [placement[index]]
    origin = scopes.origin(str(session.client.id)) if role is None else None  # what it prints goes there
    annotations = annotations_for(role=role, owner=owner, stage=_stage.get(), name=getattr(options, "name", None),
                                  max_retries=retries, origin=origin)
    with annotate(**annotations) if annotations else contextlib.nullcontext():
        # fifo_timeout=0: tasks start in the order they were submitted, as in Ray. Dask's default (100 ms) gives
        # every task submitted within 100 ms of the last the same priority, and a worker breaks that tie by key:
        # a random order for labcluster's random keys (a dataset's blocks then reach the next stage out of turn)
        yield {"resources": request or None, "workers": workers, "allow_other_workers": False, "pure": False,
               "fifo_timeout": 0}


def submit(session: Session, fn: Callable[..., Any], call_args: Sequence[Any], *, options: Options, what: str,
           key: str, retries: int | None, role: str | None = None, owner: str | None = None,
           pin_to_bundle: bool = False) -> Future[Any]:
    """Submit ``fn(*call_args)`` as the task ``key`` with ``options``' resources; returns its Dask future.

    ``retries``: the task's limit for worker deaths (None: the cluster default); ``role``/``owner``: labcluster's
    plumbing (actor and bundle holders); ``pin_to_bundle``: run on the bundle's worker (work in a bundle whose
    request comes out empty runs there too).
    """
    with _submitting(session, options, what, role, owner, retries, pin_to_bundle) as dask_options:
        future: Future[Any] = session.client.submit(fn, *call_args, key=key, **dask_options)
    return future


def submit_many(session: Session, fn: Callable[..., Any], calls: Sequence[Sequence[Any]], *, options: Options,
                what: str, keys: Sequence[str], retries: int | None) -> list[Future[Any]]:
    """:func:`submit` of ``fn(*call_args)`` for each of ``calls`` (all with the same arity), as the tasks
    ``keys``, in one message to the scheduler (``Client.map``): they start in this order, as separate submits do.
    A Dataset stage launches its blocks so (each submit is a wake-up of the client's event loop)."""
    if not calls:
        return []
    with _submitting(session, options, what, retries=retries) as dask_options:
        futures: list[Future[Any]] = session.client.map(fn, *zip(*calls, strict=True), key=list(keys),
                                                        batch_size=None, **dask_options)
    return futures
