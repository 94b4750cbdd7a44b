"""The registry of running clusters: one JSON file per cluster a process started, so that others (the JupyterLab
sidebar's server extension, another notebook) can find it and connect.

Files live in one directory per user (``labcluster.registry.directory``; default ``$XDG_DATA_HOME/labcluster/
clusters`` or ``~/.local/share/labcluster/clusters``), made with mode 0700; each file is mode 0600 and holds no
secret (addresses, names, who started it). A file is written atomically (a temporary file in the same directory,
then ``os.replace``: a reader never sees half of one) and removed when its cluster closes. A process killed
before it could remove its file leaves it behind: readers skip, and remove, a file whose process is gone (its PID
is not running, or runs a process that started at another time: PIDs are reused; on Linux the start is read in
clock ticks since boot, so a step of the wall clock changes nothing), or whose cluster's head process
(``head_pid``, where the cluster runs in one) is gone. The directory must be the user's own and writable by no
one else (:class:`RegistryError`, a ``PermissionError``, otherwise, naming the fix): anyone who could write
there could plant a cluster.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> entry = publish({"address": "tcp://127.0.0.1:8786", "name": "demo"}, directory=folder)
>>> [(e["name"], e["address"], e["pid"] == os.getpid()) for e in entries(folder)]
[('demo', 'tcp://127.0.0.1:8786', True)]
>>> withdraw(entry["id"], directory=folder)
>>> entries(folder)
[]
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
from typing import Any

from .. import config
from ..exceptions import LabclusterError

#: bumped when an entry's fields change meaning; readers skip entries of another version
VERSION = 1
#: an entry file larger than this is not one of ours
MAX_BYTES = 64 * 1024


class RegistryError(LabclusterError, PermissionError):
    """The registry directory is not safe to use (another user's, or writable by others); the text says the fix."""


def registry_directory() -> str:
    """The registry directory (made, mode 0700, if missing)."""
    path = config.get("registry.directory", None)
    if not path:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        path = os.path.join(base, "labcluster", "clusters")
    path = os.path.abspath(os.path.expanduser(str(path)))
    os.makedirs(path, mode=0o700, exist_ok=True)
    status = os.stat(path)
    if hasattr(os, "getuid") and status.st_uid != os.getuid():
        raise RegistryError(f"the labcluster registry directory {path} belongs to another user (uid "
                              f"{status.st_uid}): set labcluster.registry.directory to a directory of your own")
    if os.name == "posix" and status.st_mode & 0o022:  # anyone else could plant entries (Windows: no such bits)
        raise RegistryError(f"the labcluster registry directory {path} is writable by others (mode "
                              f"{status.st_mode & 0o777:o}): chmod 700 {path}, or set labcluster.registry.directory "
                              "to a directory of your own")
    return path


def _started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if no such process runs."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return None
        return float(process.create_time())
    except (psutil.NoSuchProcess, ValueError):
        return None


def _boot_ticks(pid: int) -> str | None:
    """When process ``pid`` started, as ``"<boot id>/<clock ticks since boot>"``: a step of the wall clock (NTP's,
    a user's) changes nothing, unlike :func:`_started`. None where there is no Linux ``/proc``, or no process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:  # not Linux (or no /proc): the caller falls back to the start time
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; starttime is field 22
    return f"{boot}/{stat.rpartition(')')[2].split()[19]}"


def _marks(prefix: str, pid: int) -> dict[str, Any]:
    """``<prefix>_started`` and ``<prefix>_ticks``: when process ``pid`` started, as :func:`_runs` checks it."""
    return {f"{prefix}_started": _started(pid), f"{prefix}_ticks": _boot_ticks(pid)}


def publish(fields: dict[str, Any], directory: str | None = None) -> dict[str, Any]:
    """Write (or rewrite, when ``fields`` has the ``id`` of an entry) this process's entry; returns it whole.

    Adds ``id``, ``version``, ``pid``, ``pid_started``, ``pid_ticks`` and ``started`` (kept from ``fields`` when
    there) to them, and ``head_started`` and ``head_ticks`` when they have a ``head_pid``."""
    folder = directory or registry_directory()
    entry = {**fields, "version": VERSION, "host": socket.gethostname(), "pid": os.getpid(),
             **_marks("pid", os.getpid())}
    if entry.get("head_pid"):
        entry.update(_marks("head", int(entry["head_pid"])))
    entry.setdefault("id", uuid.uuid4().hex[:12])
    entry.setdefault("started", time.time())
    if not str(entry["id"]).isalnum():
        raise ValueError(f"a registry entry's id must be letters and digits, got {entry['id']!r}")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:  # mkstemp made it 0600
            json.dump(entry, out)
        os.replace(temporary, os.path.join(folder, f"{entry['id']}.json"))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return entry


def withdraw(entry_id: str, directory: str | None = None) -> None:
    """Remove an entry (nothing happens if it is gone already)."""
    folder = directory or registry_directory()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, f"{entry_id}.json"))


def _runs(pid: Any, recorded: Any, ticks: Any = None) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``recorded`` (None: not recorded), or, where
    both sides have them, at ``ticks`` (:func:`_boot_ticks`). A process we may not look at (another user's)
    counts as running: its file is not ours to remove."""
    import psutil

    try:
        started = _started(int(pid or 0))
    except psutil.AccessDenied:
        return True
    if started is None:
        return False
    now = _boot_ticks(int(pid)) if ticks is not None else None
    if now is not None:
        return bool(now == ticks)
    return recorded is None or abs(float(recorded) - started) < 1.0


def _alive(entry: dict[str, Any]) -> bool:
    """Whether the entry's process, and its cluster's head process if it names one, still run."""
    head = entry.get("head_pid")
    return _runs(entry.get("pid"), entry.get("pid_started"), entry.get("pid_ticks")) and (
        head is None or _runs(head, entry.get("head_started"), entry.get("head_ticks")))


def entries(directory: str | None = None) -> list[dict[str, Any]]:
    """Every live entry, oldest first. Files of processes that are gone are removed; unreadable ones skipped."""
    folder = directory or registry_directory()
    out = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.getsize(path) > MAX_BYTES:
                continue
            with open(path) as f:
                entry = json.load(f)
        except (OSError, ValueError):  # removed meanwhile, or not JSON
            continue
        if not isinstance(entry, dict) or entry.get("version") != VERSION or f"{entry.get('id')}.json" != name:
            continue
        if entry.get("host", socket.gethostname()) != socket.gethostname():
            continue  # another machine's (a shared home): its PIDs mean nothing here, and its file is not ours
        if not _alive(entry):
            withdraw(str(entry["id"]), folder)
            continue
        out.append(entry)
    return sorted(out, key=lambda e: float(e.get("started") or 0))
