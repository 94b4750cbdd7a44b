"""Actors with Ray's API: ``@lc.remote`` on a class, ``Cls.remote()`` -> :class:`ActorHandle`,
``handle.method.remote()`` -> :class:`ObjectRef`.

See ``actor_host.py`` for the worker side. Here: creating actors (a holder task with the actor's
resources, through the submission funnel), finding where an actor lives (the scheduler extension's actor table),
and sending method calls to it over Dask's RPC from the caller's event loop, so ``.remote()`` returns at once.

>>> import labcluster as lc
>>> @lc.remote
... class Counter:
...     def __init__(self):
...         self.n = 0
...     def incr(self):
...         self.n += 1
...         return self.n
>>> c = Counter.remote()                              # doctest: +SKIP
>>> lc.get([c.incr.remote() for _ in range(3)])      # doctest: +SKIP
[1, 2, 3]
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cloudpickle
from distributed import Future, fire_and_forget
from distributed.protocol.serialize import to_serialize

from .. import config
from ..dask_internals import register_worker_data, worker_rpc
from ..exceptions import ActorDiedError, TaskCancelledError
from ..scheduler.protocol import ROLE_ACTOR
from ..scheduler.usage import held_up
from ..text import plural
from . import scopes, serialization
from .actor_host import host_actor
from .boundary import entry
from .calls import acall, call
from .options import Options
from .refs import CallOutcome, ObjectRef
from .runner import source_of, task_name
from .session import Session, say
from .start import current_session
from .submit import current_stage, submit
from .tables import Table

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ActorOptions(Options):
    """What ``@lc.remote(...)`` on a class and ``Cls.options(...)`` accept (Ray's names)."""

    num_cpus: float = 0.0  # Ray: actors hold no CPU for their life unless asked
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    name: str | None = None
    namespace: str | None = None
    get_if_exists: bool = False
    lifetime: str | None = None
    max_restarts: int = 0
    max_task_retries: int = 0
    max_concurrency: int = 1
    placement_group: Any = None
    bundle_index: int = -1
    scheduling_strategy: Any = None

    kind = "actor option"

    def validate(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.lifetime not in (None, "detached"):
            raise ValueError(f"lifetime must be None or 'detached', got {self.lifetime!r}")
        for k, v in (("max_restarts", self.max_restarts), ("max_task_retries", self.max_task_retries)):
            if not isinstance(v, int) or v < -1:
                raise ValueError(f"{k} must be an int >= -1 (-1: forever), got {v!r}")


def method(*, num_returns: int = 1, **ignored: Any) -> Callable[[F], F]:
    """Ray's ``@ray.method``: options of one actor method; ``num_returns=N`` makes ``.remote()`` return N refs.

    >>> @lc.remote                                      # doctest: +SKIP
    ... class Splitter:
    ...     @lc.method(num_returns=2)
    ...     def halves(self, xs):
    ...         return xs[: len(xs) // 2], xs[len(xs) // 2 :]
    """
    if not isinstance(num_returns, int) or num_returns < 1:
        raise ValueError(f"num_returns must be an int >= 1, got {num_returns!r}")

    def mark(fn: F) -> F:
        fn.__labcluster_num_returns__ = num_returns  # type: ignore[attr-defined]
        return fn

    return mark


def _methods(cls: type) -> dict[str, int]:
    """Each public method of ``cls`` with its ``num_returns``."""
    return {name: int(getattr(fn, "__labcluster_num_returns__", 1))
            for name, fn in inspect.getmembers(cls, callable) if not name.startswith("__")}


class ActorClass:
    """A class made remote: ``Cls.remote(*args)`` creates an actor; ``Cls.options(...)`` returns a copy."""

    def __init__(self, cls: type, options: ActorOptions) -> None:
        self._cls = cls
        self._options = options
        self._payload: bytes | None = None
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._cls.__name__
        raise TypeError(f"actors cannot be instantiated directly. Instead of '{name}()', use '{name}.remote()'.")

    def options(self, **overrides: Any) -> ActorClass:
        return ActorClass(self._cls, self._options.merged(**overrides))

    def __repr__(self) -> str:
        return f"ActorClass({self._cls.__name__})"

    @entry
    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        opts = self._options
        session = current_session()
        session.require_extension("actors")
        what = f"actor {self._cls.__name__!r}"
        if self._payload is None:
            serialization.check_function(self._cls, what)
            # the class and its source (read here, where it exists: tracebacks on the worker show its lines)
            self._payload = cloudpickle.dumps((self._cls, source_of(self._cls)))
        serialization.check_arguments(args, kwargs, what)
        actor_id = f"{task_name(self._cls.__name__)}-{uuid.uuid4().hex[:16]}"
        holder = f"actor-{actor_id}"
        methods = _methods(self._cls)
        namespace = opts.namespace if opts.namespace is not None else session.namespace
        entry = {"id": actor_id, "class": self._cls.__name__, "name": opts.name, "namespace": namespace,
                 "methods": methods, "resources": opts.request(), "max_restarts": opts.max_restarts,
                 "max_task_retries": opts.max_task_retries, "holder": holder, "lifetime": opts.lifetime,
                 "in_group": opts.in_group() is not None}  # what it holds is its placement group's bundle
        answer = call(session.client, "actor_register", info=entry)
        if answer["status"] == "exists":
            if opts.get_if_exists:
                return _handle_from(answer["actor"])
            raise ValueError(f"an actor named {opts.name!r} already exists in namespace {namespace!r}; use "
                             f"lc.get_actor({opts.name!r}), or pass get_if_exists=True")
        try:
            # what the constructor prints goes to the cell that made the actor (the holder itself routes nothing)
            origin = scopes.origin(str(session.client.id))
            future = submit(session, host_actor, (actor_id, holder, self._payload, args, kwargs,
                                                  opts.max_concurrency, self._cls.__name__, origin),
                            options=opts, what=what, key=holder, retries=opts.max_restarts, role=ROLE_ACTOR,
                            pin_to_bundle=True)
        except BaseException:
            call(session.client, "actor_update", actor_id=actor_id,
                 fields={"state": "DEAD", "error": "it could not be submitted"})
            raise
        session.part(Caller).holders[actor_id] = future
        if opts.lifetime == "detached":  # the scheduler keeps it after this driver disconnects
            fire_and_forget(future)
        return ActorHandle(actor_id, self._cls.__name__, methods, opts.max_task_retries)


def _handle_from(entry: Mapping[str, Any]) -> ActorHandle:
    methods = entry["methods"]
    if not isinstance(methods, dict):  # written by an older labcluster: a list of names
        methods = dict.fromkeys(methods, 1)
    return ActorHandle(entry["id"], entry["class"], dict(methods), int(entry.get("max_task_retries", 0)))


class ActorHandle:
    """A reference to an actor: ``handle.method.remote(...)`` calls it. Picklable: pass it to tasks and actors."""

    def __init__(self, actor_id: str, class_name: str, methods: Mapping[str, int], max_task_retries: int = 0) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = dict(methods)
        self._max_task_retries = max_task_retries
        self._key_prefixes: dict[str, str] = {}

    def _key_prefix(self, method: str) -> str:
        prefix = self._key_prefixes.get(method)
        if prefix is None:
            prefix = self._key_prefixes[method] = task_name(f"{self._class_name}_{method}")
        return prefix

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorHandle, (self._actor_id, self._class_name, self._methods, self._max_task_retries))

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name, self._methods[name])

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {self._actor_id})"

    def _state(self) -> dict[str, Any]:
        try:
            return dict(call(current_session(auto_init=False).client, "actor_get", actor_id=self._actor_id) or {})
        except Exception:  # no session, or the cluster is gone: the repr still renders
            return {}

    def _repr_html_(self) -> str:
        state = self._state()
        status = str(state.get("state", "unknown"))
        color = {"ALIVE": "#2a7f2a", "DEAD": "#b00020"}.get(status, "#8a6d00")
        where = f" on <code>{html.escape(str(state['worker']))}</code>" if state.get("worker") else ""
        name = f" named <code>{html.escape(str(state['name']))}</code>" if state.get("name") else ""
        error = (f"<br><span style='color:#b00020'>{html.escape(str(state['error']))}</span>"
                 if state.get("error") else "")
        restarts = state.get("restarts", 0)
        methods = ", ".join(html.escape(m) for m in sorted(self._methods))
        return (f"<div><strong>Actor</strong> {html.escape(self._class_name)}{name} "
                f"<span style='color:{color}'>{html.escape(status)}</span>{where}"
                f"<br>id <code>{html.escape(self._actor_id)}</code> &middot; restarts {restarts}"
                f"/{state.get('max_restarts', 0)} &middot; methods: {methods}{error}</div>")


class ActorMethod:
    """``handle.method``: call it with ``.remote(...)``."""

    def __init__(self, handle: ActorHandle, name: str, num_returns: int = 1) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
                        f"try 'object.{self._name}.remote()'.")

    def options(self, *, num_returns: int | None = None, **ignored: Any) -> ActorMethod:
        """Ray's ``method.options(num_returns=...)`` for one call."""
        return ActorMethod(self._handle, self._name, self._num_returns if num_returns is None else num_returns)

    @entry
    def remote(self, *args: Any, **kwargs: Any) -> Any:
        h = self._handle
        session = current_session()
        function = f"{h._class_name}.{self._name}"
        serialization.check_arguments(args, kwargs, f"actor method {function!r}")
        client = session.client
        key = f"{h._key_prefix(self._name)}-{uuid.uuid4().hex}"
        outcome = CallOutcome(client, key)
        parts = [CallOutcome(client, f"{key}-{i}") for i in range(self._num_returns)] if self._num_returns > 1 else []
        caller = session.part(Caller)
        caller.started(h._actor_id)
        loop = client.loop
        assert loop is not None, "the client has no event loop (closed?)"
        for part in (outcome, *parts):  # lc.cancel of any of them: the call does not start if it has not yet
            part.on_cancel = functools.partial(loop.add_callback, _cancel_call, caller, h._actor_id, key)
        loop.add_callback(_call, caller, h._actor_id, self._name, (args, kwargs), outcome, parts, function,
                          h._max_task_retries, current_stage(), scopes.origin(str(client.id)))
        refs = [ObjectRef(None, function, call=p) for p in parts] if parts else [ObjectRef(None, function,
                                                                                           call=outcome)]
        for ref in refs:
            scopes.started(ref)  # a notebook cell's interrupt cancels it
        return refs if parts else refs[0]


# -- the caller side of a call, on the client's event loop -----------------------------------------------

@dataclass
class _Route:
    address: str
    incarnation: int
    next_seq: int = 0


class Caller:
    """What a session keeps for the actors it created and calls: holder futures (an actor lives while its creator
    holds it), where each actor lives, and the calls in flight."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.holders: dict[str, Future[Any]] = {}
        self.routes: dict[str, _Route] = {}
        self.resolving: dict[str, asyncio.Future[_Route]] = {}
        #: per actor: the newest incarnation seen to die; a route must be newer than this
        self.dead: dict[str, int] = {}
        #: calls made from this session that have not finished yet, per actor
        self.pending: dict[str, int] = {}
        self.lock = threading.Lock()

    def started(self, actor_id: str) -> None:
        with self.lock:
            self.pending[actor_id] = self.pending.get(actor_id, 0) + 1

    def finished(self, actor_id: str) -> None:
        with self.lock:
            left = self.pending.get(actor_id, 1) - 1
            if left:
                self.pending[actor_id] = left
            else:
                self.pending.pop(actor_id, None)

    def forget_route(self, actor_id: str, route: _Route | None) -> None:
        if route is not None:
            self.dead[actor_id] = max(self.dead.get(actor_id, -1), route.incarnation)
        current = self.routes.get(actor_id)
        if current is not None and (route is None or current.incarnation <= route.incarnation):
            self.routes.pop(actor_id, None)

    def close(self) -> None:
        self.holders.clear()
        self.routes.clear()
        self.resolving.clear()
        self.dead.clear()


async def _route(caller: Caller, actor_id: str) -> _Route:
    """Where the actor lives now; waits (bounded) for it to be constructed. Calls resume in FIFO order."""
    route = caller.routes.get(actor_id)
    if route is not None:
        return route
    pending = caller.resolving.get(actor_id)
    if pending is None:
        pending = caller.resolving[actor_id] = asyncio.ensure_future(_resolve(caller, actor_id))
        pending.add_done_callback(lambda _: caller.resolving.pop(actor_id, None))
    route = await asyncio.shield(pending)
    caller.routes.setdefault(actor_id, route)
    return caller.routes[actor_id]


async def _resolve(caller: Caller, actor_id: str) -> _Route:
    """Wait (up to ``actors.start-timeout``) for the actor to run; past ``waiting-notice``, say once what
    holds the resources it waits for, and name them again if it times out."""
    client = caller.session.client
    timeout, notice = config.seconds("actors.start-timeout"), config.seconds("waiting-notice")
    began = time.monotonic()
    deadline, told = began + timeout, False
    dead = caller.dead.get(actor_id, -1)
    while True:
        left = deadline - time.monotonic()
        until_notice = began + notice - time.monotonic() if not told else left
        state = await acall(client, "actor_get", actor_id=actor_id, newer_than=dead,
                            timeout=max(0.0, min(left, until_notice, 5.0))) or {}
        if state.get("state") == "DEAD":
            raise ActorDiedError(actor_id, state.get("error") or "it was killed")
        if state.get("state") == "ALIVE" and int(state["incarnation"]) > dead:
            return _Route(state["address"], int(state["incarnation"]))
        waited = time.monotonic() - began
        if time.monotonic() > deadline:
            held = await _held_from(client, state)
            raise ActorDiedError(actor_id, f"it did not start within {timeout:g}s: "
                                           f"{held or 'no worker had room for it'} "
                                           f"(labcluster.actors.start-timeout sets this bound)")
        if not told and waited >= notice:
            told = True  # once, whatever its state (a restarting actor is not held up by others' work)
            held = await _held_from(client, state) if state.get("state") == "PENDING" else ""
            if held:
                say(f"actor {actor_id} has waited {waited:.0f}s to start: {held}. It starts when that ends "
                    f"(lc.cancel or lc.kill it to go on now); after labcluster.actors.start-timeout "
                    f"({timeout:g}s) it fails")


async def _held_from(client: Any, state: Mapping[str, Any]) -> str:
    """Which running work holds what the actor (its table entry ``state``) asks for, in one clause ('' if none)."""
    request = {k: float(v) for k, v in (state.get("resources") or {}).items() if v}
    if not request:
        return ""
    with contextlib.suppress(Exception):  # an older extension, a lost scheduler: the wait's own words stand
        rows = await acall(client, "holding", request=request) or []
        if rows:
            return held_up(request, rows)
    return ""


async def _call(caller: Caller, actor_id: str, method: str, payload: Any, outcome: CallOutcome,
                parts: list[CallOutcome], function: str, retries: int, stage: str | None = None,
                origin: str | None = None) -> None:
    try:
        result = await _call_actor(caller, actor_id, method, payload, outcome.key, function, retries, stage, origin)
    except Exception as e:  # never leave a ref pending forever
        result = {"error": e}
    caller.finished(actor_id)  # before the outcome: whoever wakes on it must see the call as finished
    outcome.finish(**result)
    for i, part in enumerate(parts):
        _split(caller, outcome, part, i)


async def _cancel_call(caller: Caller, actor_id: str, key: str) -> None:
    """Tell the actor's worker not to start the call ``key`` (one running already finishes)."""
    route = caller.routes.get(actor_id)
    if route is None:  # not sent yet, or the actor is gone: the call's own outcome says it was cancelled
        return
    with contextlib.suppress(Exception):
        await worker_rpc(caller.session.client, route.address).labcluster_actor_cancel(actor=actor_id, keys=[key])


def _split(caller: Caller, whole: CallOutcome, part: CallOutcome, index: int) -> None:
    """Item ``index`` of a call with ``num_returns > 1`` (``@lc.method(num_returns=...)``)."""
    if whole.error is not None:
        part.finish(error=whole.error)
    elif whole.value is not None:
        part.finish(value=(serialization.item(whole.value[0], index),))
    else:  # a large result stayed on the actor's worker: split it there
        assert whole.future is not None
        part.finish(future=caller.session.client.submit(serialization.item, whole.future, index, key=part.key,
                                                        pure=False))


async def _call_actor(caller: Caller, actor_id: str, method: str, payload: Any, key: str, function: str,
                      retries: int, stage: str | None = None, origin: str | None = None) -> dict[str, Any]:
    """Send one call (resending after restarts, up to ``retries``); returns ``CallOutcome.finish``'s arguments."""
    client = caller.session.client
    attempt = 0
    wire = to_serialize(payload) if payload != ((), {}) else None  # no arguments: nothing to pickle
    while True:
        route = None
        try:
            route = await _route(caller, actor_id)
            seq = route.next_seq
            route.next_seq += 1
            response = await worker_rpc(client, route.address).labcluster_actor_call(
                actor=actor_id, method=method, payload=wire, key=key, caller=str(client.id),
                seq=seq, function=function, stage=stage, origin=origin)
        except OSError:  # the worker is gone: the actor died with it; a restart makes a newer route
            caller.forget_route(actor_id, route)
            if attempt < retries or retries == -1:
                attempt += 1
                continue
            # (the error of a closed connection names Dask's connection pool: not the user's business)
            return {"error": ActorDiedError(actor_id, f"its worker died during the call to {method}; an actor "
                                                      f"made with max_restarts=N restarts on a live worker, and "
                                                      f"max_task_retries=N resends the calls that were in flight")}
        if response["status"] == "missing":  # killed, or restarted elsewhere meanwhile
            caller.forget_route(actor_id, route)
            if attempt < retries or retries == -1:
                attempt += 1
                continue
        break
    if response["status"] == "OK" and response.get("inline"):
        return {"value": (response["value"],)}
    if response["status"] == "OK":  # a large result stayed on the worker: make it a key the caller holds
        future: Any = Future(key, client)
        assert route is not None
        await register_worker_data(client, key, route.address, int(response["nbytes"]))
        return {"future": future}
    if response["status"] == "error":
        return {"error": response["exception"]}
    if response["status"] == "cancelled":  # lc.cancel reached the actor before the call started
        return {"error": TaskCancelledError(key)}
    state = await acall(client, "actor_get", actor_id=actor_id) or {}
    return {"error": ActorDiedError(actor_id, state.get("error") or "it is not running (killed, or it restarted "
                                                                   "and calls in flight were not resent)")}


class ActorTable(Table):
    """``lc.list_actors()``: one row per actor, as a table (``to_pandas()`` for every field)."""

    columns = ("class_name", "name", "state", "worker", "restarts", "max_restarts", "resources", "pending_calls",
               "actor_id", "error")

    def summary(self) -> str:
        states: dict[str, int] = {}
        for row in self:
            states[row["state"]] = states.get(row["state"], 0) + 1
        counts = ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
        return plural(len(self), "actor") + (f"; {counts}" if counts else "")

    def cell(self, row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column == "resources" and isinstance(value, dict):
            return ", ".join(f"{k}: {v:g}" for k, v in sorted(value.items())) or "-"
        return "" if value is None else str(value)


_ACTOR_STATES = ("PENDING", "ALIVE", "RESTARTING", "DEAD")


@entry(inputs=True)
def list_actors(*, state: str | Sequence[str] | None = None) -> ActorTable:
    """Every actor the cluster knows, with Ray's field names: ``actor_id``, ``class_name``, ``name``, ``state``
    (PENDING, ALIVE, RESTARTING, DEAD), where it runs, restarts, resources, calls pending from this process, and
    the error of a dead one. Renders as a table; ``.to_pandas()`` for analysis. ``state``: only those in that
    state (or states), e.g. ``lc.list_actors(state="ALIVE")`` without the dead ones of finished dataset runs."""
    wanted = {state} if isinstance(state, str) else set(state) if state is not None else None
    if wanted is not None:
        wanted = {str(s).upper() for s in wanted}
        unknown = wanted - set(_ACTOR_STATES)
        if unknown:
            raise ValueError(f"unknown actor state(s) {sorted(unknown)}; use one of {', '.join(_ACTOR_STATES)}")
    session = current_session(auto_init=False)
    session.require_extension("actors")
    pending = dict(session.part(Caller).pending)
    rows = []
    for row in call(session.client, "actor_list") or []:
        if wanted is not None and row.get("state") not in wanted:
            continue
        rows.append({"actor_id": row["id"], "class_name": row.get("class"), "name": row.get("name"),
                     "namespace": row.get("namespace"), "state": row.get("state"), "worker": row.get("worker"),
                     "address": row.get("address"), "pid": row.get("pid"), "restarts": row.get("restarts", 0),
                     "max_restarts": row.get("max_restarts", 0), "resources": row.get("resources") or {},
                     "pending_calls": pending.get(row["id"], 0), "error": row.get("error")})
    return ActorTable(rows)


@entry
def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the named actor (``Cls.options(name=...).remote()``); ValueError if there is none."""
    session = current_session(auto_init=False)
    session.require_extension("actors")
    namespace = namespace if namespace is not None else session.namespace
    entry = call(session.client, "actor_lookup", name=name, namespace=namespace)
    if entry is None:
        raise ValueError(f"no actor named {name!r} exists in namespace {namespace!r}; create it with "
                         f"Cls.options(name={name!r}).remote()")
    return _handle_from(entry)


@entry
def kill(actor: ActorHandle, *, no_restart: bool = True, _reason: str | None = None) -> None:
    """Stop an actor: pending and later calls raise ActorDiedError, and its resources are given back.

    With ``no_restart=False`` an actor that has restarts left (``max_restarts``) is re-created from its
    constructor instead, on the same worker; calls in flight fail unless ``max_task_retries`` resends them.
    """
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"lc.kill() takes an ActorHandle, got {type(actor).__name__}")
    session = current_session(auto_init=False)
    restarting = bool(call(session.client, "actor_kill", actor_id=actor._actor_id, restart=not no_restart,
                           reason=_reason))
    caller = session.part(Caller)
    caller.forget_route(actor._actor_id, None)
    if not restarting:
        holder = caller.holders.pop(actor._actor_id, None)
        if holder is not None:
            holder.release()
