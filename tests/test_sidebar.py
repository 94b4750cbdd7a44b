"""The JupyterLab sidebar (jupyter_extension/, labcluster-sidebar) in a real ``jupyter lab`` driven in headless
Chromium: a kernel's cluster appears, one is started from the panel, scaled, its dashboard opened as a tab and
seen rendering, its connect code inserted into a notebook and run, and it is stopped. Screenshots of each step go
to ``$LABCLUSTER_ARTIFACTS`` (default: the test's temporary directory).

And the model the TypeScript panel reads (src/model.ts) mirrors the server's (labcluster/server/manager.py) field
for field."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from test_dashboard_proxy import renders_and_updates

from labcluster.cluster import registry
from labcluster.server import manager

EXTENSION = Path(__file__).resolve().parents[1] / "jupyter_extension"


def _interface_fields(source: str, name: str) -> list[str]:
    body = re.search(r"export interface " + name + r" \{(.*?)\n\}", source, re.S)
    assert body is not None, name
    return re.findall(r"^\s+(\w+)\??:", body.group(1), re.M)


def test_the_panels_model_mirrors_the_servers_field_for_field() -> None:
    source = (EXTENSION / "src" / "model.ts").read_text()
    assert _interface_fields(source, "IClusterModel") == list(manager.MODEL_FIELDS)
    assert _interface_fields(source, "ICreateRequest") == list(manager.CREATE_FIELDS)
    live = manager._unreachable()
    assert _interface_fields(source, "ITotals") == list(live["totals"])
    assert _interface_fields(source, "IUse") == list(live["use"])


pytestmark_browser = pytest.mark.skipif(
    importlib.util.find_spec("labcluster_sidebar") is None,
    reason="the sidebar is not installed: pip install ./jupyter_extension (it builds with Node; .ci/run does it)")


#: the notebook's second cell: tasks for ~30 s in a thread (the cell returns at once), for a timeline to show
WORKLOAD = """import threading, time
@lc.remote
def tick(i):
    time.sleep(0.05)
    return i
threading.Thread(target=lambda: [lc.get(tick.remote(i)) for i in range(500)], daemon=True).start()
print('working')"""


@contextlib.contextmanager
def _jupyter_lab(home: Path, server_extension: bool = True) -> Iterator[dict[str, Any]]:
    """A real ``jupyter lab`` on a free loopback port with a random token and private config and runtime dirs;
    stopped by its PID."""
    root = home / "root"
    root.mkdir(parents=True)
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "first", "metadata": {},
                           "outputs": [], "source": "print('ready')"},
                          {"cell_type": "code", "execution_count": None, "id": "work", "metadata": {},
                           "outputs": [], "source": WORKLOAD}],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    (root / "user.ipynb").write_text(json.dumps(notebook))
    settings = home / "settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps({"@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false", "checkForUpdates": False}}))
    config = home / "config"
    config.mkdir()
    # the server extension on (or off), whatever the package's own config file says
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"labcluster.server": server_extension}}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    env.pop("JUPYTER_TOKEN", None)
    port, token = free_port(), secrets.token_hex(24)
    log = (home / "lab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--no-browser", "--allow-root", f"--LabApp.app_settings_dir={settings}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    import urllib.request

    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (home / "lab.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "jupyter lab did not answer within 90 s"
                time.sleep(0.3)
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "root": root, "log": home / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _jupyter_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def kernel_cluster() -> Iterator[Any]:
    """A cluster a notebook's kernel started: a real kernel, told its notebook's path as Jupyter Server does."""
    from test_kernel import Kernel

    kernel = Kernel(env={"JPY_SESSION_NAME": "owner.ipynb"})
    out = kernel.run("import labcluster as lc\nsession = lc.init(num_cpus=1, dashboard_address='127.0.0.1:0')\n"
                     "print(session.address)")
    assert out["error"] is None, out
    yield out["stdout"].strip()
    kernel.run("lc.shutdown()")
    kernel.close()


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LABCLUSTER_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytestmark_browser
def test_the_sidebar_lists_starts_scales_opens_connects_and_stops(lab: dict[str, Any], kernel_cluster: str,
                                                                  browser: Any, tmp_path: Path) -> None:
    shots = _artifacts(tmp_path)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab['url']}/lab/tree/user.ipynb?reset&token={lab['token']}")
    page.locator(".jp-Notebook").wait_for(timeout=90_000)
    page.locator('li[data-id="labcluster-sidebar"]').click()
    panel = page.locator("#labcluster-sidebar")
    # the kernel's cluster, named after its notebook
    theirs = panel.locator(".lc-cluster", has_text=kernel_cluster)
    theirs.wait_for(timeout=30_000)
    assert "started by owner.ipynb" in theirs.inner_text()
    page.screenshot(path=str(shots / "sidebar-1-kernel-cluster.png"))

    # a start the server refuses is a readable dialog naming the field and the fix, and starts nothing
    panel.get_by_text("Start cluster").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("label", has_text="Custom resources").locator("input").fill("GPU=1")
    dialog.get_by_role("button", name="Start").click()
    refusal = page.locator(".jp-Dialog", has_text="Could not start the cluster")
    refusal.wait_for(timeout=30_000)
    assert "resources: GPU is not a custom resource: GPUs come with GPU workers" in refusal.inner_text()
    page.screenshot(path=str(shots / "sidebar-2-refused.png"))
    refusal.get_by_role("button", name="Close").click()
    refusal.wait_for(state="detached", timeout=10_000)
    assert [e["address"] for e in registry.entries()] == [kernel_cluster]  # the refused start started nothing

    # start one from the panel: a CPU worker and a simulated GPU
    panel.get_by_text("Start cluster").click()
    dialog.locator("label", has_text="Name").locator("input").fill("from the panel")
    dialog.locator("label", has_text="CPU workers").locator("input").fill("1")
    dialog.locator("label", has_text="Threads each").locator("input").fill("1")
    dialog.locator("label", has_text="GPU workers").locator("input").fill("1")
    page.screenshot(path=str(shots / "sidebar-3-start-form.png"))
    dialog.get_by_role("button", name="Start").click()
    ours = panel.locator(".lc-cluster", has_text="from the panel")
    ours.wait_for(timeout=90_000)
    text = ours.inner_text()
    assert "started from this panel" in text and "GPU (simulated)" in text, text

    # scale its CPU group to 2 workers
    ours.get_by_role("button", name="scale").click()
    dialog.locator("select").select_option("cpu")
    dialog.locator("label", has_text="Workers").locator("input").fill("2")
    dialog.get_by_role("button", name="Scale").click()
    panel.locator(".lc-cluster", has_text="cpu: 2 \u00d7").wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "sidebar-4-scaled.png"))

    # its resources dashboard as a Lab tab, through the server's proxy, rendering
    ours.get_by_role("button", name="resources").click()
    tab = page.locator(".lm-TabBar-tab", has_text="labcluster: resources (from the panel)")
    tab.wait_for(timeout=30_000)
    frame = page.frame_locator(".jp-MainAreaWidget iframe").first
    frame.locator(".bk-Column, .bk-Row, .bk-root").first.wait_for(timeout=60_000)
    assert "/proxy/" in page.locator(".jp-MainAreaWidget iframe").first.get_attribute("src")
    page.screenshot(path=str(shots / "sidebar-5-dashboard-tab.png"))

    # insert its connect code into the notebook, and run it there
    page.locator(".lm-TabBar-tab", has_text="user.ipynb").click()
    page.locator(".jp-Cell").first.click()
    ours.get_by_role("button", name="insert connect code").click()
    cell = page.locator(".jp-Cell", has_text="lc.init(address=").first
    cell.wait_for(timeout=10_000)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    cell.locator(".jp-OutputArea-output").first.wait_for(timeout=90_000)
    out = cell.locator(".jp-OutputArea").inner_text()
    assert "connected" in out.lower(), out
    page.screenshot(path=str(shots / "sidebar-6-connected.png"))

    # tasks on it, and its timeline dragged from the panel to the main area's left edge: a split of its own there
    work = page.locator(".jp-Cell", has_text="def tick").first
    work.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    work.locator(".jp-OutputArea-output", has_text="working").wait_for(timeout=30_000)
    dock = page.locator("#jp-main-dock-panel")
    bars = dock.locator(".lm-DockPanel-tabBar")
    before = bars.count()
    source = ours.get_by_role("button", name="timeline").bounding_box()
    target = dock.bounding_box()
    assert source is not None and target is not None
    page.mouse.move(source["x"] + source["width"] / 2, source["y"] + source["height"] / 2)
    page.mouse.down()
    page.mouse.move(source["x"] + 30, source["y"] + 10, steps=5)
    page.mouse.move(target["x"] + 8, target["y"] + target["height"] / 2, steps=20)
    page.mouse.up()
    timeline = page.locator(".lm-TabBar-tab", has_text="labcluster: timeline (from the panel)")
    timeline.wait_for(timeout=30_000)
    assert bars.count() == before + 1  # a split, not a tab beside another
    notebook_tab = page.locator(".lm-TabBar-tab", has_text="user.ipynb").bounding_box()
    timeline_box = timeline.bounding_box()
    assert notebook_tab is not None and timeline_box is not None and timeline_box["x"] < notebook_tab["x"]
    frame = _frame(page, "individual-labcluster-timeline")
    first, second = renders_and_updates(frame)
    assert first != second  # it renders, and new tasks' bars arrive
    page.screenshot(path=str(shots / "sidebar-7-timeline-dragged-into-a-split.png"))

    # stop it: the card goes
    ours.get_by_role("button", name="stop").click()
    dialog.get_by_role("button", name="Stop").click()
    ours.wait_for(state="detached", timeout=60_000)
    page.screenshot(path=str(shots / "sidebar-8-stopped.png"))
    assert panel.locator(".lc-cluster", has_text=kernel_cluster).count() == 1
    assert not errors, errors
    assert lab["token"] not in panel.inner_text() and lab["token"] not in out
    # the token is in no log line (the server's banner masks a token it was given: "?token=...")
    assert lab["token"] not in lab["log"].read_text()
    page.close()


@pytestmark_browser
def test_jupyter_lists_the_prebuilt_extension_enabled_and_the_server_extension_on() -> None:
    env = {**os.environ}
    env.pop("JUPYTER_CONFIG_DIR", None)
    labextensions = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], env=env,
                                   capture_output=True, text=True, timeout=120)
    line = next((ln for ln in (labextensions.stdout + labextensions.stderr).splitlines()
                 if "labcluster-sidebar" in ln), "")
    assert "enabled" in line and "OK" in line, labextensions.stdout + labextensions.stderr
    servers = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"], env=env,
                             capture_output=True, text=True, timeout=120)
    line = next((ln for ln in (servers.stdout + servers.stderr).splitlines() if "labcluster.server" in ln), "")
    assert "enabled" in line, servers.stdout + servers.stderr


def _frame(page: Any, route: str, timeout: float = 60.0) -> Any:
    """The (i)frame of ``page`` showing the dashboard page ``route``.

    It waits with Playwright's own ``wait_for_timeout``: its sync API updates ``page.frames`` and their URLs only
    while one of its calls runs, so a ``time.sleep`` loop saw a frame that had long navigated as it was (URL '')
    whenever the navigation finished after the last call before this one (under load: the suite, a CI run)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = next((f for f in page.frames if route in f.url), None)
        if frame is not None:
            return frame
        if time.monotonic() >= deadline:  # say what the iframes were told to load, not only what they show
            sources = page.locator("iframe").evaluate_all("els => els.map(e => e.src)")
            raise AssertionError(f"no frame shows {route}: frames {[f.url for f in page.frames]}, iframe src "
                                 f"{sources}")
        page.wait_for_timeout(250)


@pytestmark_browser
def test_the_sidebar_in_notebook_7_lists_and_opens_dashboards_in_browser_tabs(lab: dict[str, Any],
                                                                              kernel_cluster: str, browser: Any,
                                                                              tmp_path: Path) -> None:
    """Notebook 7 has one document a page and no dock: the panel is in its left sidebar (View > Left Sidebar), and
    a dashboard opens in a browser tab of its own, through the same authenticated proxy."""
    pytest.importorskip("notebook", minversion="7")
    shots = _artifacts(tmp_path)
    context = browser.new_context(viewport={"width": 1300, "height": 850})
    page = context.new_page()
    ours_failed: list[str] = []  # Notebook 7's own settings code logs a TypeError here; ours must log none
    page.on("pageerror", lambda e: ours_failed.append(str(e.stack)) if "labcluster" in str(e.stack) else None)
    page.goto(f"{lab['url']}/notebooks/user.ipynb?token={lab['token']}")
    page.locator(".jp-Notebook").wait_for(timeout=90_000)
    page.get_by_role("menuitem", name="View").click()
    page.locator(".lm-Menu-item", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-item", has_text="Show labcluster clusters").click()
    panel = page.locator("#labcluster-sidebar")
    theirs = panel.locator(".lc-cluster", has_text=kernel_cluster)
    theirs.wait_for(timeout=30_000)
    assert "started by owner.ipynb" in theirs.inner_text()
    page.screenshot(path=str(shots / "sidebar-notebook7-1-panel.png"))
    with context.expect_page(timeout=30_000) as opened:
        theirs.get_by_role("button", name="timeline").click()
    tab = opened.value
    tab.wait_for_load_state()
    assert "/proxy/" in tab.url and "individual-labcluster-timeline" in tab.url and lab["token"] not in tab.url
    tab.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0", timeout=60_000)
    tab.locator("text=labcluster: task timeline").first.wait_for(timeout=60_000)
    tab.screenshot(path=str(shots / "sidebar-notebook7-2-dashboard-tab.png"))
    assert not ours_failed, ours_failed
    context.close()


@pytestmark_browser
def test_a_server_without_the_extension_is_said_so_in_the_panel(tmp_path: Path, browser: Any) -> None:
    with _jupyter_lab(tmp_path / "lab", server_extension=False) as bare:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(f"{bare['url']}/lab/tree/user.ipynb?reset&token={bare['token']}")
        page.locator(".jp-Notebook").wait_for(timeout=90_000)
        page.locator('li[data-id="labcluster-sidebar"]').click()
        message = page.locator("#labcluster-sidebar .lc-message.lc-error")
        message.wait_for(timeout=30_000)
        assert "server extension is not running" in message.inner_text()
        assert "jupyter server extension enable labcluster.server" in message.inner_text()
        page.screenshot(path=str(_artifacts(tmp_path) / "sidebar-no-server-extension.png"))
        page.close()
