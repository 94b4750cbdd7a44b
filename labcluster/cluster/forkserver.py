"""The head's forkserver, forked from the head itself once it has imported what a worker needs.

A Nanny started with ``multiprocessing-method: forkserver`` asks multiprocessing's forkserver for each worker
process, and the forkserver forks it from a process that has imported distributed already: a worker starts in
~0.1 s instead of the ~0.6 s a spawned one spends importing. The standard library starts its forkserver as a new
interpreter, which imports those modules all over again; on a 2-core machine that third import of distributed (the
driver and the head import it too) holds the cluster's start back by ~0.3 s. :func:`fork_forkserver` starts it as a
fork of the head instead, right after the head's imports and before it starts any thread or event loop, so it has
every module already and costs nothing to warm.

It sets up what ``multiprocessing.forkserver.ForkServer.ensure_running`` sets up (a listening socket, the "alive"
pipe, the resource tracker) and runs the stdlib's own ``forkserver.main`` in the child; that part of the stdlib is
private, so :func:`fork_forkserver` checks it looks as expected (CPython 3.11 to 3.13, no forkserver
authentication) and returns False, doing nothing, otherwise: the head then names its preload modules and the
Nanny starts the stdlib's forkserver as usual, which imports them itself (~0.3 s later to the first worker).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Iterable, Sequence

from ..dask_internals import keep_forkserver_preload

_FIELDS = ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid", "_lock")


def fork_forkserver(close_fds: Iterable[int] = ()) -> bool:
    """Start multiprocessing's forkserver as a fork of this process; True if it did.

    Call it in the main thread with no other thread running. ``close_fds``: this process's file descriptors the
    forkserver (and so every worker) must not hold, such as a pipe whose end-of-file tells someone this process
    exited.
    """
    from multiprocessing import connection, forkserver, resource_tracker, util

    server = getattr(forkserver, "_forkserver", None)
    arbitrary_address = getattr(connection, "arbitrary_address", None)
    if (not (3, 11) <= sys.version_info[:2] <= (3, 13) or server is None or arbitrary_address is None
            or not all(hasattr(server, name) for name in _FIELDS) or hasattr(server, "_forkserver_authkey")
            or threading.active_count() != 1):
        return False
    with server._lock:
        if server._forkserver_pid is not None:
            return True
        resource_tracker.ensure_running()
        address = arbitrary_address("AF_UNIX")
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            for stream in (sys.stdout, sys.stderr):  # nothing buffered here is printed again by the forkserver
                with contextlib.suppress(Exception):
                    stream.flush()
            pid = os.fork()
            if pid == 0:  # the forkserver: serve until every holder of alive_w is gone
                code = 1
                try:
                    # this lock is held (by the block around the fork); every worker forked from here must find it
                    # free, or a worker that starts a forkserver process of its own would wait for it forever
                    server._lock = threading.Lock()
                    os.close(alive_w)
                    for fd in close_fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    forkserver.main(listener.fileno(), alive_r, [])
                    code = 0
                except SystemExit:  # how forkserver.main ends once its last client is gone
                    code = 0
                finally:
                    os._exit(code)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return True


def start_for_workers(modules: Sequence[str], close_fds: Iterable[int] = ()) -> bool:
    """The head's forkserver: import ``modules`` (what every worker imports anyway), then fork the forkserver from
    this process (:func:`fork_forkserver`); where that is refused or fails, name them as the preload of the stdlib's
    forkserver, which the first Nanny starts. Either way distributed is kept from choosing a preload of its own
    (``keep_forkserver_preload``). True if it forked."""
    for module in modules:
        importlib.import_module(module)
    try:
        forked = fork_forkserver(close_fds)
    except OSError:
        forked = False
    if not forked:
        multiprocessing.set_forkserver_preload(list(modules))
    keep_forkserver_preload()
    return forked
