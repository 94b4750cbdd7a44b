"""What ran: ``lc.list_tasks``, ``lc.summary``, ``lc.timeline``, read from the scheduler's task records.

The records live on the scheduler (``diagnostics/recorder.py``, answered by the extension's ``labcluster_records``
handler); these functions page through them with the monotonic row index, so a reader that comes back later asks
only for what is new (``since=``).

>>> lc.list_tasks(state="failed")                   # doctest: +SKIP
>>> lc.summary()                                    # doctest: +SKIP
>>> lc.timeline("trace.json")  # open in https://ui.perfetto.dev or chrome://tracing   # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..diagnostics.figures import Figure
from ..diagnostics.timeline import timeline_figure as draw
from .boundary import entry
from .calls import call
from .start import current_session
from .tables import Table

#: how the records' Dask states read to a user (Ray's words where Ray has one)
STATE_NAMES = {"waiting": "pending", "no-worker": "pending", "queued": "queued", "processing": "running",
               "memory": "finished", "erred": "failed", "released": "interrupted", "lost": "lost",
               "cancelled": "cancelled", "dropped": "released"}
_PAGE = 20_000


def fetch(since: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row from index ``since`` on, paged, with user-facing state names; and the store's counters."""
    session = current_session(auto_init=False)
    session.require_extension("task records")
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    while True:
        page = call(session.client, "records", since=since, limit=_PAGE)
        info = {k: v for k, v in page.items() if k != "rows"}
        if not info["enabled"]:
            raise RuntimeError("this scheduler keeps no task records: start it with `labcluster scheduler` or "
                               "lc.init(), and leave labcluster.records.enabled on")
        for row in page["rows"]:
            row["state"] = STATE_NAMES.get(row["state"], row["state"])
        rows.extend(page["rows"])
        if len(page["rows"]) < _PAGE:
            return rows, info
        since = page["next"]


def next_index() -> int:
    """The index the next task record gets: ``lc.list_tasks(since=next_index())`` later is what ran in between
    (one small call; no rows travel)."""
    session = current_session(auto_init=False)
    session.require_extension("task records")
    return int(call(session.client, "records", since=0, limit=0)["end"])


class TaskTable(Table):
    """Rows of task records (a list of dicts) that render as a table; ``to_pandas()`` for analysis."""

    columns = ("function", "state", "worker_name", "duration", "attempt", "nbytes", "key", "error")
    #: epoch seconds in the rows; datetimes in ``to_pandas()``
    times = ("submitted", "queued", "started", "finished")

    def summary(self) -> str:
        return f"{len(self)} rows; states {dict(Counter(r['state'] for r in self))}"

    def to_pandas(self) -> Any:
        """A DataFrame of every column: times as datetimes (UTC), ``duration`` in seconds, ``thread`` an integer."""
        import pandas as pd

        df = super().to_pandas()
        for column in self.times:
            if column in df:
                df[column] = pd.to_datetime(df[column], unit="s", utc=True)
        if "thread" in df:
            df["thread"] = df["thread"].astype("Int64")
        return df

    def cell(self, row: dict[str, Any], column: str) -> str:
        if column == "duration":
            d = duration(row)
            return "" if d is None else f"{d * 1e3:.2f} ms"
        value = row.get(column)
        if column == "key" and isinstance(value, str) and len(value) > 24:  # the function is its own column
            return value[:22] + "\u2026"
        if column == "error" and value:
            return str(value)[:120]
        if column == "worker_name":
            value = row.get("worker_name") or row.get("worker")
        return "" if value is None else str(value)


def duration(row: dict[str, Any]) -> float | None:
    """Seconds a row's attempt ran, or None when it has not run (or not finished)."""
    if row.get("started") is None or row.get("finished") is None:
        return None
    return float(row["finished"]) - float(row["started"])


@entry
def list_tasks(*, state: str | Iterable[str] | None = None, function: str | None = None, limit: int = 10_000,
               since: int = 0) -> TaskTable:
    """Task and actor-call attempts, oldest first: one row per attempt, ``duration`` in seconds added.

    ``state``: ``pending``, ``queued``, ``running``, ``finished``, ``failed``, ``interrupted`` (its worker died),
    ``lost`` (finished, but the result was lost with its worker), ``cancelled`` (``lc.cancel``) or ``released``
    (every ref to it was dropped before it finished: its owner let it go); one or several.
    ``function`` filters by function (or ``Class.method``) name. ``since`` skips rows below that index.
    Each row has the ``worker`` address it ran on and that worker's name (``worker_name``, as ``lc.nodes()``).

    >>> lc.list_tasks(state="failed", limit=5)          # doctest: +SKIP
    """
    states = {state} if isinstance(state, str) else set(state) if state is not None else None
    unknown = (states or set()) - set(STATE_NAMES.values())
    if unknown:
        raise ValueError(f"unknown state(s) {sorted(unknown)}; use one of {sorted(set(STATE_NAMES.values()))}")
    rows, _ = fetch(since)
    names = call(current_session(auto_init=False).client, "worker_names")
    out = TaskTable()
    for row in rows:
        if (states is None or row["state"] in states) and (function is None or row["function"] == function):
            row["duration"] = duration(row)
            row["worker_name"] = names.get(row["worker"]) if row.get("worker") else None
            out.append(row)
            if len(out) >= limit:
                break
    return out


class Summary:
    """Counts of task attempts by function and state (``lc.summary()``)."""

    def __init__(self, counts: dict[str, Counter[str]], info: dict[str, Any], rows: int) -> None:
        self.counts = counts
        self.dropped = int(info.get("dropped", 0))
        self.rows = rows

    def to_dict(self) -> dict[str, Any]:
        return {"functions": {f: dict(c) for f, c in self.counts.items()}, "rows": self.rows,
                "dropped": self.dropped}

    def __repr__(self) -> str:
        lines = [f"{f}: " + ", ".join(f"{s}={n}" for s, n in sorted(c.items())) for f, c in self.counts.items()]
        return "\n".join([f"task records: {self.rows} rows, {self.dropped} dropped", *lines])

    def _repr_html_(self) -> str:
        states = sorted({s for c in self.counts.values() for s in c})
        head = "<th>function</th>" + "".join(f"<th>{s}</th>" for s in states) + "<th>total</th>"
        body = "".join(
            f"<tr><td>{html.escape(f)}</td>" + "".join(f"<td>{c.get(s, '')}</td>" for s in states)
            + f"<td>{sum(c.values())}</td></tr>" for f, c in self.counts.items())
        dropped = f", {self.dropped} older rows dropped (labcluster.records.max)" if self.dropped else ""
        table = f"<table><tr>{head}</tr>{body}</table>"
        return f"<div><strong>task records</strong>: {self.rows} rows{dropped}{table}</div>"


@entry
def summary() -> Summary:
    """Task attempts by function and state, as a table.

    >>> lc.summary()                                    # doctest: +SKIP
    """
    rows, info = fetch()
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(str(row["function"]), Counter())[row["state"]] += 1
    return Summary(dict(sorted(counts.items())), info, len(rows))


def trace_events(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chrome trace events (the Trace Event Format's JSON array form): one complete ("X") event per attempt
    that ran, pid = worker, tid = thread, named by metadata ("M") events."""
    pids: dict[str, int] = {}
    tids: dict[tuple[int, int], int] = {}
    events: list[dict[str, Any]] = []
    for row in rows:
        seconds = duration(row)
        if seconds is None:
            continue
        worker = str(row.get("worker") or "?")
        if worker not in pids:
            pids[worker] = len(pids) + 1
            events.append({"name": "process_name", "ph": "M", "pid": pids[worker], "tid": 0,
                           "args": {"name": f"worker {worker}"}})
        pid = pids[worker]
        thread = int(row.get("thread") or 0)
        if (pid, thread) not in tids:
            tids[(pid, thread)] = len([p for p, _ in tids if p == pid]) + 1
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tids[(pid, thread)],
                           "args": {"name": f"thread {thread}"}})
        events.append({
            "name": str(row["function"]), "cat": str(row.get("stage") or row["kind"]), "ph": "X",
            "ts": float(row["started"]) * 1e6, "dur": max(0.0, seconds) * 1e6,
            "pid": pid, "tid": tids[(pid, thread)],
            "args": {"key": row["key"], "attempt": row["attempt"], "bytes": row["nbytes"], "state": row["state"],
                     "reconstruction": row["reconstruction"], **({"error": row["error"]} if row["error"] else {})},
        })
    return events


@entry
def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The task records as a Chrome trace: returns the events, or writes them to ``filename`` (then None).

    Load the file in https://ui.perfetto.dev or chrome://tracing: a process per worker, a row per thread,
    a bar per task or actor call with its key, attempt and result size.

    >>> lc.timeline("trace.json")                       # doctest: +SKIP
    """
    events = trace_events(fetch()[0])
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


@entry
def timeline_figure(*, color_by: str = "function", since: int = 0, width: int = 1000) -> Figure:
    """A picture of the task records: a lane per busy slot of a worker (``cpu-0 / slot 1``), a bar per task or actor
    call, coloured by function (or ``color_by="stage"``); failures outlined in red and cross-hatched,
    reconstructions outlined in black. As a cell's last expression it renders inline (no network needed);
    ``.save("timeline.html")`` writes a page.

    >>> lc.timeline_figure(color_by="stage")           # doctest: +SKIP
    """
    rows, _ = fetch(since)
    session = current_session(auto_init=False)
    names = call(session.client, "worker_names", labelled=True)  # a simulated GPU's lane says so
    model = draw(rows, color_by=color_by, width=width, worker_names=names)
    return Figure(model, f"task timeline, {len(rows)} records")
