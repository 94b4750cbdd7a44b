"""Find the GPUs of this machine through NVML (package ``nvidia-ml-py``, module ``pynvml``).

Never raises for a missing library, driver or device: :func:`probe` returns an explicit
:class:`NVMLState` and an empty device list instead, as distributed's ``diagnostics/nvml.py`` does.
Devices are identified by UUID, so one GPU listed twice (by index and by UUID in
``CUDA_VISIBLE_DEVICES``, or by a MIG parent and child) is counted once.

>>> from labcluster.diagnostics import nvml
>>> result = nvml.probe()
>>> result.state in set(nvml.NVMLState)
True
"""

from __future__ import annotations

import contextlib
import enum
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any


class NVMLState(enum.Enum):
    """Why GPUs were (or were not) found."""

    ENABLED = "enabled"
    DISABLED_LIBRARY_NOT_FOUND = "pynvml is not installed (pip install nvidia-ml-py)"
    DISABLED_NO_DRIVER = "the NVIDIA driver library (libnvidia-ml) could not be loaded"
    DISABLED_NO_DEVICES = "the NVIDIA driver is loaded but reports no GPU"
    DISABLED_CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES hides every GPU"


@dataclass(frozen=True)
class GPUDevice:
    """One physical GPU as NVML reports it."""

    index: int
    uuid: str
    name: str
    memory_total: int

    @property
    def label(self) -> str:
        return f"GPU {self.index}: {self.name} ({self.memory_total / 2**30:.0f} GiB)"


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of :func:`probe`: a state and the visible, deduplicated devices."""

    state: NVMLState
    devices: tuple[GPUDevice, ...] = field(default_factory=tuple)
    detail: str = ""

    @property
    def count(self) -> int:
        return len(self.devices)


def _import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe(visible: str | None = None) -> ProbeResult:
    """Return this machine's GPUs, filtered by ``CUDA_VISIBLE_DEVICES`` (or ``visible``) and deduplicated.

    ``visible`` takes the same syntax as ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs, comma separated);
    ``None`` reads the environment variable.
    """
    pynvml = _import_pynvml()
    if pynvml is None:
        return ProbeResult(NVMLState.DISABLED_LIBRARY_NOT_FOUND)
    try:
        pynvml.nvmlInit()
    except Exception as e:  # pynvml raises NVMLError subclasses, or OSError when the .so is missing
        return ProbeResult(NVMLState.DISABLED_NO_DRIVER, detail=str(e))
    try:
        devices = _list_devices(pynvml)
    finally:
        # shutting down a library that failed half-way must not hide the result
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    if not devices:
        return ProbeResult(NVMLState.DISABLED_NO_DEVICES)
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = _filter_visible(devices, visible)
        if not devices:
            return ProbeResult(NVMLState.DISABLED_CUDA_VISIBLE_DEVICES, detail=f"CUDA_VISIBLE_DEVICES={visible!r}")
    return ProbeResult(NVMLState.ENABLED, tuple(devices))


def _list_devices(pynvml: ModuleType) -> list[GPUDevice]:
    seen: set[str] = set()
    devices = []
    for i in range(int(pynvml.nvmlDeviceGetCount())):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        uuid = _decode(pynvml.nvmlDeviceGetUUID(handle))
        if uuid in seen:
            continue
        seen.add(uuid)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        devices.append(GPUDevice(i, uuid, _decode(pynvml.nvmlDeviceGetName(handle)), int(memory.total)))
    return devices


def _filter_visible(devices: list[GPUDevice], visible: str) -> list[GPUDevice]:
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    chosen: list[GPUDevice] = []
    for token in wanted:
        for d in devices:
            if (token.isdigit() and int(token) == d.index) or d.uuid.startswith(token):
                if d not in chosen:
                    chosen.append(d)
                break
    return chosen
