"""The registry of running clusters (cluster/registry.py): what a started cluster writes, who can read it, and
that files of processes that are gone are skipped and removed."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import labcluster as lc
from labcluster.cluster import registry


@pytest.fixture
def folder(tmp_path: Path) -> str:
    return str(tmp_path / "clusters")


def test_an_entry_is_written_whole_private_and_removed(folder: str) -> None:
    os.makedirs(folder, mode=0o700)
    entry = registry.publish({"address": "tcp://127.0.0.1:8786", "name": "a"}, directory=folder)
    path = Path(folder, f"{entry['id']}.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == entry and entry["pid"] == os.getpid()
    assert not [p for p in os.listdir(folder) if not p.endswith(".json")]  # no temporary file left behind
    again = registry.publish({**entry, "name": "b"}, directory=folder)  # a rewrite keeps id and start time
    assert (again["id"], again["started"]) == (entry["id"], entry["started"])
    assert [e["name"] for e in registry.entries(folder)] == ["b"]
    registry.withdraw(entry["id"], directory=folder)
    registry.withdraw(entry["id"], directory=folder)  # twice: nothing to do
    assert registry.entries(folder) == []


def test_the_default_directory_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    with dask.config.set({"labcluster.registry.directory": None}):
        path = registry.registry_directory()
    assert path == str(tmp_path / "labcluster" / "clusters")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_entries_of_processes_that_are_gone_are_skipped_and_removed(folder: str) -> None:
    os.makedirs(folder, mode=0o700)
    code = ("import sys, time; from labcluster.cluster import registry; "
            f"registry.publish({{'address': 'tcp://127.0.0.1:1'}}, directory={folder!r}); print('written', flush=True); "
            "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        assert [e["pid"] for e in registry.entries(folder)] == [child.pid]
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no chance to remove its file
        child.wait(timeout=10)
    assert len(os.listdir(folder)) == 1
    assert registry.entries(folder) == []
    assert os.listdir(folder) == []  # a reader cleaned it up


def test_an_entry_whose_clusters_head_process_is_gone_is_skipped(folder: str) -> None:
    os.makedirs(folder, mode=0o700)
    head = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        registry.publish({"address": "tcp://127.0.0.1:1", "head_pid": head.pid}, directory=folder)
        (entry,) = registry.entries(folder)
        assert entry["head_started"] is not None
    finally:
        head.kill()
        head.wait(timeout=10)
    assert registry.entries(folder) == []


def test_a_reused_pid_and_files_that_are_not_entries_are_skipped(folder: str) -> None:
    os.makedirs(folder, mode=0o700)
    entry = registry.publish({"address": "tcp://127.0.0.1:1"}, directory=folder)
    reused = {**entry, "id": "reused", "pid_started": entry["pid_started"] - 3600,  # this PID, another process
              "pid_ticks": None if entry["pid_ticks"] is None else "another-boot/1"}
    old_reader = {**entry, "id": "older", "pid_ticks": None}  # written by a labcluster before ticks: still read
    Path(folder, "reused.json").write_text(json.dumps(reused))
    Path(folder, "older.json").write_text(json.dumps(old_reader))
    Path(folder, "junk.json").write_text("{not json")
    Path(folder, "other.json").write_text(json.dumps({**entry, "id": "mismatch"}))  # its name is not its id
    Path(folder, "old.json").write_text(json.dumps({**entry, "id": "old", "version": 0}))
    Path(folder, "huge.json").write_text(" " * (registry.MAX_BYTES + 1))
    assert sorted(e["id"] for e in registry.entries(folder)) == sorted([entry["id"], "older"])


def test_another_hosts_entry_is_neither_judged_nor_removed(folder: str) -> None:
    os.makedirs(folder, mode=0o700)
    entry = registry.publish({"address": "tcp://10.0.0.9:8786"}, directory=folder)
    path = Path(folder, f"{entry['id']}.json")
    path.write_text(json.dumps({**entry, "host": "another-node", "pid": 1, "pid_started": 0.0}))
    assert registry.entries(folder) == []  # its PID means nothing here
    assert path.exists()  # and it is not ours to remove (a home directory shared between nodes)


def test_a_bad_id_is_refused(folder: str) -> None:
    os.makedirs(folder, mode=0o700)
    with pytest.raises(ValueError, match="letters and digits"):
        registry.publish({"id": "../escape"}, directory=folder)


@pytest.fixture
def started() -> Iterator[lc.Session]:
    lc.shutdown()
    session = lc.init(num_cpus=1, processes=False, include_dashboard=False)
    yield session
    lc.shutdown()


def _ours(session: lc.Session) -> list[dict[str, object]]:
    return [e for e in registry.entries() if e["address"] == session.address]


def test_a_cluster_lc_init_starts_is_listed_until_it_shuts_down(started: lc.Session) -> None:
    (entry,) = _ours(started)
    assert entry["owner"] == {"kind": "process", "notebook": None, "pid": os.getpid()}
    assert entry["name"] is None and entry["processes"] is False and entry["labcluster"] == lc.__version__
    started.name = "teaching"  # what %cluster start --name does
    assert [e["name"] for e in _ours(started)] == ["teaching"]
    lc.shutdown()
    assert _ours(started) == []


def test_a_connected_session_writes_no_entry(started: lc.Session) -> None:
    address = started.address
    count = len(registry.entries())
    from distributed import Client

    client = Client(address, timeout=10)
    try:
        assert len(registry.entries()) == count
    finally:
        client.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process starts in clock ticks: Linux's /proc")
def test_a_step_of_the_wall_clock_leaves_live_entries_alone(folder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    os.makedirs(folder, mode=0o700)
    entry = registry.publish({"address": "tcp://127.0.0.1:1"}, directory=folder)
    real = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 3600)  # the clock stepped 1 h
    assert [e["id"] for e in registry.entries(folder)] == [entry["id"]]


def test_a_registry_directory_others_may_write_is_refused_naming_the_fix(tmp_path: Path) -> None:
    import dask.config

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with dask.config.set({"labcluster.registry.directory": str(shared)}):
        with pytest.raises(registry.RegistryError, match=f"writable by others.*chmod 700 {shared}"):
            registry.registry_directory()
        shared.chmod(0o700)
        assert registry.registry_directory() == str(shared)
