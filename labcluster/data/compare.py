"""``lc.compare(ds)``: run one Dataset bulk (Spark-style) and pipelined (Ray-style) and put the runs side by side.

For each mode: wall time, time to the first block, peak bytes of blocks held (the executor's count and the
workers', as the scheduler measured it), the busy fraction of each resource kind (CPU slots, GPU slots) from the
task records, and the ideal lower bound with its derivation: each stage's measured work over the slots it can
use; pipelined, the busiest resource kind bounds the run; bulk, the stages add up (a barrier after each). Plus
both timelines, one above the other on one time axis and coloured by operator, and the utilisation of each
resource kind over time.

>>> report = lc.compare(ds)                      # doctest: +SKIP
>>> report.to_html("comparison.html")            # doctest: +SKIP
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import labcluster as lc

from ..api.boundary import entry
from ..api.calls import call
from ..api.history import next_index
from ..api.start import current_session
from ..text import html_table
from .context import check_mode
from .dataset import Dataset
from .plan import Stage
from .progress import size_label, watching
from .stats import DatasetStats


@dataclass
class Run:
    """One execution of the dataset in one mode."""

    mode: str
    wall: float
    first_output: float | None
    peak_bytes: int
    peak_worker_bytes: int
    #: resource kind -> fraction of its slots busy over the run's wall time
    busy: dict[str, float]
    stats: DatasetStats
    rows: list[dict[str, Any]] = field(repr=False, default_factory=list)


@dataclass
class Bound:
    """The ideal lower bound of a mode, from the stages' measured work."""

    seconds: float
    derivation: list[str]


#: the stages whose tasks do the dataset's work (a limit only cuts)
_MEASURED = ("map", "all_to_all")


def _kind(stage: Stage) -> str:
    r = stage.resources
    if r.num_gpus:
        return "GPU"
    if r.num_cpus:
        return "CPU"
    return r.resources[0][0] if r.resources else "CPU"


def _slots(stage: Stage, capacity: dict[str, float]) -> float:
    """How many of the stage's blocks can run at once: its resource kind's capacity over what one asks, capped
    by its concurrency (an actor pool's size)."""
    if stage.kind == "all_to_all":  # one task does it all
        return 1.0
    r = stage.resources
    ask = {"GPU": r.num_gpus, "CPU": r.num_cpus, **dict(r.resources)}.get(_kind(stage)) or 1.0
    slots = capacity.get(_kind(stage), 1.0) / ask
    if stage.concurrency:
        c = stage.concurrency
        slots = min(slots, float(c[1] if isinstance(c, tuple) else c))
    elif stage.actors:
        slots = min(slots, float(stage.pool_size()[1]))
    return max(slots, 1.0)


def bounds(stages: Sequence[Stage], work: dict[str, float], capacity: dict[str, float],
           label: Callable[[str], str] = str) -> dict[str, Bound]:
    """Pipelined: the busiest resource kind's work over its slots. Bulk: each stage's work over its slots, added.
    ``label``: how a resource kind is named in the derivation (a simulated GPU says so)."""
    per_kind: dict[str, float] = {}
    bulk_lines, bulk = [], 0.0
    for st in stages:
        if st.kind not in _MEASURED:
            continue
        seconds, slots = work.get(st.name, 0.0), _slots(st, capacity)
        per_kind[_kind(st)] = per_kind.get(_kind(st), 0.0) + seconds / slots
        bulk += seconds / slots
        bulk_lines.append(f"{st.name}: {seconds:.2f} s of work / {slots:g} slot(s) = {seconds / slots:.2f} s")
    kind, seconds = max(per_kind.items(), key=lambda kv: kv[1], default=("CPU", 0.0))
    piped_lines = [f"{label(k)}: {v:.2f} s of work per slot" for k, v in per_kind.items()]
    piped_lines.append(f"the busiest kind, {label(kind)}, bounds a pipelined run: {seconds:.2f} s")
    bulk_lines.append(f"stage by stage, the sum: {bulk:.2f} s")
    return {"pipelined": Bound(seconds, piped_lines), "bulk": Bound(bulk, bulk_lines)}


def _busy(rows: list[dict[str, Any]], kinds: dict[str, str], asks: dict[str, float], capacity: dict[str, float],
          wall: float) -> dict[str, float]:
    used: dict[str, float] = {}
    for r in rows:
        kind = kinds.get(str(r.get("stage")))
        if kind is None or r.get("started") is None or r.get("finished") is None:
            continue
        used[kind] = used.get(kind, 0.0) + (r["finished"] - r["started"]) * asks.get(str(r["stage"]), 1.0)
    return {k: min(1.0, v / (capacity.get(k, 1.0) * wall)) if wall else 0.0 for k, v in used.items()}


class ComparisonReport:
    """Bulk and pipelined runs of one Dataset, side by side (see the module docstring)."""

    def __init__(self, ds: Dataset, runs: dict[str, list[Run]], capacity: dict[str, float],
                 worker_names: dict[str, str], simulated_gpus: bool = False) -> None:
        self.dataset = ds
        self.runs = runs
        self.capacity = capacity
        self._names = worker_names
        #: the cluster's GPUs are simulated: every figure of them says so
        self.simulated_gpus = simulated_gpus
        stages = ds._every_stage()
        work: dict[str, list[float]] = {}
        for run in (r for rs in runs.values() for r in rs):  # median work per stage over every run
            for s in run.stats.stages:
                work.setdefault(s.name, []).append(s.task_wall)
        self.work = {k: statistics.median(v) for k, v in work.items()}
        self.bounds = bounds(stages, self.work, capacity, self.label)

    def label(self, kind: str) -> str:
        """A resource kind as the report names it: ``GPU (simulated)`` on simulated GPUs."""
        return f"{kind} (simulated)" if kind == "GPU" and self.simulated_gpus else kind

    def median(self, mode: str) -> Run:
        runs = sorted(self.runs[mode], key=lambda r: r.wall)
        return runs[len(runs) // 2]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"capacity": self.capacity, "work": self.work, "simulated_gpus": self.simulated_gpus,
                               "modes": {}}
        for mode in self.runs:
            run = self.median(mode)
            bound = self.bounds[mode]
            out["modes"][mode] = {
                "wall": run.wall, "walls": [r.wall for r in self.runs[mode]], "first_output": run.first_output,
                "peak_bytes": run.peak_bytes, "peak_worker_bytes": run.peak_worker_bytes, "busy": run.busy,
                "bound": bound.seconds, "bound_derivation": bound.derivation,
                "ratio_to_bound": run.wall / bound.seconds if bound.seconds else None,
                "ratio_to_pipelined_bound": run.wall / self.bounds["pipelined"].seconds
                if self.bounds["pipelined"].seconds else None,
                "stats": run.stats.to_dict()}
        return out

    def table(self) -> list[list[str]]:
        modes = list(self.runs)
        kinds = sorted({k for m in modes for k in self.median(m).busy})
        d = self.to_dict()["modes"]
        rows = [["", *modes],
                ["wall time", *(f"{d[m]['wall']:.2f} s" for m in modes)],
                ["first block", *(f"{d[m]['first_output']:.2f} s" if d[m]["first_output"] is not None else "-"
                                  for m in modes)],
                ["peak blocks held", *(size_label(d[m]["peak_bytes"]) for m in modes)],
                ["peak held by workers", *(size_label(d[m]["peak_worker_bytes"]) for m in modes)],
                *[[f"{self.label(k)} busy", *(f"{d[m]['busy'].get(k, 0.0):.0%}" for m in modes)] for k in kinds],
                ["ideal time for this mode", *(f"{d[m]['bound']:.2f} s" for m in modes)],
                ["wall / ideal for this mode", *(f"{d[m]['ratio_to_bound']:.2f}x" if d[m]["ratio_to_bound"] else "-"
                                                 for m in modes)],
                ["wall / ideal pipelined", *(f"{d[m]['ratio_to_pipelined_bound']:.2f}x"
                                             if d[m]["ratio_to_pipelined_bound"] else "-" for m in modes)]]
        return rows

    def __repr__(self) -> str:
        rows = self.table()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append("pipelined bound: " + "; ".join(self.bounds["pipelined"].derivation))
        return "ComparisonReport of " + repr(self.dataset) + "\n" + "\n".join(lines)

    # -- pictures --------------------------------------------------------------------------------------------------
    def figure(self, width: int = 1000) -> Any:
        """The timelines (one per mode, one time axis) and the utilisation of each resource kind over time."""
        from bokeh.layouts import column
        from bokeh.models import Range1d

        from ..diagnostics.timeline import timeline_figure

        # the records' span too: they are on the scheduler's clock, the wall times on this process's
        longest = max(max(r.wall, _span(r.rows)) for rs in self.runs.values() for r in rs)
        x_range = Range1d(start=0, end=longest * 1.02)
        parts = []
        for mode in self.runs:
            run, bound = self.median(mode), self.bounds[mode].seconds
            ratio = f" ({run.wall / bound:.2f}x its bound of {bound:.2f} s)" if bound > 0 else " (no measured work)"
            fig = timeline_figure(run.rows, color_by="stage", width=width, worker_names=self._names,
                                  title=f"{mode}: {run.wall:.2f} s{ratio}")
            fig.x_range = x_range
            parts.append(fig)
        parts.append(self._utilisation(width, x_range))
        return column(*parts)

    def _utilisation(self, width: int, x_range: Any) -> Any:
        from bokeh.models import Range1d
        from bokeh.palettes import Category10
        from bokeh.plotting import figure

        fig = figure(width=width, height=220, x_range=x_range, y_range=Range1d(start=0, end=1.05),
                     title="busy slots over time",
                     x_axis_label="seconds since the first task started", y_axis_label="fraction busy",
                     toolbar_location="right", tools="xpan,xwheel_zoom,reset,save")
        kinds = self._kinds()
        asks = {st.name: _ask(st) for st in self.dataset._every_stage()}
        colours = iter(Category10[10])
        for mode in self.runs:
            run = self.median(mode)
            origin = min((r["started"] for r in run.rows if r.get("started") is not None), default=0.0)
            for kind in sorted({kinds[s] for s in kinds}):
                xs, ys = _curve([r for r in run.rows if kinds.get(str(r.get("stage"))) == kind], asks,
                                self.capacity.get(kind, 1.0), origin)
                if xs:
                    fig.step(xs, ys, mode="after", line_width=2, color=next(colours),
                             legend_label=f"{mode}: {self.label(kind)}",
                             line_dash="solid" if mode == "pipelined" else "dashed")
        if fig.legend:  # no curve: no legend
            fig.legend.location = "top_right"
            fig.add_layout(fig.legend[0], "right")
        return fig

    def _kinds(self) -> dict[str, str]:
        return {st.name: _kind(st) for st in self.dataset._every_stage() if st.kind in _MEASURED}

    def _repr_html_(self) -> str:
        from ..diagnostics.figures import Figure

        rows = self.table()
        derivation = "".join(
            f"<li><b>{html.escape(m)}</b>: {html.escape('; '.join(b.derivation))}</li>" for m, b in self.bounds.items())
        picture = Figure(self.figure(), "comparison")._repr_html_()
        return (f"<div><strong>ComparisonReport</strong> {html.escape(repr(self.dataset))}"
                f"{html_table(rows[0], rows[1:])}<div>ideal bounds:<ul>{derivation}</ul></div>{picture}</div>")

    def to_html(self, path: str) -> str:
        """One standalone page (bokeh's resources inline: it opens with no network); returns ``path``."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        rows = self.table()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        derivation = "".join(
            f"<li><b>{html.escape(m)}</b>: {html.escape('; '.join(b.derivation))}</li>" for m, b in self.bounds.items())
        modes = " vs ".join(self.runs)
        page = file_html(self.figure(), INLINE, title=f"labcluster: {modes}")
        summary = (f"<h2>{html.escape(modes)}: {html.escape(repr(self.dataset))}</h2><table border='1' "
                   f"cellpadding='4' style='border-collapse:collapse'><thead><tr>{head}</tr></thead><tbody>{body}"
                   f"</tbody></table><p>ideal bounds:</p><ul>{derivation}</ul>")
        before, tag, after = page.rpartition("<body>")  # the last one: bokeh's inline JS holds the string too
        page = before + tag + summary + after
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
        return path


def _span(rows: list[dict[str, Any]]) -> float:
    """From the first start to the last end of ``rows`` (seconds; 0 for none)."""
    ran = [r for r in rows if r.get("started") is not None and r.get("finished") is not None]
    return max(r["finished"] for r in ran) - min(r["started"] for r in ran) if ran else 0.0


def _ask(stage: Stage) -> float:
    r = stage.resources
    return {"GPU": r.num_gpus, "CPU": r.num_cpus}.get(_kind(stage)) or 1.0


def _curve(rows: list[dict[str, Any]], asks: dict[str, float], capacity: float, origin: float,
           bins: int = 80) -> tuple[list[float], list[float]]:
    """Busy fraction of a resource kind over time (seconds after ``origin``), averaged over ``bins`` windows."""
    ran = [r for r in rows if r.get("started") is not None and r.get("finished") is not None]
    if not ran:
        return [], []
    end = max(r["finished"] for r in ran) - origin
    width = max(end, 1e-3) / bins
    busy = [0.0] * bins
    for r in ran:
        a, b, ask = r["started"] - origin, r["finished"] - origin, asks.get(str(r["stage"]), 1.0)
        for i in range(int(a // width), min(bins, int(b // width) + 1)):
            lo, hi = i * width, (i + 1) * width
            busy[i] += max(0.0, min(b, hi) - max(a, lo)) * ask
    xs = [i * width for i in range(bins)] + [end]
    ys = [min(1.0, v / (width * capacity)) for v in busy] + [0.0]
    return xs, ys


@entry(inputs=True)
def compare(ds: Dataset, modes: Sequence[str] = ("bulk", "pipelined"), repeats: int = 1,
            warmup: bool = True) -> ComparisonReport:
    """Run ``ds`` in each mode (``repeats`` times each, alternating: A B A B) and compare the runs. ``warmup``: first
    push two blocks through every stage, unmeasured, so that what a cold cluster pays once (workers importing
    pyarrow and the stage functions) does not land on whichever mode runs first."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"lc.compare takes a Dataset (lc.data....), got {type(ds).__name__}")
    modes = tuple(modes)
    if not modes or len(set(modes)) != len(modes):
        raise ValueError(f"lc.compare: modes must name each mode to run once, e.g. ('bulk', 'pipelined'); got "
                         f"{modes!r}")
    for mode in modes:
        check_mode(mode, "lc.compare: mode")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    session = current_session()
    capacity = {k: float(v) for k, v in lc.cluster_resources().items()}
    stages = ds._every_stage()
    kinds = {st.name: _kind(st) for st in stages if st.kind in _MEASURED}
    asks = {st.name: _ask(st) for st in stages}
    runs: dict[str, list[Run]] = {m: [] for m in modes}
    if warmup:
        with watching(None):  # not a run of its own for progress bars
            ds.limit(2)._run("pipelined")
    for _ in range(repeats):
        for mode in modes:
            since = next_index()
            execution, _ = ds._run(mode)
            stats = DatasetStats(execution)
            keys = execution.keys  # its own: not a late call of the run before (a warm-up stopped at its limit)
            rows = [r for r in lc.list_tasks(since=since) if r.get("stage") in kinds and r.get("key") in keys]
            wall = stats.wall or 0.0
            runs[mode].append(Run(mode, wall, stats.first_output, stats.peak_bytes, stats.peak_worker_bytes,
                                  _busy(rows, kinds, asks, capacity, wall), stats, rows))
    names = call(session.client, "worker_names", labelled=True)
    simulated = any(node["GPUMode"] == "simulated" for node in lc.nodes())
    return ComparisonReport(ds, runs, capacity, names, simulated)
