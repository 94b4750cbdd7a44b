"""The resources page's GPU part: utilisation and memory per real GPU device, and what is known where there is none.

:class:`GPUDevices` (distributed's dashboard contract: ``source``, ``root``, ``update()``) draws one row per real GPU,
counted once by UUID however many workers name it (two workers pinned to one device show as one row that names
both). The readings are the ones each worker measures with pynvml and sends with its heartbeat (distributed's
``gpu`` worker metric: utilisation %, memory used; device name and total at start-up); the device's UUID comes from
the description a labcluster worker sends (``metrics["labcluster"]["gpu_uuids"]``), so a worker on another machine
counts its own device. A text line says what else there is to know:

- simulated-GPU workers, by name: they have a GPU *slot* and no device to measure;
- a worker with a real GPU that sends no readings (distributed's NVML monitoring is off there);
- with no real GPU on any worker, NVML's explicit state on the scheduler's machine
  (``labcluster.diagnostics.nvml.probe``: "pynvml is not installed", "no GPU", ...).

>>> print(status_text([], [], ["gpu-0"], "pynvml is not installed"))  # doctest: +NORMALIZE_WHITESPACE
No worker has a real GPU. Simulated GPUs (a GPU slot each, no device to measure): gpu-0. NVML on the scheduler's
machine: pynvml is not installed.
"""

from __future__ import annotations

import html
from typing import Any

from .state import GIB, Device, devices, replace_data, workers

_NO_DEVICE = "(no real GPU)"


def device_rows(found: list[Device]) -> dict[str, list[Any]]:
    """The columns of :class:`GPUDevices`'s source: one row per device."""
    data: dict[str, list[Any]] = {k: [] for k in ("device", "uuid", "utilization", "util_text", "memory", "total",
                                                 "memory_text")}
    for d in found:
        used = (d.memory_used or 0) / GIB
        total = (d.memory_total or 0) / GIB
        data["device"].append(d.label)
        data["uuid"].append(d.uuid)
        data["utilization"].append(d.utilization or 0.0)
        data["util_text"].append(f"{d.utilization:.0f}%" if d.utilization is not None else "no reading")
        data["memory"].append(used)
        data["total"].append(total)
        data["memory_text"].append(f"{used:.1f} / {total:.0f} GiB" if d.memory_used is not None else "no reading")
    return data


def status_text(found: list[Device], silent: list[str], simulated: list[str], nvml_state: str) -> str:
    """The line under the GPU charts (see the module docstring)."""
    parts: list[str] = []
    if found:
        parts.append(f"{len(found)} real GPU{'s' if len(found) != 1 else ''}, each counted once by UUID.")
    else:
        parts.append("No worker has a real GPU.")
    if simulated:
        parts.append(f"Simulated GPUs (a GPU slot each, no device to measure): {', '.join(simulated)}.")
    parts.extend(f"{line}." for line in silent)
    if not found:
        parts.append(f"NVML on the scheduler's machine: {nvml_state}.")
    return " ".join(parts)


def scheduler_nvml_state() -> str:
    """NVML's state on this (the scheduler's) machine, in words."""
    from ..diagnostics import nvml

    probe = nvml.probe()
    if probe.state is nvml.NVMLState.ENABLED:
        return f"{probe.count} GPU{'s' if probe.count != 1 else ''} here, none given to a worker"
    return str(probe.state.value) + (f" ({probe.detail})" if probe.detail else "")


class GPUDevices:
    """Per real GPU: utilisation and memory; else the explicit NVML state (see the module docstring)."""

    def __init__(self, scheduler: Any, **kwargs: Any) -> None:
        from bokeh.layouts import column, row
        from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
        from bokeh.models.annotations import LabelSet
        from bokeh.models.widgets import Div
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self._nvml_state: str | None = None  # probed once, when first needed
        self.source = ColumnDataSource(device_rows([]))
        height = int(kwargs.pop("height", 200))
        tooltips = [("device", "@device"), ("UUID", "@uuid"), ("utilisation", "@util_text"),
                    ("memory", "@memory_text")]
        self.devices = FactorRange(factors=[_NO_DEVICE])
        self.gib = Range1d(start=0, end=1)
        self.utilization = figure(title="GPU utilisation per device (%)", y_range=self.devices,
                                  x_range=Range1d(start=0, end=115), height=height, width=420, tools="",
                                  toolbar_location=None, x_axis_label="% of the last sample period busy", **kwargs)
        self.utilization.hbar(y="device", right="utilization", height=0.7, color="#2ca02c", source=self.source)
        self.utilization.add_layout(LabelSet(x="utilization", y="device", text="util_text", x_offset=4, y_offset=-6,
                                             text_font_size="10px", source=self.source))
        self.memory = figure(title="GPU memory per device", y_range=self.devices, x_range=self.gib,
                             height=height, width=420, tools="", toolbar_location=None, x_axis_label="GiB",
                             **kwargs)
        self.memory.hbar(y="device", right="total", height=0.7, fill_color="#eeeeee", line_color="#999999",
                         source=self.source)
        self.memory.hbar(y="device", right="memory", height=0.7, color="#2ca02c", source=self.source)
        self.memory.add_layout(LabelSet(x="memory", y="device", text="memory_text", x_offset=4, y_offset=-6,
                                        text_font_size="10px", source=self.source))
        for fig in (self.utilization, self.memory):
            fig.add_tools(HoverTool(tooltips=tooltips))
            fig.ygrid.visible = False
            fig.yaxis.major_label_text_font_size = "10px"
        self.status = Div(text="", styles={"font-size": "13px", "color": "#333"}, width=860)
        self.charts = row(self.utilization, self.memory, sizing_mode="stretch_width")
        self.root = column(self.status, self.charts, sizing_mode="stretch_width")

    def nvml_state(self) -> str:
        if self._nvml_state is None:
            self._nvml_state = scheduler_nvml_state()
        return self._nvml_state

    def update(self) -> None:
        views = workers(self.scheduler)
        found, silent = devices(views)
        simulated = [w.name for w in views if w.simulated]
        text = status_text(found, silent, simulated, self.nvml_state() if not found else "")
        markup = f"<b>GPU devices</b> &middot; {html.escape(text)}"
        if self.status.text != markup:
            self.status.text = markup
        self.charts.visible = bool(found)
        data = device_rows(found)
        labels = list(reversed(data["device"])) or [_NO_DEVICE]
        if list(self.devices.factors) != labels:
            self.devices.factors = labels
        self.gib.end = max([1.0, *data["total"]]) * 1.35
        replace_data(self.source, data)
