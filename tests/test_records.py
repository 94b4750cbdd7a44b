"""Task records (issue 4): what each row holds, actor calls, bounded memory, paging, and the views and exports
built on them (Chrome trace, bokeh timeline, lineage at two grains, tables)."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from conftest import wait_until

import labcluster as lc
from labcluster.diagnostics.record_store import RecordStore


@lc.remote
def load(i: int) -> list[int]:
    return list(range(i))


@lc.remote
def combine(a: list[int], b: list[int]) -> int:
    return len(a) + len(b)


@lc.remote
def inc(x: int) -> int:
    return x + 1


@lc.remote
def broken() -> None:
    raise ValueError("bad input row")


@lc.remote
class Scorer:
    def score(self, n: int) -> int:
        time.sleep(0.01)
        return n * 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[lc.Session]:
    lc.shutdown()
    yield lc.init(num_cpus=2, include_dashboard=False)
    lc.shutdown()


def _rows_for(keys: set[str], timeout: float = 20) -> dict[str, dict[str, Any]]:
    """The rows of ``keys``, once every one is there: an actor call reports itself as a worker event, on the
    worker's batched stream, which may reach the scheduler a moment after the call's reply reaches the caller."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {r["key"]: r for r in lc.list_tasks() if r["key"] in keys}
        if keys <= rows.keys() or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_rows_hold_what_the_issue_lists_for_tasks_and_actor_calls(cluster: lc.Session) -> None:
    with lc.stage("ingest"):
        a, b = load.remote(3), load.options(name="load_big").remote(5)
    c = combine.remote(a, b)
    scorer = Scorer.remote()
    with lc.stage("score"):  # an actor call belongs to the stage it was made in, as a task does
        s = scorer.score.remote(c)
    assert lc.get(s, timeout=30) == 80
    with pytest.raises(ValueError):
        lc.get(broken.remote(), timeout=30)
    rows = _rows_for({a.key, b.key, c.key, s.key})
    assert rows[a.key]["stage"] == "ingest" and rows[b.key]["name"] == "load_big"
    assert rows[c.key]["deps"] == sorted([a.key, b.key]) or set(rows[c.key]["deps"]) == {a.key, b.key}
    for row in rows.values():
        assert row["state"] == "finished" and row["attempt"] == 1 and not row["reconstruction"]
        assert row["worker"].startswith("tcp://") and row["thread"]
        assert row["started"] <= row["finished"] and row["nbytes"] > 0
    assert rows[c.key]["resources"] == {"CPU": 1.0}
    call = rows[s.key]  # Dask's own diagnostics never see actor calls; the records do
    assert call["kind"] == "actor call" and call["function"] == "Scorer.score" and call["deps"] == [c.key]
    assert call["stage"] == "score" and rows[c.key]["stage"] is None
    assert call["finished"] - call["started"] >= 0.009
    failed = lc.list_tasks(state="failed", function="broken")
    assert failed and "ValueError: bad input row" in failed[-1]["error"]
    table = lc.list_tasks(since=rows[a.key]["index"])
    assert table[0]["index"] == rows[a.key]["index"] and "<table>" in table._repr_html_()
    df = table.to_pandas()
    assert len(df) == len(table)
    assert str(df["started"].dtype).startswith("datetime64") and str(df["thread"].dtype) == "Int64"
    summary = lc.summary().to_dict()
    assert summary["functions"]["combine"]["finished"] >= 1 and summary["functions"]["broken"]["failed"] >= 1
    assert "Scorer.score" in lc.summary()._repr_html_()
    with pytest.raises(ValueError, match="unknown state"):
        lc.list_tasks(state="done")


@lc.remote
class Skewed:
    def call(self, delay: float) -> float:
        from distributed import get_worker

        worker = get_worker()  # as if the heartbeats had measured the scheduler's clock ``delay`` s ahead
        worker.scheduler_delay, before = delay, worker.scheduler_delay
        return float(before)


def test_actor_calls_are_recorded_on_the_schedulers_clock_like_tasks(cluster: lc.Session) -> None:
    # Dask shifts a task's compute times by the worker's scheduler_delay; a call's must move with them, or a
    # timeline (and the bulk barrier's check) sets calls and tasks on two clocks tenths of a second apart
    actor = Skewed.remote()
    t0 = time.time()
    ref = actor.call.remote(100.0)
    before = lc.get(ref, timeout=30)
    try:
        row = _rows_for({ref.key})[ref.key]
        assert t0 + 99 < row["started"] <= row["finished"] < time.time() + 101
    finally:
        lc.get(actor.call.remote(before), timeout=30)  # (the next heartbeat would set it back anyway)
    lc.kill(actor)


@lc.remote
def slow(x: int) -> int:
    time.sleep(1.5)
    return x


def test_rows_of_running_and_waiting_tasks_say_where_they_are(cluster: lc.Session) -> None:
    # rows are filled in when an attempt ends; until then the scheduler's live state answers
    with lc.stage("wait"):
        a = slow.options(name="sleeper").remote(1)
        b = inc.remote(a)
    deadline = time.monotonic() + 30
    while True:
        rows = _rows_for({a.key, b.key})
        # (b's submission and this query travel on different connections: wait for both rows)
        if (rows.get(a.key, {}).get("state") == "running" and b.key in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    running, waiting = rows[a.key], rows[b.key]
    assert running["state"] == "running" and running["worker"].startswith("tcp://")
    assert (running["name"], running["stage"], running["resources"]) == ("sleeper", "wait", {"CPU": 1.0})
    assert running["finished"] is None
    assert waiting["state"] == "pending" and waiting["deps"] == [a.key] and waiting["worker"] is None
    assert lc.lineage(b).tasks.nodes and lc.get(b, timeout=30) == 2
    done = _rows_for({a.key, b.key})
    assert [done[k]["state"] for k in (a.key, b.key)] == ["finished", "finished"]
    assert done[a.key]["name"] == "sleeper" and done[b.key]["deps"] == [a.key]


def _check_trace_event(event: dict[str, Any]) -> None:
    """The Trace Event Format (the JSON array form Perfetto and chrome://tracing load)."""
    assert isinstance(event["name"], str) and event["ph"] in ("X", "M")
    assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
    if event["ph"] == "X":
        assert isinstance(event["ts"], float) and event["ts"] > 0
        assert isinstance(event["dur"], float) and event["dur"] >= 0
        assert isinstance(event["cat"], str) and isinstance(event["args"], dict)
    else:
        assert event["name"] in ("process_name", "thread_name") and isinstance(event["args"]["name"], str)


def test_timeline_is_a_valid_chrome_trace_with_a_bokeh_picture(cluster: lc.Session, tmp_path: Path) -> None:
    refs = [load.remote(i) for i in range(20)]
    lc.get(refs, timeout=30)
    path = tmp_path / "trace.json"
    assert lc.timeline(str(path)) is None
    events = json.loads(path.read_text())
    assert isinstance(events, list)
    for event in events:
        _check_trace_event(event)
    spans = {e["args"]["key"]: e for e in events if e["ph"] == "X"}
    assert {r.key for r in refs} <= set(spans)
    one = spans[refs[0].key]
    assert one["args"]["attempt"] == 1 and one["args"]["bytes"] > 0
    named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in spans.values()} <= named
    fig = lc.timeline_figure()
    assert fig.renderers and len(fig.y_range.factors) >= 1
    names = {n["NodeName"] for n in lc.nodes()}
    assert all(lane.split(" / ")[0] in names for lane in fig.y_range.factors)  # cpu-0 / slot 1, not an address
    assert any(type(r).__name__ == "Legend" for r in fig.right)  # beside the lanes, not over the bars
    html = fig._repr_html_()  # a cell's last expression renders the chart, with bokeh's inline resources
    assert "Bokeh" in html and "load" in html and "cdn.bokeh.org" not in html
    assert "load" in Path(fig.save(str(tmp_path / "timeline.html"))).read_text()


def test_lineage_has_task_and_stage_views_and_exports(cluster: lc.Session) -> None:
    with lc.stage("extract"):
        parts = [load.remote(i) for i in range(4)]
    data = lc.put([1, 2, 3])
    with lc.stage("merge"):
        left, right = combine.remote(parts[0], parts[1]), combine.remote(parts[2], parts[3])
        top = combine.remote(load.remote(1), data)
    graph = lc.lineage([left, right, top])
    lc.get([left, right, top], timeout=30)
    graph = lc.lineage([left, right, top])
    assert set(graph.tasks.nodes) >= {p.key for p in parts} | {data.key, left.key, right.key, top.key}
    assert graph.tasks.nodes[data.key]["kind"] == "data"
    stages = {n["group"]: n for n in graph.stages.to_dict()["nodes"]}
    assert stages["extract"]["count"] == 4 and stages["merge"]["count"] == 4  # 3 combines and a load
    assert {(e["source"], e["target"]) for e in graph.stages.to_dict()["edges"]} >= {("extract", "merge"),
                                                                                    ("put", "merge")}
    dot = graph.to_dot()
    assert dot.startswith("digraph") and f'"{parts[0].key}" -> "{left.key}"' in dot
    assert "digraph lineage_stages" in graph.to_dot("stages")
    html = graph._repr_html_()
    assert html.count("<svg") == 2 and "extract" in html
    assert json.dumps(graph.to_dict())  # plain data all the way down
    # one legend, in pipeline order, naming only marks that occur (nothing was lost, rebuilt or failed here)
    assert html.count("background:") == len(graph.stages.nodes)  # one legend entry per stage: the legend is shown once
    assert graph.stages.groups().index("extract") < graph.stages.groups().index("merge")
    assert "dashed red: lost" not in html and "orange: reconstructed" not in html and "dark red" not in html


@lc.remote
def missing_part(x: int) -> int:
    raise KeyError(f"no part {x}")


def test_failed_tasks_are_marked_in_the_lineage_with_their_error(cluster: lc.Session) -> None:
    bad = combine.remote(load.remote(2), missing_part.remote(7))
    lc.wait([bad], timeout=30)
    graph = lc.lineage(bad)
    failed = [n for n in graph.tasks.nodes.values() if n["failed"]]
    assert {n["function"] for n in failed} == {"missing_part", "combine"}  # the cause and what depended on it
    html = graph._repr_html_()
    assert "red: failed" in html and "no part 7" in html  # the mark in the legend, the error in the title
    assert "1 failed" in graph.stages._label(graph.stages.nodes["missing_part"])


def test_a_big_lineage_still_renders(cluster: lc.Session) -> None:
    ref = inc.remote(0)
    for _ in range(599):
        ref = inc.remote(ref)
    assert lc.get(ref, timeout=120) == 600
    graph = lc.lineage(ref)
    assert len(graph.tasks.nodes) == 600 and len(graph.stages.nodes) == 1
    html = graph.tasks._repr_html_()
    assert "more nodes not drawn" in html and len(html) < 400_000


def test_records_are_bounded_and_page_by_index(shutdown_after: None) -> None:
    with dask.config.set({"labcluster.records.max": 50}):
        lc.init(num_cpus=2, include_dashboard=False)
    for batch in range(4):  # more tasks than rows, and more in flight at once than rows
        lc.get([load.remote(i) for i in range(30 if batch < 3 else 90)], timeout=60)
    rows = lc.list_tasks()
    first, last = rows[0]["index"], rows[-1]["index"]
    assert len(rows) == 50 and last - first == 49 and first >= 130  # the oldest rows were dropped
    assert lc.summary().dropped == first
    later = lc.list_tasks(since=last - 9)
    assert [r["index"] for r in later] == list(range(last - 9, last + 1))


@pytest.mark.parametrize("maxlen", [1, 7, 50, 1000])
def test_the_ring_keeps_the_last_maxlen_rows_whole_across_wraps(maxlen: int) -> None:
    store = RecordStore(maxlen=maxlen)
    total = 5 * maxlen + 3
    for i in range(total):  # every other row fills every field, so a stale value would show on a bare one
        full = i % 2 == 0
        index = store.open(f"k{i % (maxlen + 2)}", "f" if full else None, deps=("d",) if full else (),
                           name="n" if full else None, stage="s" if full else None,
                           resources={"CPU": 1.0} if full else None, submitted=float(i), attempt=2 if full else 1,
                           reason="r" if full else None, actor_call=full)
        if full:
            store.update(index, state="memory", worker="w", thread=7, nbytes=9, error="e", queued=1.0, started=2.0,
                         finished=3.0)
    assert len(store) == maxlen and store.dropped == total - maxlen
    for index in range(store.first_index, store.next_index):
        row = store.row(index)
        assert row["index"] == index and row["submitted"] == float(index)
        if index % 2 == 0:
            assert (row["function"], row["deps"], row["name"], row["stage"], row["resources"], row["attempt"],
                    row["reason"], row["kind"], row["state"], row["worker"], row["thread"], row["nbytes"],
                    row["error"], row["finished"]) == ("f", ["d"], "n", "s", {"CPU": 1.0}, 2, "r", "actor call",
                                                       "memory", "w", 7, 9, "e", 3.0)
        else:
            assert (row["function"], row["deps"], row["name"], row["stage"], row["resources"], row["attempt"],
                    row["reason"], row["kind"], row["state"], row["worker"], row["thread"], row["nbytes"],
                    row["error"], row["finished"]) == (f"k{index % (maxlen + 2)}", [], None, None, {}, 1, None,
                                                       "task", "waiting", None, None, None, None, None)
    # the newest row of each key is found; a key whose rows were all dropped has none
    assert all(store.rows_of(k) == [] for k, i in store.latest.items() if not store.holds(i))
    assert len(store.latest) <= maxlen + 2
    assert store.rows_of(f"k{(total - 1) % (maxlen + 2)}")[-1]["index"] == total - 1


def test_record_store_memory_per_row() -> None:
    store = RecordStore(maxlen=10_000)
    keys = [f"load-{i:032x}" for i in range(10_000)]
    for i, key in enumerate(keys):
        index = store.open(key, "load", deps=[keys[i - 1]] if i else [], resources={"CPU": 1.0}, submitted=1.0)
        store.update(index, state="memory", worker="tcp://127.0.0.1:1", thread=140000000000000 + i % 4,
                     nbytes=28, started=1.5, finished=2.0)
    per_row = store.nbytes() / len(store)
    assert per_row < 300, per_row  # the README states the measured figure
    assert store.row(5)["deps"] == [keys[4]]


def test_a_task_whose_ref_was_dropped_reads_released_by_its_owner(cluster: lc.Session) -> None:
    from labcluster.exceptions import GetTimeoutError

    ref = slow.remote(5)
    key = ref.key
    with pytest.raises(GetTimeoutError):
        lc.get(ref, timeout=0.5)
    del ref  # nothing holds it any more: the scheduler forgets it before it finished

    def row() -> dict | None:
        return next((r for r in lc.list_tasks() if r["key"] == key), None)

    assert wait_until(lambda: (r := row()) is not None and r["state"] == "released", timeout=30)
    assert "released by its owner" in (row() or {})["reason"]  # not "cancelled": no one called lc.cancel
