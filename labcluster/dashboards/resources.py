"""The resources page's worker charts: CPU and memory per worker, and resource slots in use against each total.

Two components, each with distributed's dashboard contract (``source``, ``root``, ``update()``):

- :class:`WorkerLoad`: per worker, the CPU % and the memory (RSS) its heartbeat reports, against its memory limit.
- :class:`ResourceSlots`: per worker and resource (CPU, GPU, custom), the slots taken now against the worker's
  total. Taken counts Dask's running tasks and labcluster's holders (actors and placement-group bundles keep their
  resources for as long as they live; Dask stops counting them once they secede). A simulated-GPU worker's GPU row
  reads "GPU (simulated)". Placement-group bundle resources (``pg_*``) are the placement-group table's business.

>>> rows = slot_rows([WorkerView("tcp://a:1", "gpu-0", "simulated", (), {"GPU": 1.0}, {"GPU": 1.0}, 3.0, 0, 0)])
>>> rows["label"], rows["text"]
(['gpu-0 · GPU (simulated)'], ['1 / 1'])
"""

from __future__ import annotations

from typing import Any

from .state import GIB, WorkerView, replace_data, slot_label, workers

#: colours per resource kind; custom resources take the next ones in turn
_KIND_COLORS = {"CPU": "#1f77b4", "GPU": "#2ca02c"}
_CUSTOM_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_SIMULATED_COLOR = "#98df8a"


def _amount(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def load_rows(views: list[WorkerView]) -> dict[str, list[Any]]:
    """The columns of :class:`WorkerLoad`'s source: one row per worker."""
    data: dict[str, list[Any]] = {k: [] for k in ("worker", "cpu", "cpu_text", "memory", "limit", "memory_text",
                                                 "memory_color")}
    for w in views:
        used, limit = w.memory / GIB, w.memory_limit / GIB
        data["worker"].append(w.name)
        data["cpu"].append(w.cpu_percent)
        data["cpu_text"].append(f"{w.cpu_percent:.0f}%")
        data["memory"].append(used)
        data["limit"].append(limit)
        data["memory_text"].append(f"{used:.2f} / {limit:.1f} GiB" if limit else f"{used:.2f} GiB (no limit)")
        share = used / limit if limit else 0.0
        data["memory_color"].append("#d62728" if share > 0.8 else "#ff7f0e" if share > 0.6 else "#1f77b4")
    return data


def slot_rows(views: list[WorkerView]) -> dict[str, list[Any]]:
    """The columns of :class:`ResourceSlots`'s source: one row per worker and resource it has."""
    data: dict[str, list[Any]] = {k: [] for k in ("label", "worker", "resource", "used", "total", "text", "color")}
    custom: dict[str, str] = {}
    for w in views:
        for resource in sorted(w.resources, key=lambda r: (r not in _KIND_COLORS, r)):
            total = w.resources[resource]
            used = min(w.used.get(resource, 0.0), total) if total else w.used.get(resource, 0.0)
            if resource in _KIND_COLORS:
                color = _SIMULATED_COLOR if w.simulated and resource == "GPU" else _KIND_COLORS[resource]
            else:
                color = custom.setdefault(resource, _CUSTOM_COLORS[len(custom) % len(_CUSTOM_COLORS)])
            data["label"].append(slot_label(w.name, resource, w.simulated))
            data["worker"].append(w.name)
            data["resource"].append(resource)
            data["used"].append(used)
            data["total"].append(total)
            data["text"].append(f"{_amount(used)} / {_amount(total)}")
            data["color"].append(color)
    return data


def _factors(labels: list[str], empty: str) -> list[str]:
    return list(reversed(labels)) or [empty]  # bokeh draws the first factor at the bottom


class WorkerLoad:
    """CPU % and memory per worker (see the module docstring)."""

    def __init__(self, scheduler: Any, **kwargs: Any) -> None:
        from bokeh.layouts import row
        from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
        from bokeh.models.annotations import LabelSet
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self.source = ColumnDataSource(load_rows([]))
        height = int(kwargs.pop("height", 260))
        self.workers = FactorRange(factors=["(no workers)"])
        self.cpu_range, self.memory_range = Range1d(start=0, end=100), Range1d(start=0, end=1)
        self.cpu = figure(title="CPU per worker (%)", y_range=self.workers, x_range=self.cpu_range, height=height,
                          width=420, tools="", toolbar_location=None,
                          x_axis_label="CPU % (100 = one core busy)", **kwargs)
        self.cpu.hbar(y="worker", right="cpu", height=0.7, color="#1f77b4", source=self.source)
        self.cpu.add_layout(LabelSet(x="cpu", y="worker", text="cpu_text", x_offset=4, y_offset=-6,
                                     text_font_size="10px", source=self.source))
        self.cpu.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("CPU", "@cpu_text")]))
        self.memory = figure(title="memory per worker (RSS against its limit)",
                             y_range=self.workers, x_range=self.memory_range, height=height, width=420, tools="",
                             toolbar_location=None, x_axis_label="GiB", **kwargs)
        self.memory.hbar(y="worker", right="limit", height=0.7, fill_color="#eeeeee", line_color="#999999",
                         source=self.source)
        self.memory.hbar(y="worker", right="memory", height=0.7, color="memory_color", source=self.source)
        self.memory.add_layout(LabelSet(x="memory", y="worker", text="memory_text", x_offset=4, y_offset=-6,
                                        text_font_size="10px", source=self.source))
        self.memory.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("memory", "@memory_text")]))
        for fig in (self.cpu, self.memory):
            fig.ygrid.visible = False
        self.root = row(self.cpu, self.memory, sizing_mode="stretch_width")

    def update(self) -> None:
        data = load_rows(workers(self.scheduler))
        names = _factors(data["worker"], "(no workers)")
        if list(self.workers.factors) != names:
            self.workers.factors = names
        self.cpu_range.end = max([100.0, *[c * 1.15 for c in data["cpu"]]])
        self.memory_range.end = max([1.0, *[m * 1.3 for m in data["limit"]], *[m * 1.3 for m in data["memory"]]])
        replace_data(self.source, data)


class ResourceSlots:
    """Resource slots taken against each worker's total (see the module docstring)."""

    def __init__(self, scheduler: Any, **kwargs: Any) -> None:
        from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
        from bokeh.models.annotations import LabelSet
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self.source = ColumnDataSource(slot_rows([]))
        self.labels = FactorRange(factors=["(no workers)"])
        self.slots = Range1d(start=0, end=1)
        self.figure = figure(title="resource slots in use (running tasks, actors and placement-group bundles)",
                             y_range=self.labels, x_range=self.slots, width=860,
                             height=int(kwargs.pop("height", 260)), tools="", toolbar_location=None,
                             x_axis_label="slots (in use / total)", **kwargs)
        self.figure.hbar(y="label", right="total", height=0.7, fill_color="#f2f2f2", line_color="#999999",
                         source=self.source)
        self.figure.hbar(y="label", right="used", height=0.7, color="color", source=self.source)
        self.figure.add_layout(LabelSet(x="total", y="label", text="text", x_offset=6, y_offset=-6,
                                        text_font_size="11px", source=self.source))
        self.figure.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("resource", "@resource"),
                                                  ("in use / total", "@text")]))
        self.figure.ygrid.visible = False
        self.root = self.figure

    def update(self) -> None:
        data = slot_rows(workers(self.scheduler))
        labels = _factors(data["label"], "(no workers)")
        if list(self.labels.factors) != labels:
            self.labels.factors = labels
            self.figure.height = max(180, 34 * len(labels) + 90)
        self.slots.end = max([1.0, *data["total"]]) * 1.25  # room for the "1 / 2" labels
        replace_data(self.source, data)
