"""The resources page's GPU part on "real" GPUs, with NVML faked at the hardware boundary only.

No GPU here, so a stand-in ``pynvml`` module (written to a tmp dir, first on ``PYTHONPATH``) answers what the NVIDIA
driver would: one device, its UUID, name, memory and utilisation, read from a JSON file the test rewrites. Everything
above it is real: labcluster's probe pins the device by UUID, the cluster runs in its head process with process
workers, a second node (``labcluster worker --gpus 1 --name twin``) pins the same device to its own GPU worker, and
distributed's NVML diagnostics measure it in each worker process and send the readings with the heartbeats.

The page's components (:class:`~labcluster.dashboards.gpus.GPUDevices`, :class:`~labcluster.dashboards.resources.
ResourceSlots`) are built against the scheduler object in the scheduler's process and updated once; their
``.source.data`` is what the page draws. One device named by two workers is one row, labelled by device, not
simulated. Chromium opens the page once; the screenshot lands under a pytest tmp path (``pytest -s`` prints it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIProcess, wait_until

import labcluster as lc
from labcluster.diagnostics import nvml

GIB = 2**30
UUID = "GPU-6f1c2a4e-8b3d-4c5e-9a7f-0123456789ab"
NAME = "Fake H200"
TOTAL = 80 * GIB
STATE_ENV = "LABCLUSTER_TEST_FAKE_NVML"

#: the stand-in for nvidia-ml-py's ``pynvml``: the calls labcluster's probe and distributed's diagnostics make,
#: answered from the JSON file named by $LABCLUSTER_TEST_FAKE_NVML (re-read at every call, so readings move)
FAKE_PYNVML = '''"""A fake pynvml for tests: devices and readings from the JSON file $LABCLUSTER_TEST_FAKE_NVML names."""
import json
import os


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_Unknown(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NotFound(NVMLError):
    pass


NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1


class _Struct:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def _devices():
    with open(os.environ["LABCLUSTER_TEST_FAKE_NVML"]) as f:
        return json.load(f)["devices"]


def nvmlInit():
    _devices()


def nvmlShutdown():
    pass


def nvmlSystemGetDriverVersion():
    return "560.35.03"


def nvmlDeviceGetCount():
    return len(_devices())


def nvmlDeviceGetHandleByIndex(index):
    if not 0 <= index < len(_devices()):
        raise NVMLError_NotFound(index)
    return index


def nvmlDeviceGetHandleByUUID(uuid):
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    for index, device in enumerate(_devices()):
        if device["uuid"] == uuid:
            return index
    raise NVMLError_NotFound(uuid)


def nvmlDeviceGetIndex(handle):
    return handle


def nvmlDeviceGetUUID(handle):
    return _devices()[handle]["uuid"]


def nvmlDeviceGetName(handle):
    return _devices()[handle]["name"]


def nvmlDeviceGetMemoryInfo(handle):
    d = _devices()[handle]
    return _Struct(total=d["total"], used=d["used"], free=d["total"] - d["used"])


def nvmlDeviceGetUtilizationRates(handle):
    return _Struct(gpu=_devices()[handle]["utilization"], memory=0)


def nvmlDeviceGetMigMode(handle):
    raise NVMLError_NotSupported()


def nvmlDeviceGetComputeRunningProcesses(handle):
    return []
'''


@dataclass(frozen=True)
class FakeNVML:
    """Where the fake lives and what it reports; :meth:`set` changes the readings every process sees next."""

    directory: Path
    state: Path

    def set(self, utilization: int, used: int) -> None:
        device = {"uuid": UUID, "name": NAME, "total": TOTAL, "used": used, "utilization": utilization}
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"devices": [device]}))
        os.replace(tmp, self.state)  # atomic: a worker never reads half a file


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeNVML]:
    """The fake ``pynvml`` in this process (``sys.modules``: distributed imported the real one already) and, first on
    the import path, in every process the cluster starts (head, scheduler, nannies, workers, the second node): the
    hardware boundary and nothing above it."""
    directory = tmp_path_factory.mktemp("fake-nvml")
    (directory / "pynvml.py").write_text(FAKE_PYNVML)
    fake = FakeNVML(directory, directory / "state.json")
    fake.set(utilization=37, used=20 * GIB)
    spec = importlib.util.spec_from_file_location("pynvml", directory / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_ENV, str(fake.state))
        # the `labcluster worker` node imports from $PYTHONPATH; lc.init's head process from this process's sys.path
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p))
        patch.syspath_prepend(str(directory))
        spec.loader.exec_module(module)
        patch.setitem(sys.modules, "pynvml", module)
        probe = nvml.probe()
        assert probe.state is nvml.NVMLState.ENABLED and [d.uuid for d in probe.devices] == [UUID], probe
        yield fake


@pytest.fixture(scope="module")
def cluster(fake_nvml: FakeNVML) -> Iterator[lc.Session]:
    """The head's cluster (a CPU worker, a GPU worker pinned to the device) plus a second node on this machine
    whose GPU worker is pinned to the same device: two workers, one GPU."""
    lc.shutdown()
    session = lc.init(num_cpus=1, num_gpus=1, dashboard_address="127.0.0.1:0")
    twin: CLIProcess | None = None
    try:
        twin = CLIProcess("worker", session.address, "--nthreads", "1", "--gpus", "1", "--name", "twin")
        twin.wait_for_line("labcluster worker twin-gpu-0 at", timeout=90)
        session.client.wait_for_workers(4, timeout=60)
        yield session
    finally:
        lc.shutdown()  # first: the twin's workers then leave a closed cluster, not announced as deaths in the driver
        if twin is not None:
            twin.stop()


def gpu_page(dask_scheduler: Any) -> dict[str, Any]:
    """In the scheduler's process: the resources page's GPU and slot components, built and updated once, and what
    distributed measured (each worker's latest ``gpu_utilization``, from its SystemMonitor)."""
    from labcluster.dashboards.gpus import GPUDevices
    from labcluster.dashboards.resources import ResourceSlots

    gpus = GPUDevices(dask_scheduler)
    gpus.update()
    slots = ResourceSlots(dask_scheduler)
    slots.update()
    return {"devices": dict(gpus.source.data), "status": str(gpus.status.text), "charts": bool(gpus.charts.visible),
            "factors": list(gpus.devices.factors), "slots": dict(slots.source.data),
            "measured": {str(ws.name): (ws.metrics or {}).get("gpu_utilization")
                         for ws in dask_scheduler.workers.values()}}


def page_when(session: lc.Session, ready: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    """The components' data once ``ready(data)`` holds (heartbeats carry the readings); fail after ``timeout``."""
    seen: list[dict[str, Any]] = []

    def check() -> bool:
        seen[:] = [session.client.run_on_scheduler(gpu_page)]
        return bool(ready(seen[0]))

    assert wait_until(check, timeout=timeout, interval=0.5), f"{what}: not seen within {timeout:g} s: {seen}"
    return seen[0]


def test_one_device_named_by_two_workers_is_one_row(cluster: lc.Session) -> None:
    data = page_when(cluster, lambda d: d["devices"]["uuid"] and "twin-gpu-0" in d["devices"]["device"][0],
                     "both GPU workers naming the device")
    devices = data["devices"]
    assert devices["uuid"] == [UUID]  # one device, however many workers name it
    label = devices["device"][0]
    assert label.startswith("gpu-0, twin-gpu-0: ") and UUID[:12] in label, label
    assert "simulated" not in label.lower()
    assert data["factors"] == [label] and data["charts"]  # the charts' one row, and they are shown
    assert "1 real GPU, each counted once by UUID." in data["status"]
    assert "Simulated" not in data["status"] and "No worker has a real GPU" not in data["status"]
    gpu_slots = [lab for lab in data["slots"]["label"] if "GPU" in lab]
    assert sorted(gpu_slots) == ["gpu-0 · GPU", "twin-gpu-0 · GPU"]  # two GPU slots, neither simulated
    assert lc.cluster_resources()["GPU"] == 2.0


@pytest.mark.parametrize(("utilization", "used"), [
    pytest.param(37, 20 * GIB, id="busy"),
    pytest.param(81, 64 * GIB, id="busier"),
])
def test_each_device_shows_its_nvml_readings(cluster: lc.Session, fake_nvml: FakeNVML, utilization: int,
                                             used: int) -> None:
    """Utilisation and memory per device, as NVML reports them on the worker that owns it, with its name."""
    fake_nvml.set(utilization=utilization, used=used)
    # distributed measured it (every worker's SystemMonitor reads NVML at each tick): the readings reached the
    # scheduler with the heartbeats, so the page can show them
    data = page_when(cluster, lambda d: d["measured"].get("gpu-0") == utilization
                     and d["measured"].get("twin-gpu-0") == utilization, f"{utilization}% measured")
    devices = data["devices"]
    assert devices["uuid"] == [UUID]
    assert devices["utilization"] == [float(utilization)] and devices["util_text"] == [f"{utilization}%"]
    assert devices["memory"] == [used / GIB] and devices["total"] == [TOTAL / GIB]
    assert devices["memory_text"] == [f"{used / GIB:.1f} / {TOTAL / GIB:.0f} GiB"]
    assert f": {NAME} (" in devices["device"][0]  # labelled by the device's name and UUID
    assert "sends no NVML readings" not in data["status"]


# -- real Chromium, once ---------------------------------------------------------------------------------------------

#: the first ColumnDataSource on the page with a ``util_text`` column (the GPU devices'), as plain arrays
READ_DEVICES = """() => {
  if (window.Bokeh === undefined || Bokeh.documents.length === 0) return null;
  const columns = m => m.data instanceof Map ? m.data : new Map(Object.entries(m.data));
  const source = [...Bokeh.documents[0].all_models].find(m => m.type === "ColumnDataSource"
                                                              && columns(m).has("util_text"));
  if (source === undefined) return null;
  const out = {};
  for (const [k, v] of columns(source)) out[k] = Array.from(v);
  return out;
}"""


def test_resources_page_shows_the_device(cluster: lc.Session, browser: Any,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    link = cluster.dashboard_link
    assert link is not None
    url = link.rsplit("/", 1)[0] + "/individual-labcluster-resources"
    shots = tmp_path_factory.mktemp("dashboard-nvml-screenshots")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url, timeout=60_000)
        deadline = time.monotonic() + 60
        devices = page.evaluate(READ_DEVICES)
        while not (devices and devices["uuid"] == [UUID] and "twin-gpu-0" in devices["device"][0]):
            assert time.monotonic() < deadline, f"the device row: not seen within 60 s on {url}: {devices}"
            page.wait_for_timeout(250)
            devices = page.evaluate(READ_DEVICES)
        assert "simulated" not in devices["device"][0].lower()
        status = page.get_by_text("1 real GPU, each counted once by UUID").first
        status.wait_for(timeout=30_000)  # the status line, rendered (bokeh's shadow DOM is pierced)
        page.wait_for_timeout(1000)  # one more refresh drawn
        path = shots / "resources-nvml.png"
        page.screenshot(path=str(path), timeout=90_000)
        assert path.stat().st_size > 10_000
        print(f"screenshot of the resources page with a (fake-NVML) GPU named by two workers: {path}; "
              f"its row reads {devices['util_text']} busy, {devices['memory_text']}")
    finally:
        page.close()
