"""Shared fixtures: real Dask clusters (in-process threads where speed matters, processes where a
test kills, isolates or pins something), and a fake NVML only where the hardware boundary is."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

# every cluster started here (and by the kernels started here, which inherit it) lists itself in a registry of
# this test run's own, never in the user's: set before labcluster reads its settings
os.environ.setdefault("DASK_LABCLUSTER__REGISTRY__DIRECTORY",
                      os.path.join(tempfile.mkdtemp(prefix="labcluster-test-"), "registry"))

import labcluster as lc


@pytest.fixture
def shutdown_after() -> Iterator[None]:
    """Make sure a test that calls lc.init leaves no session behind."""
    lc.shutdown()
    yield
    lc.shutdown()


@pytest.fixture(scope="module")
def hetero() -> Iterator[lc.Session]:
    """Process workers: a 2-slot CPU worker and one simulated-GPU worker."""
    lc.shutdown()
    session = lc.init(num_cpus=2, simulate_gpus=1, include_dashboard=False)
    yield session
    lc.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gone(pid: int) -> bool:
    """The process ``pid`` has exited (a zombie waiting for its parent counts), whoever its parent is now."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def children() -> set[int]:
    from multiprocessing import resource_tracker

    # multiprocessing's helper lives as long as this process, whichever test started it first: never a leftover
    resource_tracker.ensure_running()
    return {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE}


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class CLIProcess:
    """A `labcluster ...` subprocess stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "labcluster", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []

    def wait_for_line(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line:
                self.lines.append(line)
                if needle in line:
                    return line
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        raise AssertionError(f"{needle!r} not printed in {timeout}s; output so far:\n{''.join(self.lines)}")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def fake_pynvml(devices: list[tuple[str, str, int]]) -> SimpleNamespace:
    """A stand-in for the pynvml module: NVML is the hardware boundary we cannot have here.

    ``devices``: (uuid, name, memory bytes) per index; a repeated UUID models one GPU listed twice.
    """
    def handle(i: int) -> int:
        return i

    return SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetUUID=lambda h: devices[h][0],
        nvmlDeviceGetName=lambda h: devices[h][1].encode(),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=devices[h][2]),
    )


#: Debian's chromium, driven by Playwright through ``executable_path`` (never a downloaded browser)
CHROMIUM = shutil.which("chromium")
#: flags that keep a headless Chromium from hanging on a closed network (JUPYTER-NOTES.md)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A real headless Chromium for a module's browser tests (skipped, saying why, where there is none)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
    playwright = sync_api.sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


# pytest-jupyter (loaded with -p, for tests/test_server.py) has two autouse fixtures that make, clean up and close an
# event loop and a ServerApp around *every* test; around a Playwright test that closing fails ("Cannot close a
# running event loop"). Here they do that only for the tests that use its Jupyter server.
_JUPYTER_SERVER_FIXTURES = {"jp_fetch", "jp_serverapp", "jp_ws_fetch"}


@pytest.fixture(autouse=True)
def jp_asyncio_loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    if not _JUPYTER_SERVER_FIXTURES & set(request.fixturenames):
        yield None
        return
    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop(prefer_selector_loop=True)
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def jp_server_cleanup(request: pytest.FixtureRequest, jp_asyncio_loop: Any) -> Iterator[None]:
    yield
    if not _JUPYTER_SERVER_FIXTURES & set(request.fixturenames):
        return
    from jupyter_server.serverapp import ServerApp

    app = ServerApp.instance()
    with contextlib.suppress(RuntimeError, SystemExit):
        jp_asyncio_loop.run_until_complete(app._cleanup())
    if hasattr(app, "kernel_manager"):
        app.kernel_manager.context.destroy()
    ServerApp.clear_instance()
