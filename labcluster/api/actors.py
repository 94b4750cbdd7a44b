"""Actors with Ray's API: ``@lc.remote`` on a class, ``Cls.remote()`` -> :class:`ActorHandle`,
``handle.method.remote()`` -> :class:`ObjectRef`.

See ``actor_host.py`` for the worker side. Here: creating actors (a holder task with the actor's
resources), finding where an actor lives (the scheduler's metadata), and sending method calls to it
over Dask's RPC from the caller's event loop, so ``.remote()`` returns at once.

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
import inspect
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
from dask.base import annotate
from distributed import Event, Future, fire_and_forget
from distributed.protocol.serialize import to_serialize

from ..cluster.retries import ANNOTATION as RETRY_ANNOTATION
from ..exceptions import ActorDiedError
from . import feasibility, serialization
from .actor_host import METADATA, holder_key, host_actor, metadata_key, release_event
from .options import Options
from .refs import CallOutcome, ObjectRef
from .remote import _task_name
from .session import current_client

NAMES = "labcluster-actor-names"
_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ActorOptions(Options):
    """What ``@lc.remote(...)`` on a class and ``Cls.options(...)`` accept (Ray's names)."""

    num_cpus: float = 0.0  # Ray: actors hold no CPU for their life unless asked
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    name: str | None = None
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


#: holder futures of the actors this process created: actors live until lc.kill or lc.shutdown
_HOLDERS: dict[str, Future[Any]] = {}


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

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        opts = self._options
        client = current_client()
        what = f"actor {self._cls.__name__!r}"
        if opts.name is not None:
            existing = client.get_metadata([NAMES, opts.name], default=None)
            if existing is not None and _state(client, existing["id"]).get("state") != "DEAD":
                if opts.get_if_exists:
                    return _handle_from(existing)
                raise ValueError(f"an actor named {opts.name!r} already exists; use lc.get_actor({opts.name!r}), "
                                 f"or pass get_if_exists=True")
        if self._payload is None:
            serialization.check_function(self._cls, what)
            self._payload = cloudpickle.dumps(self._cls)
        serialization.check_arguments(args, kwargs, what)
        request = opts.request()
        pin: list[str] | None = None
        group = opts.in_group()
        if group is None:
            feasibility.check(client, request, what)
        else:  # inside a bundle: its resources, on its worker (even for an actor that asks for none)
            pg, index = group
            placement = pg.wait_placed()
            index = pg.bundle(index)
            request = pg.request_in_bundle(request, index)
            pin = [placement[index]]
        actor_id = f"{_task_name(self._cls.__name__)}-{uuid.uuid4().hex[:16]}"
        methods = tuple(n for n, _ in inspect.getmembers(self._cls, callable) if not n.startswith("__"))
        client.set_metadata(metadata_key(actor_id), {"state": "PENDING", "class": self._cls.__name__,
                                                     "name": opts.name, "resources": request,
                                                     "max_restarts": opts.max_restarts})
        with annotate(**{RETRY_ANNOTATION: opts.max_restarts}):
            holder = client.submit(host_actor, actor_id, self._payload, args, kwargs, opts.max_concurrency,
                                   self._cls.__name__, key=holder_key(actor_id), resources=request or None,
                                   workers=pin, allow_other_workers=False, pure=False)
        _HOLDERS[actor_id] = holder
        if opts.lifetime == "detached":  # the scheduler keeps it after this driver disconnects
            fire_and_forget(holder)
        if opts.name is not None:
            client.set_metadata([NAMES, opts.name], {"id": actor_id, "class": self._cls.__name__,
                                                     "methods": list(methods),
                                                     "max_task_retries": opts.max_task_retries})
        return ActorHandle(actor_id, self._cls.__name__, methods, opts.max_task_retries)


def _handle_from(entry: Mapping[str, Any]) -> ActorHandle:
    return ActorHandle(entry["id"], entry["class"], tuple(entry["methods"]), int(entry.get("max_task_retries", 0)))


def _state(client: Any, actor_id: str) -> dict[str, Any]:
    return dict(client.get_metadata(metadata_key(actor_id), default=None) or {})


class ActorHandle:
    """A reference to an actor: ``handle.method.remote(...)`` calls it. Picklable: pass it to tasks and actors."""

    def __init__(self, actor_id: str, class_name: str, methods: tuple[str, ...], max_task_retries: int = 0) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._max_task_retries = max_task_retries
        self._key_prefixes: dict[str, str] = {}

    def _key_prefix(self, method: str) -> str:
        prefix = self._key_prefixes.get(method)
        if prefix is None:
            prefix = self._key_prefixes[method] = _task_name(f"{self._class_name}_{method}")
        return prefix

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorHandle, (self._actor_id, self._class_name, self._methods, self._max_task_retries))

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name)

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {self._actor_id})"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"


class ActorMethod:
    """``handle.method``: call it with ``.remote(...)``."""

    def __init__(self, handle: ActorHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
                        f"try 'object.{self._name}.remote()'.")

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef:
        h = self._handle
        client = current_client()
        function = f"{h._class_name}.{self._name}"
        serialization.check_arguments(args, kwargs, f"actor method {function!r}")
        key = f"{h._key_prefix(self._name)}-{uuid.uuid4().hex}"
        call = CallOutcome(client, key)
        with _lock:
            _PENDING[h._actor_id] = _PENDING.get(h._actor_id, 0) + 1
        loop = client.loop
        assert loop is not None, "the client has no event loop (closed?)"
        loop.add_callback(_call, client, h._actor_id, self._name, (args, kwargs), call, function,
                          h._max_task_retries)
        return ObjectRef(None, function, call=call)


# -- the caller side of a call, on the client's event loop -----------------------------------------------

@dataclass
class _Route:
    address: str
    incarnation: int
    next_seq: int = 0


_ROUTES: dict[tuple[str, str], _Route] = {}
_RESOLVING: dict[tuple[str, str], asyncio.Future[_Route]] = {}
#: per (client, actor): the newest incarnation seen to die; a route must be newer than this
_DEAD: dict[tuple[str, str], int] = {}


def _forget_route(client: Any, actor_id: str, route: _Route | None) -> None:
    k = (str(client.id), actor_id)
    if route is not None:
        _DEAD[k] = max(_DEAD.get(k, -1), route.incarnation)
    current = _ROUTES.get(k)
    if current is not None and (route is None or current.incarnation <= route.incarnation):
        _ROUTES.pop(k, None)


def forget_client(client: Any) -> None:
    """Drop what this process keeps for ``client``'s actors (at ``lc.shutdown``): holder futures and routes."""
    for actor_id, holder in list(_HOLDERS.items()):
        if holder.client is client:
            _HOLDERS.pop(actor_id, None)
    cid = str(client.id)
    for table in (_ROUTES, _DEAD, _RESOLVING):
        for k in [k for k in table if k[0] == cid]:
            table.pop(k, None)


_lock = threading.Lock()
#: calls made from this process that have not finished yet, per actor
_PENDING: dict[str, int] = {}


async def _route(client: Any, actor_id: str) -> _Route:
    """Where the actor lives now; waits (bounded) for it to be constructed. Calls resume in FIFO order."""
    k = (str(client.id), actor_id)
    route = _ROUTES.get(k)
    if route is not None:
        return route
    pending = _RESOLVING.get(k)
    if pending is None:
        pending = _RESOLVING[k] = asyncio.ensure_future(_resolve(client, actor_id))
        pending.add_done_callback(lambda _: _RESOLVING.pop(k, None))
    route = await asyncio.shield(pending)
    _ROUTES.setdefault(k, route)
    return _ROUTES[k]


async def _resolve(client: Any, actor_id: str) -> _Route:
    deadline = time.monotonic() + _START_TIMEOUT
    delay = 0.005
    dead = _DEAD.get((str(client.id), actor_id), -1)
    while True:
        state = await client.scheduler.get_metadata(keys=metadata_key(actor_id), default=None) or {}
        if state.get("state") == "DEAD":
            raise ActorDiedError(actor_id, state.get("error") or "it was killed")
        if state.get("state") == "ALIVE" and int(state["incarnation"]) > dead:
            return _Route(state["address"], int(state["incarnation"]))
        holder = _HOLDERS.get(actor_id)
        if holder is not None and holder.status == "error":
            # on the event loop Future.exception() is a coroutine: read the state it would return
            cause = getattr(getattr(holder, "_state", None), "exception", None)
            raise ActorDiedError(actor_id, f"its worker died and it has no restarts left ({cause})")
        if time.monotonic() > deadline:
            raise ActorDiedError(actor_id, f"it did not start within {_START_TIMEOUT:g}s (no worker fits it?)")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def _call(client: Any, actor_id: str, method: str, payload: Any, call: CallOutcome, function: str,
                retries: int) -> None:
    try:
        outcome = await _call_actor(client, actor_id, method, payload, call.key, function, retries)
    except Exception as e:  # never leave a ref pending forever
        outcome = {"error": e}
    with _lock:  # before the outcome: whoever wakes on it must see the call as finished
        left = _PENDING.get(actor_id, 1) - 1
        if left:
            _PENDING[actor_id] = left
        else:
            _PENDING.pop(actor_id, None)
    call.finish(**outcome)


async def _call_actor(client: Any, actor_id: str, method: str, payload: Any, key: str, function: str,
                      retries: int) -> dict[str, Any]:
    """Send one call (resending after restarts, up to ``retries``); returns ``CallOutcome.finish``'s arguments."""
    attempt = 0
    wire = to_serialize(payload) if payload != ((), {}) else None  # no arguments: nothing to pickle
    while True:
        route = None
        try:
            route = await _route(client, actor_id)
            seq = route.next_seq
            route.next_seq += 1
            response = await client.rpc(route.address).labcluster_actor_call(
                actor=actor_id, method=method, payload=wire, key=key, caller=str(client.id),
                seq=seq, function=function)
        except OSError as e:  # the worker is gone: the actor died with it; a restart makes a newer route
            _forget_route(client, actor_id, route)
            if attempt < retries or retries == -1:
                attempt += 1
                continue
            return {"error": ActorDiedError(actor_id, f"its worker died during the call to {method} ({e}); "
                                                      f"pass max_task_retries= to resend calls after a restart")}
        if response["status"] == "missing":  # killed, or restarted elsewhere meanwhile
            _forget_route(client, actor_id, route)
            if attempt < retries or retries == -1:
                attempt += 1
                continue
        break
    if response["status"] == "OK" and response.get("inline"):
        return {"value": (response["value"],)}
    if response["status"] == "OK":  # a large result stayed on the worker: make it a key the caller holds
        future: Any = Future(key, client)
        await client.scheduler.update_data(who_has={key: [route.address]}, nbytes={key: response["nbytes"]},
                                           client=str(client.id))
        future._state.finish(type=response.get("type"))
        return {"future": future}
    if response["status"] == "error":
        return {"error": response["exception"]}
    return {"error": ActorDiedError(actor_id, "it is no longer on the worker it was on (killed or restarted)")}


def list_actors() -> list[dict[str, Any]]:
    """Every actor the cluster knows: id, name, class, state (PENDING/ALIVE/DEAD), worker, restarts, resources,
    and the calls this process made that have not finished (``pending_calls``)."""
    client = current_client()
    table = client.get_metadata([METADATA], default=None) or {}
    out = []
    for actor_id, st in sorted(table.items()):
        out.append({"actor_id": actor_id, "name": st.get("name"), "class_name": st.get("class"),
                    "state": st.get("state"), "worker": st.get("worker"), "address": st.get("address"),
                    "pid": st.get("pid"), "restarts": st.get("restarts", 0), "resources": st.get("resources", {}),
                    "pending_calls": _PENDING.get(actor_id, 0), "error": st.get("error")})
    return out


def get_actor(name: str) -> ActorHandle:
    """The handle of the named actor (``Cls.options(name=...).remote()``); ValueError if there is none."""
    client = current_client()
    entry = client.get_metadata([NAMES, name], default=None)
    if entry is None or _state(client, entry["id"]).get("state") == "DEAD":
        raise ValueError(f"no actor named {name!r} exists; create it with Cls.options(name={name!r}).remote()")
    return _handle_from(entry)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop an actor: pending and later calls raise ActorDiedError, and its resources are given back.

    With ``no_restart=False`` an actor that has restarts left (``max_restarts``) is re-created from its
    constructor instead, on the same worker; calls in flight fail unless ``max_task_retries`` resends them.
    """
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"lc.kill() takes an ActorHandle, got {type(actor).__name__}")
    client = current_client()
    state = _state(client, actor._actor_id)
    limit = int(state.get("max_restarts", 0))
    restart = not no_restart and state.get("state") == "ALIVE" and (
        limit == -1 or int(state.get("restarts", 0)) < limit)
    if restart:
        client.set_metadata(metadata_key(actor._actor_id), {**state, "state": "RESTARTING"})
    else:
        client.set_metadata(metadata_key(actor._actor_id), {**state, "state": "DEAD",
                                                            "error": "it was killed (lc.kill)"})
    Event(release_event(actor._actor_id), client=client).set()  # its holder returns (or restarts the actor)
    _forget_route(client, actor._actor_id, None)
    if not restart:
        holder = _HOLDERS.pop(actor._actor_id, None)
        if holder is not None:
            holder.release()
