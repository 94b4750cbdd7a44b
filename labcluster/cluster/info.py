"""Read what a cluster has from the scheduler: workers, their groups, resources and GPUs.

Works for any Dask cluster. Workers started by labcluster (locally or with ``labcluster worker``)
describe themselves (group, GPU mode, GPU ids) through a worker metric; other Dask workers show as
group ``"dask"`` with GPU mode ``"none"``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..scheduler.protocol import WORKER_INFO


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the scheduler sees it."""

    address: str
    name: str
    group: str
    nthreads: int
    resources: Mapping[str, float]
    memory_limit: int
    pid: int | None
    gpu_mode: str = "none"
    gpu_ids: tuple[int, ...] = ()
    gpu_uuids: tuple[str, ...] = ()
    host: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return self.gpu_mode == "simulated"

    @property
    def gpu_label(self) -> str:
        """``"-"``, ``"1 GPU"`` or ``"1 GPU (simulated)"``: what every listing shows."""
        n = self.resources.get("GPU", 0)
        if not n:
            return "-"
        return f"{n:g} GPU" + (" (simulated)" if self.simulated else "")


def workers_from_info(info: Mapping[str, Any]) -> list[WorkerInfo]:
    """Turn ``Client.scheduler_info()`` into :class:`WorkerInfo` records, sorted by name."""
    out = []
    for addr, w in info.get("workers", {}).items():
        desc = (w.get("metrics") or {}).get(WORKER_INFO) or {}
        out.append(
            WorkerInfo(
                address=addr,
                name=str(w.get("name", addr)),
                group=str(desc.get("group", "dask")),
                nthreads=int(w.get("nthreads", 0)),
                # placement-group bundles leave 0-valued resources behind when released: not worth showing
                resources={k: float(v) for k, v in (w.get("resources") or {}).items() if v or not k.startswith("pg_")},
                memory_limit=int(w.get("memory_limit") or 0),
                pid=desc.get("pid", w.get("pid")),
                gpu_mode=str(desc.get("gpu_mode", "none")),
                gpu_ids=tuple(desc.get("gpu_ids", ())),
                gpu_uuids=tuple(desc.get("gpu_uuids", ())),
                host=str(w.get("host", "")),
            )
        )
    return sorted(out, key=lambda w: (w.group, _natural(w.name)))


def _natural(name: str) -> tuple[Any, ...]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def sum_resources(per_worker: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Resource by resource, the sum over workers (``CPU``, ``GPU``, custom ones)."""
    total: dict[str, float] = {}
    for resources in per_worker:
        for k, v in resources.items():
            total[k] = total.get(k, 0.0) + float(v)
    return total


def total_resources(workers: Sequence[WorkerInfo]) -> dict[str, float]:
    """Sum of every worker's resources plus ``memory`` (bytes), Ray's ``cluster_resources()`` shape."""
    total = sum_resources(w.resources for w in workers)
    if workers:
        total["memory"] = float(sum(w.memory_limit for w in workers))
    return total


def shown(res: Mapping[str, float]) -> dict[str, float]:
    """Resources as listings show them: without the ``pg_*`` ones placement-group bundles add (their own view
    shows those)."""
    return {k: v for k, v in res.items() if not k.startswith("pg_")}


def _fmt_resources(res: Mapping[str, float]) -> str:
    return ", ".join(f"{k}: {v:g}" for k, v in sorted(shown(res).items()) if k not in ("CPU", "GPU")) or "-"


def cpu_slots_of(w: WorkerInfo) -> float:
    """A worker's CPU slots: its ``CPU`` resource; a plain Dask worker (no resources) runs anything on its threads;
    a GPU worker has none (``groups.py``)."""
    return float(w.resources.get("CPU", 0.0 if "GPU" in w.resources else float(w.nthreads)))


def _cpu_slots(w: WorkerInfo) -> str:
    """The CPU column."""
    slots = cpu_slots_of(w)
    return f"{slots:g}" if slots else "-"


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "no limit"


def workers_table(workers: Sequence[WorkerInfo]) -> str:
    """A fixed-width text table of workers (used by reprs and ``labcluster status``).

    >>> print(workers_table([WorkerInfo("tcp://h:1", "cpu-0", "cpu", 2, {"CPU": 2}, 2**31, 11),
    ...                      WorkerInfo("tcp://h:2", "gpu-0", "gpu", 1, {"GPU": 1}, 2**30, 12, "simulated")]))
    worker  group  CPU  GPU                other resources  memory   pid  address
    cpu-0   cpu    2    -                  -                2.0 GiB  11   tcp://h:1
    gpu-0   gpu    -    1 GPU (simulated)  -                1.0 GiB  12   tcp://h:2
    """
    rows = [("worker", "group", "CPU", "GPU", "other resources", "memory", "pid", "address")]
    for w in workers:
        rows.append((w.name, w.group, _cpu_slots(w), w.gpu_label,
                     _fmt_resources(w.resources), _fmt_bytes(w.memory_limit), str(w.pid or "?"), w.address))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def workers_html(workers: Sequence[WorkerInfo]) -> str:
    """The same table as HTML; simulated GPUs are labelled and tinted."""
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                   ("worker", "group", "CPU", "GPU", "other resources", "memory", "pid", "address"))
    body = []
    for w in workers:
        gpu = html.escape(w.gpu_label)
        if w.simulated:
            gpu = f"<span style='color:#b35900' title='simulated GPU: a GPU slot with no device'>{gpu}</span>"
        cells = [html.escape(w.name), html.escape(w.group), _cpu_slots(w), gpu,
                 html.escape(_fmt_resources(w.resources)), _fmt_bytes(w.memory_limit), str(w.pid or "?"),
                 f"<code>{html.escape(w.address)}</code>"]
        body.append("<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


LIVE_STYLE = ("<style>.lc-w table{border-collapse:collapse;font-size:12px}.lc-w td,.lc-w th{padding:2px 8px;"
          "text-align:left;border-bottom:1px solid #ddd}.lc-w .sim{color:#b35900}.lc-w .bar{display:inline-block;"
          "height:8px;background:#4a90d9;vertical-align:middle}</style>")


def _bar(fraction: float, width: int = 60) -> str:
    f = max(0.0, min(1.0, fraction))
    return (f"<span class='bar' style='width:{int(f * width)}px'></span>"
            f"<span class='bar' style='width:{width - int(f * width)}px;background:#e6e6e6'></span>")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def live_html(session: Any) -> str:
    """A session's workers now, one row each: group, CPU slots, GPU (simulated ones marked), CPU and memory use as
    bars (the cluster widget's body, and ``lc.dashboard("resources")``'s snapshot). Needs ``LIVE_STYLE`` once on
    the page."""
    if session.closed:
        return "<div class='lc-w'><em>stopped</em> (the session was shut down)</div>"
    try:
        info = session.client.scheduler_info(n_workers=-1)
        workers = session.workers()
    except Exception as e:
        return f"<div class='lc-w'><em>unreachable</em>: {html.escape(str(e))}</div>"
    metrics = {str(v.get("name")): v.get("metrics", {}) for v in info.get("workers", {}).values()}
    rows = []
    for wk in workers:
        m = metrics.get(wk.name, {})
        cpu = float(m.get("cpu", 0.0)) / 100.0
        mem = float(m.get("memory", 0))
        limit = float(wk.memory_limit or 0)
        gpu = html.escape(wk.gpu_label)
        if wk.simulated:
            gpu = f"<span class='sim' title='a GPU slot without a device: scheduling only'>{gpu}</span>"
        cpus = wk.resources.get("CPU", 0)
        rows.append(f"<tr><td>{html.escape(wk.group)}</td><td>{html.escape(wk.name)}</td><td>{cpus:g}</td>"
                    f"<td>{gpu}</td><td>{_bar(cpu)} {cpu:.0%}</td>"
                    f"<td>{_bar(mem / limit if limit else 0)} {_gib(mem)}"
                    f"{' / ' + _gib(limit) if limit else ''}</td></tr>")
    total = shown(total_resources(workers))
    res = ", ".join(f"{k} {v:g}" for k, v in sorted(total.items()) if k != "memory")
    sim = sum(1 for wk in workers if wk.simulated)
    note = f" &middot; <span class='sim'>{sim} simulated GPU{'s' if sim != 1 else ''}</span>" if sim else ""
    return (f"<div class='lc-w'>{len(workers)} workers &middot; {html.escape(res)}{note}<table><tr><th>group</th>"
            f"<th>worker</th><th>CPU slots</th><th>GPU</th><th>CPU use</th><th>memory</th></tr>{''.join(rows)}"
            f"</table></div>")
