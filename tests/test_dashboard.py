"""labcluster's dashboard pages (labcluster/dashboards/): served by the scheduler's own dashboard server, listed in
``/individual-plots.json``, rendering and updating in a real headless Chromium while work runs.

A real cluster (process workers: a CPU worker and a simulated-GPU worker), real HTTP, real Chromium through
Python Playwright (Debian's chromium; never ``playwright install``). Screenshots of each page are saved under a
pytest tmp path and their paths printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM
from distributed import Client, LocalCluster

import labcluster as lc
from labcluster.dashboards import PAGES
from labcluster.diagnostics import nvml
from labcluster.diagnostics.record_store import MEMORY, RecordStore
from labcluster.scheduler.extension import LabclusterSchedulerPlugin

ROUTES = sorted(PAGES)


@lc.remote
def decode(i: int) -> int:
    time.sleep(0.05)
    return i


@lc.remote(num_gpus=1)
def infer(x: int) -> int:
    time.sleep(0.02)
    return 2 * x


@lc.remote
def tiny(i: int) -> int:
    return i


@lc.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


@pytest.fixture(scope="module")
def cluster() -> Iterator[lc.Session]:
    """4 CPU slots (an actor and a placement-group bundle each keep one for good) and one simulated GPU."""
    lc.shutdown()
    session = lc.init(num_cpus=4, num_gpus=1, simulate_gpus=True, dashboard_address="127.0.0.1:0")
    yield session
    lc.shutdown()


@pytest.fixture(scope="module")
def base(cluster: lc.Session) -> str:
    link = cluster.dashboard_link
    assert link is not None and link.startswith("http://127.0.0.1:"), link  # bound to the loopback, as Dask's is
    return link.rsplit("/", 1)[0]


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(response.status), response.read().decode()


def test_individual_plots_json_lists_the_four_pages(base: str) -> None:
    status, body = fetch(f"{base}/individual-plots.json")
    assert status == 200
    plots = json.loads(body)
    ours = {name: route for name, route in plots.items() if "labcluster" in route}
    assert ours == {"Individual Labcluster Resources": "/individual-labcluster-resources",
                    "Individual Labcluster Timeline": "/individual-labcluster-timeline",
                    "Individual Labcluster Lineage": "/individual-labcluster-lineage",
                    "Individual Labcluster Actors": "/individual-labcluster-actors"}
    assert "Individual Task Stream" in plots  # distributed's own pages are still listed


@pytest.mark.parametrize("route", ROUTES)
def test_each_page_answers_200(base: str, route: str) -> None:
    status, body = fetch(base + route)
    assert status == 200
    assert "Bokeh" in body and PAGES[route].title in body  # a bokeh document, titled as the table says


def test_pages_are_added_where_the_plugin_is_registered() -> None:
    """A plain Dask scheduler that labcluster did not start gets the pages once its plugin is registered (what
    lc.init(address=...) does); one without a dashboard gets none, and registering again adds nothing twice."""
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as dask_cluster, \
            Client(dask_cluster) as client:
        link = f"http://127.0.0.1:{client.scheduler_info(n_workers=0)['services']['dashboard']}"
        assert not any("labcluster" in r for r in json.loads(fetch(f"{link}/individual-plots.json")[1]).values())
        client.register_plugin(LabclusterSchedulerPlugin.configured(retries=False, stream_interval=None))
        listed = json.loads(fetch(f"{link}/individual-plots.json")[1])
        assert sorted(r for r in listed.values() if "labcluster" in r) == ROUTES
        assert fetch(link + "/individual-labcluster-resources")[0] == 200

        def again(dask_scheduler: Any) -> list[str]:
            from labcluster.dashboards import add_pages

            return add_pages(dask_scheduler)

        assert client.run_on_scheduler(again) == []
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as bare, Client(bare) as client:
        client.register_plugin(LabclusterSchedulerPlugin.configured(retries=False, stream_interval=None))
        assert client.run_on_scheduler(again) == []  # no dashboard: nothing to add to, and no error


def _lineage_after(dask_scheduler: Any, view: int) -> dict[str, Any]:
    """Build the lineage component in the scheduler process and update it until it has read every record."""
    from labcluster.dashboards.lineage import LineageGraph

    graph = LineageGraph(dask_scheduler)
    graph.view.active = view
    store = dask_scheduler.extensions["labcluster"].records.store
    for _ in range(100):  # each update reads at most lineage.READ_LIMIT new rows
        graph.update()
        if graph._next >= store.next_index:
            break
    data = graph.source.data
    return {"rows": len(data["name"]), "names": list(data["name"]), "tasks": sum(data["tasks"]),
            "edges": len(graph.edge_source.data["x0"]), "labels_visible": graph.labels.visible,
            "recorded": store.next_index, "threshold": graph.threshold}


def test_lineage_stays_aggregated_at_10000_tasks(cluster: lc.Session) -> None:
    with lc.stage("many-a"):
        first = [tiny.remote(i) for i in range(5_000)]
    with lc.stage("many-b"):
        second = [tiny.remote(r) for r in first]
    assert sum(lc.get(second, timeout=170)) == sum(range(5_000))
    stages = cluster.client.run_on_scheduler(_lineage_after, view=0)
    assert stages["tasks"] >= 10_000 and stages["recorded"] >= 10_000
    assert {"many-a", "many-b"} <= set(stages["names"])
    assert stages["rows"] <= 10 and stages["edges"] <= 10, stages  # a row per stage or function, not per task
    tasks = cluster.client.run_on_scheduler(_lineage_after, view=1)
    assert tasks["rows"] <= tasks["threshold"] and not tasks["labels_visible"], tasks  # capped, no labels
    del first, second


def test_lineage_marks_lost_results_after_a_worker_left() -> None:
    """The aggregate counts a result as lost when its row is marked so (which happens when a worker leaves)."""
    from labcluster.dashboards.lineage import LineageAggregate

    store = RecordStore(maxlen=100)
    a = store.open("load-1", "load", submitted=1.0)
    store.close(a, MEMORY, (), None, "load", None, "tcp://w:1", 1, 8, 1.0, 2.0)
    b = store.open("fit-1", "fit", deps=("load-1",), submitted=2.0, reconstruction=True)
    agg = LineageAggregate()
    for row in store.collect(0):
        agg.add(row)
    assert agg.groups["fit"].running == 1 and agg.groups["fit"].reconstructed == 1
    # what the page reads (no whole rows) says what the rows say
    assert store.lineage_rows(0) == [(r["index"], r["key"], r["stage"] or r["function"], tuple(r["deps"]), r["state"],
                                      r["kind"] == "actor call", r["reconstruction"]) for r in store.collect(0)]
    assert store.lineage_rows(1) == store.lineage_rows(0)[1:] and store.lineage_rows(0, limit=1)[0][0] == 0
    store.mark(a, "lost")
    store.close(b, MEMORY, ("load-1",), None, "fit", None, "tcp://w:2", 1, 8, 2.0, 3.0)
    agg.recheck(store, worker_left=False)
    assert agg.groups["load"].lost == 0 and agg.groups["fit"].running == 0
    agg.recheck(store, worker_left=True)
    nodes, edges = agg.stage_nodes()
    lost = dict(zip(nodes["name"], nodes["lost"], strict=True))
    assert lost == {"load": 1, "fit": 0} and len(edges["x0"]) == 1
    assert dict(zip(nodes["name"], nodes["dash"], strict=True))["load"] == "dashed"


@pytest.mark.skipif(nvml.probe().state is not nvml.NVMLState.ENABLED, reason="needs a real NVIDIA GPU (NVML)")
def test_real_gpus_are_counted_once_by_uuid(cluster: lc.Session) -> None:
    """On a machine with GPUs lc.init gives each worker its device; the page shows each device once, measured."""

    def devices(dask_scheduler: Any) -> dict[str, Any]:
        from labcluster.dashboards.gpus import GPUDevices

        component = GPUDevices(dask_scheduler)
        component.update()
        return {"data": dict(component.source.data), "status": component.status.text}

    probe = nvml.probe()
    seen = cluster.client.run_on_scheduler(devices)
    print("GPU devices:", seen)
    assert len(seen["data"]["uuid"]) == len(set(seen["data"]["uuid"])) >= 1
    assert set(seen["data"]["uuid"]) <= {d.uuid for d in probe.devices}


# -- real Chromium ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workload(cluster: lc.Session) -> Iterator[dict[str, Any]]:
    """Work that runs while the pages are watched: staged CPU tasks feeding simulated-GPU tasks, a live actor and
    its calls, and a placement group's reservation."""
    counter = Counter.options(name="watched-counter").remote()
    assert lc.get(counter.incr.remote(), timeout=60) == 1
    pg = lc.placement_group([{"CPU": 1}], strategy="PACK", name="reserved")
    assert lc.get(pg.ready(), timeout=60) is True
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                with lc.stage("decode"):
                    parts = [decode.remote(i) for i in range(4)]
                with lc.stage("infer"):
                    out = [infer.remote(p) for p in parts]
                lc.get([*out, counter.incr.remote()], timeout=60)
        except BaseException as e:  # reported by the tests, not lost in the thread
            errors.append(e)

    thread = threading.Thread(target=run, name="dashboard-workload", daemon=True)
    thread.start()
    yield {"counter": counter, "pg": pg, "errors": errors}
    stop.set()
    thread.join(timeout=60)
    lc.remove_placement_group(pg)
    lc.kill(counter)
    assert not errors, errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-screenshots")


#: the ColumnDataSource (as plain arrays) of the page's first source that has ``column``
#: (BokehJS keeps a source's columns in a Map or in a plain object, depending on how they arrived)
READ_SOURCE = """(column) => {
  const columns = m => m.data instanceof Map ? m.data : new Map(Object.entries(m.data));
  const doc = Bokeh.documents[0];
  const source = [...doc.all_models].find(m => m.type === "ColumnDataSource" && columns(m).has(column));
  if (source === undefined) return null;
  const out = {};
  for (const [k, v] of columns(source)) out[k] = Array.from(v);
  return out;
}"""


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, timeout=60_000)
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0", timeout=60_000)
    return page


def read(page: Any, column: str) -> dict[str, list[Any]]:
    data = page.evaluate(READ_SOURCE, column)
    assert data is not None, f"no source with a {column!r} column on {page.url}"
    return dict(data)


def wait_for(page: Any, check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll ``check()`` (reading the page) until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g} s on {page.url}")
        page.wait_for_timeout(250)


def changes(page: Any, column: str, reading: Any, what: str) -> None:
    """The page UPDATES: a value read from its source changes between two reads."""
    first = reading(read(page, column))
    wait_for(page, lambda: reading(read(page, column)) != first, f"{what} changing from {first!r}")


def screenshot(page: Any, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot of the {name} page: {path}")
    return path


def test_resources_page_renders_and_updates(browser: Any, base: str, workload: dict[str, Any],
                                            shots: Path) -> None:
    page = open_page(browser, base + "/individual-labcluster-resources")
    assert page.get_by_text("labcluster: resources").first.is_visible()
    slots = wait_for(page, lambda: (d := read(page, "resource")) and "cpu-0 · CPU" in d["label"] and d,
                     "the slots of both workers")
    assert "gpu-0 · GPU (simulated)" in slots["label"]  # a simulated GPU says so
    wait_for(page, lambda: page.get_by_text("Simulated GPUs").first.is_visible(), "the GPU status line")
    if nvml.probe().state is not nvml.NVMLState.ENABLED:
        assert page.get_by_text("NVML on the scheduler's machine").first.is_visible()  # NVML's state, in words
    pgs = wait_for(page, lambda: (d := read(page, "strategy")) and "reserved" in d["name"] and d,
                   "the placement group's reservation")
    assert pgs["worker"] == ["cpu-0"] and pgs["resources"] == ["CPU 1"]
    wait_for(page, lambda: read(page, "resource")["used"][0] >= 1.0, "the bundle's CPU reserved")
    changes(page, "memory_text", lambda d: (d["memory"], d["cpu"]), "worker memory and CPU")
    page.wait_for_timeout(1000)
    screenshot(page, shots, "resources")
    page.close()


def test_timeline_page_renders_and_updates(browser: Any, base: str, workload: dict[str, Any], shots: Path) -> None:
    page = open_page(browser, base + "/individual-labcluster-timeline")
    assert page.get_by_text("labcluster: task timeline").first.is_visible()
    bars = wait_for(page, lambda: (d := read(page, "lane")) and {"decode", "infer"} <= set(d["group"]) and d,
                    "bars of both stages")
    assert any(lane.startswith("gpu-0 (simulated GPU) / thread") for lane in bars["lane"])  # a simulated GPU says so
    # bars sit at fixed times (the axis says how long before now); those kept span about the window (20 s)
    assert max(bars["right"]) - min(bars["left"]) <= 60, (min(bars["left"]), max(bars["right"]))
    changes(page, "lane", lambda d: (d["key"][-1:], d["left"][-1:]), "the newest bar")
    screenshot(page, shots, "timeline")
    page.close()


def test_lineage_page_renders_and_updates(browser: Any, base: str, workload: dict[str, Any], shots: Path) -> None:
    page = open_page(browser, base + "/individual-labcluster-lineage")
    assert page.get_by_text("labcluster: lineage").first.is_visible()
    nodes = wait_for(page, lambda: (d := read(page, "reconstructed")) and {"decode", "infer"} <= set(d["name"]) and d,
                     "the decode and infer stages")
    assert len(nodes["name"]) <= 10  # aggregated: a node per stage or function
    edges = read(page, "count")
    assert edges["x0"], "no arrow between stages"
    changes(page, "reconstructed", lambda d: sum(d["tasks"]), "the task counts")
    screenshot(page, shots, "lineage")
    page.close()


def test_actors_page_renders_and_updates(browser: Any, base: str, workload: dict[str, Any], shots: Path) -> None:
    page = open_page(browser, base + "/individual-labcluster-actors")
    assert page.get_by_text("labcluster: actors").first.is_visible()
    rows = wait_for(page, lambda: (d := read(page, "restarts_left")) and "watched-counter" in d["name"] and d,
                    "the workload's actor")
    i = rows["name"].index("watched-counter")
    assert (rows["state"][i], rows["class_name"][i], rows["restarts_left"][i]) == ("ALIVE", "Counter", "0 of 0")
    assert rows["worker"][i] in {"cpu-0", "gpu-0"} and rows["pending_calls"][i] == "caller-side"
    wait_for(page, lambda: page.get_by_text("watched-counter").first.is_visible(), "the actor's row in the table")
    extra = Counter.options(name="second-counter", max_restarts=2).remote()
    try:
        assert lc.get(extra.incr.remote(), timeout=60) == 1
        rows = wait_for(page, lambda: (d := read(page, "restarts_left")) and "second-counter" in d["name"] and d,
                        "the new actor")
        assert rows["restarts_left"][rows["name"].index("second-counter")] == "2 of 2"
        screenshot(page, shots, "actors")
    finally:
        lc.kill(extra)
    wait_for(page, lambda: "DEAD" in read(page, "restarts_left")["state"], "the killed actor's state")
    page.close()


def test_screenshots_are_saved(shots: Path) -> None:
    """Runs last: each browser test above left its picture (a browser test that was skipped leaves none)."""
    saved = sorted(p.name for p in shots.glob("*.png"))
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    print("dashboard screenshots:", shots, saved)
    assert saved == ["actors.png", "lineage.png", "resources.png", "timeline.png"]
    assert all(os.path.getsize(shots / name) > 10_000 for name in saved)


def test_the_timeline_draws_a_flood_of_tiny_tasks_as_the_busy_stretches_they_are() -> None:
    from labcluster.dashboards.timeline import TaskTimeline

    timeline = TaskTimeline(scheduler=None, window=20.0)
    t0 = timeline._origin

    def row(i: int, start: float, took: float, **extra: Any) -> dict[str, Any]:
        return {"key": f"noop-{i}", "function": "noop", "worker": "tcp://w", "thread": 1, "started": t0 + start,
                "finished": t0 + start + took, "state": "memory", **extra}

    rows = [row(i, i * 0.002, 0.001) for i in range(100)]  # 100 tasks of 1 ms, 1 ms apart: one busy stretch
    rows += [row(100, 0.2, 0.001, state="erred")]  # a failure is never hidden in a stretch
    rows += [row(101 + i, 0.2 + 0.002 * (i + 1), 0.001) for i in range(10)]  # a new stretch after it
    rows += [row(111, 0.3, 0.5)]  # a task long enough to see: a bar of its own
    rows += [row(112, 5.0, 0.001)]  # alone, far from the rest
    rows += [row(113, 5.002, 0.001, function="other")]  # another function: another bar
    data = timeline._bars(rows, {"tcp://w": "cpu-0"})
    assert data["key"] == ["100 tasks, from noop-0", "noop-100", "10 tasks, from noop-101", "noop-111", "noop-112",
                           "noop-113"]
    assert data["state"][1] == "erred" and data["ms"][0].endswith(" busy in all")
    assert float(data["ms"][0].split()[0]) == pytest.approx(100.0, abs=0.1)  # ms of work in the stretch
    assert abs(data["left"][0] - 0.0) < 1e-6 and abs(data["right"][0] - (0.198 + 0.04)) < 1e-6


def test_a_picture_whose_page_lost_bokehjs_says_how_to_get_it_back(browser: Any, tmp_path: Path) -> None:
    """A saved notebook whose output that carried BokehJS is gone: the picture says so, instead of staying blank
    (its note is a valid script: a quote in it once broke every picture's script)."""
    from bokeh.plotting import figure

    from labcluster.diagnostics.figures import Figure

    def picture(title: str) -> str:
        fig = figure(title=title)
        fig.line([0, 1], [0, 1])
        return Figure(fig, title)._repr_html_()

    picture("the first, which carries BokehJS in this process")
    page_file = tmp_path / "lost.html"
    page_file.write_text(f"<html><body>{picture('a later one')}</body></html>", encoding="utf-8")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_file.as_uri())
    page.wait_for_function("() => document.body.innerText.includes('needs BokehJS')", timeout=20_000)
    assert "run that picture's cell again" in page.inner_text("body")
    assert all("Bokeh is not defined" in e for e in errors), errors  # bokeh's own embed, and nothing of ours
    page.close()
