"""Does watching tax the work? Throughput with labcluster's dashboards open in a browser and a progress bar live,
against both off (issue 12: loss <= 5%).

``python -m bench.observability [rounds]`` runs batches of 2,000 no-op tasks on ``lc.init(num_cpus=2)``'s cluster
(its dashboard on), in paired rounds as ``bench.records`` does: each round one batch *watched* -- headless
Chromium showing the four labcluster pages (resources, timeline, lineage, actors, each updating every
``labcluster.dashboard.update-interval`` through the scheduler's bokeh server) and ``lc.get(refs,
progress=True)``'s bar polling the refs -- and one batch *unwatched* (the tabs on ``about:blank``, no bar),
alternating which goes first. Each batch starts ``SETTLE`` seconds after its pages opened (or blanked): opening
them is paid once, watching them all along. The loss is the median over
rounds of 1 - watched / unwatched, with its spread and the noise floor (the same setting twice in a row). A batch
is timed until the scheduler forgot its tasks. The browser's own CPU is part of the cost: on 2 cores it competes
with the cluster, as it would on a laptop. Writes ``bench/results/observability.{json,md}``.
"""

from __future__ import annotations

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


def _batch(session: Any, fn: Any, progress: bool) -> float:
    import labcluster as lc

    t = time.perf_counter()
    lc.get([fn.remote() for _ in range(BATCH)], progress=progress)
    left = session.client.run_on_scheduler(_forgotten)
    if left:
        raise RuntimeError(f"the scheduler still holds {left} tasks 60 s after the batch")
    return BATCH / (time.perf_counter() - t)


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

    def watch(self, on: bool) -> float:
        """Open (or blank) the four pages; returns how long it took (the pages are live when it returns)."""
        t = time.perf_counter()
        for tab, page in zip(self.tabs, PAGES, strict=True):
            tab.goto(f"{self.base}/individual-labcluster-{page}" if on else "about:blank", timeout=120_000)
        if on:  # the documents are live (their websockets open) before the batch starts
            for tab in self.tabs:
                tab.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=120_000)
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
        order: list[tuple[str, float]] = []
        for i in range(rounds):
            for mode in ("watched", "unwatched") if i % 2 == 0 else ("unwatched", "watched"):
                opened = browser.watch(mode == "watched")
                rate = _batch(session, fn, progress=mode == "watched")
                runs[mode].append(rate)
                order.append((mode, rate))
                did = "opened" if mode == "watched" else "blanked"
                print(f"  round {i + 1}: {mode:9} {rate:,.0f} tasks/s (pages {did} in {opened:.1f} s)", file=sys.stderr)
        ratios = [a / b for a, b in zip(runs["watched"], runs["unwatched"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        same = [1 - b / a for (m1, a), (m2, b) in itertools.pairwise(order) if m1 == m2]
        n1, _, n3 = statistics.quantiles(same, n=4) if len(same) > 1 else (0.0, 0.0, 0.0)
        return {"tasks_per_s_watched": statistics.median(runs["watched"]),
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
        f"| load average (1 min) before the run | {r['load_before']:.2f} |",
    ])


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 10
    print(f"bench.observability: {rounds} paired rounds, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    result = paired(rounds)
    md = markdown(result)
    print(md)
    print(save("observability", result, md), file=sys.stderr)
