"""Does watching tax the work? Throughput with labcluster's dashboards open in a browser and a progress bar live,
against both off (issue 12: loss <= 5%).

``python -m bench.observability [rounds] [tasks]`` runs batches of 2,000 (or ``tasks``) no-op tasks on
``lc.init(num_cpus=2)``'s cluster (its dashboard on), in paired rounds as ``bench.records`` does: each round one
batch *watched* -- headless Chromium showing the four labcluster pages (resources, timeline, lineage, actors, each
updating every ``labcluster.dashboard.update-interval`` through the scheduler's bokeh server) and ``lc.get(refs,
progress=True)``'s bar polling the refs -- and one batch *unwatched* (the tabs on ``about:blank``, no bar),
alternating which goes first. Each batch starts ``SETTLE`` seconds after its pages opened (or blanked): opening
them is paid once, watching them all along. A batch is timed until the scheduler forgot its tasks. Three figures:

- the throughput loss: the median over rounds of 1 - watched / unwatched, with its spread and the noise floor
  (the same setting twice in a row);
- the CPU tax: CPU seconds per task of every process involved (this one, the cluster's, Playwright's and
  Chromium's), watched over unwatched: on a machine whose cores are all busy, the throughput watching takes;
- the direct cost: what watching itself spends, measured where it is spent (Chromium's CPU over blank tabs, the
  pages' updates on the scheduler, ``labcluster.dashboards.pages.SPENT``, and the progress bar's thread), over the
  unwatched work's CPU. Other tenants' load hardly moves it, while it moves the other two by +-20% a batch here.

The browser's own CPU is part of the cost: on 2 cores it competes with the cluster, as it would on a laptop.
Writes ``bench/results/observability.{json,md}``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import statistics
import sys
import time
from typing import Any

from .core import noop, save
from .records import _forgotten

BATCH = 2_000
#: seconds between opening (or blanking) the pages and the batch
SETTLE = 3.0
PAGES = ("resources", "timeline", "lineage", "actors")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


#: processes of the browser (Playwright's driver and Chromium's), told apart from the cluster's Python ones
BROWSER_NAMES = ("chrom", "headless_shell", "node")


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of this process and every process below it: the cluster's head and
    workers, Playwright's driver and Chromium's processes. pid -> (kind, seconds)."""
    import psutil

    me = psutil.Process()
    out: dict[int, tuple[str, float]] = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            kind = "browser" if any(n in p.name().lower() for n in BROWSER_NAMES) else "cluster"
            out[p.pid] = (kind, t.user + t.system)
        except psutil.Error:  # it ended meanwhile
            pass
    return out


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per kind between two :func:`cpu_seconds` readings (a process that started between them counts
    whole; one that ended between them is not seen: the pages are open before a batch starts, so their
    renderers live through it)."""
    spent = {"cluster": 0.0, "browser": 0.0}
    for pid, (kind, seconds) in after.items():
        spent[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    return spent


def _pages_spent(dask_scheduler: Any = None) -> float:
    """Run on the scheduler: CPU seconds its labcluster pages' updates took so far."""
    from labcluster.dashboards.pages import SPENT

    return float(SPENT["cpu"])


def _catch_up(dask_scheduler: Any = None) -> float:
    """Run on the scheduler: seconds a lineage page opened now takes to read the records held (it reads
    ``READ_LIMIT`` rows an update, so that no update holds the event loop long): opening it is a cost paid once,
    not watching's."""
    import math

    from labcluster import config
    from labcluster.dashboards.lineage import READ_LIMIT
    from labcluster.dashboards.state import records

    plugin = records(dask_scheduler)
    held = len(plugin.store) if plugin is not None else 0
    return math.ceil(held / READ_LIMIT) * config.seconds("dashboard.update-interval")


def _until_pages_idle(session: Any, timeout: float = 60.0) -> None:
    """Wait until no page updates on the scheduler: bokeh keeps a closed tab's document (and its periodic updates)
    until it finds the session unused, some seconds later; an unwatched batch must not pay for them."""
    deadline = time.monotonic() + timeout
    spent = session.client.run_on_scheduler(_pages_spent)
    while time.monotonic() < deadline:
        time.sleep(2.5)  # past one update interval (2 s)
        now = session.client.run_on_scheduler(_pages_spent)
        if now == spent:
            return
        spent = now
    raise RuntimeError(f"the scheduler's pages still updated {timeout:g} s after their tabs were blanked")


class ThreadClock:
    """CPU seconds of the driver's progress-bar threads (``labcluster-progress``), read from each thread's own CPU
    clock while it lives (looked at every 20 ms; a bar's thread ends with its wait)."""

    def __init__(self) -> None:
        import threading

        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import threading

        while not self._stop.wait(0.02):
            for t in threading.enumerate():
                if t.name == "labcluster-progress" and t.ident is not None:
                    with contextlib.suppress(OSError, ProcessLookupError):  # it ended: its last reading stays
                        self.seen[t.ident] = time.clock_gettime(time.pthread_getcpuclockid(t.ident))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


def _batch(session: Any, fn: Any, progress: bool) -> tuple[float, dict[str, float]]:
    """Tasks/s of one batch, and the CPU seconds per task it cost: per kind of process (cluster, browser), and
    what of it the watching itself spent -- the pages' updates on the scheduler, the progress bar's thread."""
    import labcluster as lc

    pages0 = session.client.run_on_scheduler(_pages_spent)
    bar = ThreadClock()
    cpu0, t = cpu_seconds(), time.perf_counter()
    lc.get([fn.remote() for _ in range(BATCH)], progress=progress)
    left = session.client.run_on_scheduler(_forgotten)
    if left:
        raise RuntimeError(f"the scheduler still holds {left} tasks 60 s after the batch")
    rate = BATCH / (time.perf_counter() - t)
    spent = cpu_spent(cpu0, cpu_seconds())
    spent["pages"] = session.client.run_on_scheduler(_pages_spent) - pages0
    spent["bar"] = bar.stop()
    return rate, {kind: seconds / BATCH for kind, seconds in spent.items()}


class Browser:
    """Headless Chromium with one tab per labcluster page."""

    def __init__(self, base: str) -> None:
        from playwright.sync_api import sync_playwright

        executable = shutil.which("chromium")
        if executable is None:
            raise SystemExit("bench.observability needs Debian's chromium on PATH (apt-get install chromium)")
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=executable, args=FLAGS)
        self.tabs = [self.browser.new_page(viewport={"width": 1200, "height": 900}) for _ in PAGES]
        self.base = base
        self.on = False

    def watch(self, on: bool, catch_up: float = 0.0) -> float:
        """Open (or blank) the four pages; returns how long it took (the pages are live when it returns). Pages
        open already stay as they are (watching goes on). ``catch_up``: seconds more to wait after opening them."""
        t = time.perf_counter()
        if on != self.on:
            for tab, page in zip(self.tabs, PAGES, strict=True):
                tab.goto(f"{self.base}/individual-labcluster-{page}" if on else "about:blank", timeout=120_000)
            if on:  # the documents are live (their websockets open) before the batch starts
                for tab in self.tabs:
                    tab.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=120_000)
                time.sleep(catch_up)
            self.on = on
        took = time.perf_counter() - t
        # what is measured is watching, not opening: loading BokehJS and the first render of four pages are a cost
        # paid once when a user opens them, and would land in the batch. Both settings wait alike.
        time.sleep(SETTLE)
        return took

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()


def paired(rounds: int) -> dict[str, Any]:
    import labcluster as lc

    session = lc.init(num_cpus=2, dashboard_address="127.0.0.1:0")
    browser = None
    try:
        link = session.dashboard_link
        assert link is not None, "the cluster has no dashboard"
        browser = Browser(link.rsplit("/", 1)[0])
        fn = lc.remote(noop)
        _batch(session, fn, False)  # warm-up: connections, function cache
        runs: dict[str, list[float]] = {"watched": [], "unwatched": []}
        cpus: dict[str, list[dict[str, float]]] = {"watched": [], "unwatched": []}
        order: list[tuple[str, float, float]] = []
        for i in range(rounds):
            for mode in ("watched", "unwatched") if i % 2 == 0 else ("unwatched", "watched"):
                opened = browser.watch(mode == "watched", catch_up=session.client.run_on_scheduler(_catch_up))
                if mode == "unwatched":
                    _until_pages_idle(session)
                rate, cpu = _batch(session, fn, progress=mode == "watched")
                runs[mode].append(rate)
                cpus[mode].append(cpu)
                total = cpu["cluster"] + cpu["browser"]
                order.append((mode, rate, total))
                did = "opened" if mode == "watched" else "blanked"
                print(f"  round {i + 1}: {mode:9} {rate:,.0f} tasks/s, {total * 1e3:.2f} ms CPU a task (browser "
                      f"{cpu['browser'] * 1e3:.3f}, pages {cpu['pages'] * 1e3:.3f}, bar {cpu['bar'] * 1e3:.3f}) "
                      f"(pages {did} in {opened:.1f} s)", file=sys.stderr)
        ratios = [a / b for a, b in zip(runs["watched"], runs["unwatched"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        same = [1 - b / a for (m1, a, _), (m2, b, _) in itertools.pairwise(order) if m1 == m2]
        n1, _, n3 = statistics.quantiles(same, n=4) if len(same) > 1 else (0.0, 0.0, 0.0)
        # the CPU the watching costs, over the CPU the work costs: what it takes from the work on a machine whose
        # cores are all busy (an upper bound of the throughput loss there); steadier than throughput on a shared
        # machine, as other tenants' load does not enter it
        taxes = [(w["cluster"] + w["browser"]) / (u["cluster"] + u["browser"]) - 1
                 for w, u in zip(cpus["watched"], cpus["unwatched"], strict=True)]
        t1, _, t3 = statistics.quantiles(taxes, n=4)
        same_cpu = [b / a - 1 for (m1, _, a), (m2, _, b) in itertools.pairwise(order) if m1 == m2]
        c1, _, c3 = statistics.quantiles(same_cpu, n=4) if len(same_cpu) > 1 else (0.0, 0.0, 0.0)
        per_task = {f"cpu_ms_per_task_{mode}_{kind}": statistics.median(c[kind] for c in cpus[mode]) * 1e3
                    for mode in cpus for kind in ("cluster", "browser", "pages", "bar")}
        # what watching itself spent (the browser over its idle self, the pages' updates, the bar), over what the
        # unwatched work costs: measured where it is spent, so the machine's noise hardly moves it
        direct = [(w["browser"] - u["browser"] + w["pages"] + w["bar"]) / (u["cluster"] + u["browser"])
                  for w, u in zip(cpus["watched"], cpus["unwatched"], strict=True)]
        d1, _, d3 = statistics.quantiles(direct, n=4)
        return {**per_task, "direct_percent": statistics.median(direct) * 100, "direct_iqr_low": d1 * 100,
                "direct_iqr_high": d3 * 100,
                "cpu_tax_percent": statistics.median(taxes) * 100, "cpu_tax_iqr_low": t1 * 100,
                "cpu_tax_iqr_high": t3 * 100, "cpu_noise_iqr_low": c1 * 100, "cpu_noise_iqr_high": c3 * 100,
                "tasks_per_s_watched": statistics.median(runs["watched"]),
                "tasks_per_s_unwatched": statistics.median(runs["unwatched"]),
                "loss_percent": (1 - statistics.median(ratios)) * 100, "loss_iqr_low": (1 - q3) * 100,
                "loss_iqr_high": (1 - q1) * 100, "noise_iqr_low": n1 * 100, "noise_iqr_high": n3 * 100,
                "rounds": rounds, "batch": BATCH, "load_before": os.getloadavg()[0]}
    finally:
        if browser is not None:
            browser.close()
        lc.shutdown()


def markdown(r: dict[str, Any]) -> str:
    return "\n".join([
        "| metric | value |", "|---|---|",
        f"| tasks/s watched / unwatched (medians of {r['rounds']} paired rounds of {r['batch']:,} no-op tasks) | "
        f"{r['tasks_per_s_watched']:,.0f} / {r['tasks_per_s_unwatched']:,.0f} |",
        f"| loss (median; IQR; IQR of the same setting twice in a row) | **{r['loss_percent']:.1f}%** "
        f"({r['loss_iqr_low']:.1f} to {r['loss_iqr_high']:.1f}%; noise {r['noise_iqr_low']:.1f} to "
        f"{r['noise_iqr_high']:.1f}%) |",
        f"| CPU a task, cluster + browser: watched / unwatched (ms) | "
        f"{r['cpu_ms_per_task_watched_cluster']:.2f} + {r['cpu_ms_per_task_watched_browser']:.2f} / "
        f"{r['cpu_ms_per_task_unwatched_cluster']:.2f} + {r['cpu_ms_per_task_unwatched_browser']:.2f} |",
        f"| watching's own CPU a task: browser (over blank tabs) + pages' updates + progress bar (ms) | "
        f"{r['cpu_ms_per_task_watched_browser'] - r['cpu_ms_per_task_unwatched_browser']:.3f} + "
        f"{r['cpu_ms_per_task_watched_pages']:.3f} + {r['cpu_ms_per_task_watched_bar']:.3f} |",
        f"| direct cost: that over the unwatched work's CPU (median; IQR) | **{r['direct_percent']:.1f}%** "
        f"({r['direct_iqr_low']:.1f} to {r['direct_iqr_high']:.1f}%) |",
        f"| CPU tax: all CPU watched over unwatched (median of paired rounds; IQR; same setting twice in a row) | "
        f"**{r['cpu_tax_percent']:.1f}%** ({r['cpu_tax_iqr_low']:.1f} to {r['cpu_tax_iqr_high']:.1f}%; noise "
        f"{r['cpu_noise_iqr_low']:.1f} to {r['cpu_noise_iqr_high']:.1f}%) |",
        f"| load average (1 min) before the run | {r['load_before']:.2f} |",
    ])


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 10
    if len(sys.argv) > 2 and sys.argv[2].isdigit():  # tasks a batch: longer batches, less noise per pair
        BATCH = int(sys.argv[2])
    print(f"bench.observability: {rounds} paired rounds, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    result = paired(rounds)
    md = markdown(result)
    print(md)
    print(save("observability", result, md), file=sys.stderr)
