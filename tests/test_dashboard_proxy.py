"""The live dashboard in a notebook is reached through the Jupyter server's authenticated proxy, never directly.

A real Jupyter server (a subprocess with a random token, private config/runtime/data dirs; jupyter-server-proxy
enabled by the config file its package installs under the venv's ``etc/jupyter``), a real labcluster cluster
(process workers, a dashboard on a random loopback port), real HTTP and a real headless Chromium:

- ``<server><base_url>proxy/<port>/individual-labcluster-timeline`` refuses a request without the token (page and
  websocket alike) and serves the bokeh page with it;
- after logging in through the server's login form, Chromium renders the page and sees it update, its websocket
  going through the proxy, no request going to the dashboard port itself, and the token in no URL;
- the iframe ``lc.dashboard("timeline")._repr_html_()`` gives, put into a page of the server's origin as a
  notebook output is, loads that same page and updates; the token appears nowhere in what labcluster shows.

Both with the server at ``/`` and under a JupyterHub-style prefix (``/user/alice/``, where the kernel gets
``JUPYTERHUB_SERVICE_PREFIX``). Screenshots go under a pytest tmp path; ``pytest -s`` prints their paths.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

import labcluster as lc
from labcluster.api.session import dashboard_port
from labcluster.jupyter.dashboards import DashboardView

HAS_PROXY = importlib.util.find_spec("jupyter_server_proxy") is not None
PAGE = "timeline"
ROUTE = f"individual-labcluster-{PAGE}"

pytestmark = pytest.mark.skipif(not HAS_PROXY, reason="jupyter-server-proxy is not installed "
                                "(pip install 'jupyter-server-proxy>=4.1.1'): nothing serves /proxy/<port>/")


@lc.remote
def decode(i: int) -> int:
    time.sleep(0.05)
    return i


@lc.remote(num_gpus=1)
def infer(x: int) -> int:
    time.sleep(0.02)
    return 2 * x


# -- the cluster, its workload, the Jupyter server ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster() -> Iterator[lc.Session]:
    lc.shutdown()
    session = lc.init(num_cpus=2, num_gpus=1, simulate_gpus=True, dashboard_address="127.0.0.1:0")
    yield session
    lc.shutdown()


@pytest.fixture(scope="module")
def port(cluster: lc.Session) -> int:
    found = dashboard_port(cluster.client)
    assert found is not None, "the scheduler has no dashboard"
    return found


@pytest.fixture(scope="module")
def workload(cluster: lc.Session) -> Iterator[None]:
    """Staged CPU -> simulated-GPU tasks, over and over, while the pages are watched: the timeline keeps moving."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                with lc.stage("decode"):
                    parts = [decode.remote(i) for i in range(4)]
                with lc.stage("infer"):
                    out = [infer.remote(p) for p in parts]
                assert lc.get(out, timeout=60) == [0, 2, 4, 6]
                stop.wait(0.3)  # a few rounds a second: the page moves, and two cores are left for the browser
        except BaseException as e:  # reported by the fixture, not lost in the thread
            errors.append(e)

    thread = threading.Thread(target=run, name="proxy-workload", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the workload did not stop within 60 s"
    assert not errors, errors


@dataclass(frozen=True)
class JupyterServer:
    """A running ``jupyter server`` subprocess: its origin (``http://127.0.0.1:<port>``), base URL and token."""

    origin: str
    base_url: str
    token: str
    log: Path

    def url(self, path: str) -> str:
        """``path`` (relative to the base URL, no leading slash) on this server."""
        return f"{self.origin}{self.base_url}{path}"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """GET without following redirects: (status, body, headers)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return int(response.status), response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace"), dict(e.headers)


def _wait_for_api(proc: subprocess.Popen[bytes], server: JupyterServer, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter server exited with {proc.returncode}:\n{server.log.read_text()[-4000:]}")
        try:
            if _get(server.url("api"))[0] == 200:  # /api answers without auth: the version
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"jupyter server did not answer {server.url('api')} within {timeout:g} s:\n"
                         f"{server.log.read_text()[-4000:]}")


def _stop(pid: int, proc: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module", params=[pytest.param("/", id="base-url-root"),
                                        pytest.param("/user/alice/", id="base-url-hub-prefix")])
def jupyter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A real Jupyter server on a free loopback port, its token random, its config/runtime/data dirs private."""
    base_url = str(request.param)
    home = tmp_path_factory.mktemp("jupyter")
    root = home / "root"
    root.mkdir()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data")}
    env.pop("JUPYTER_TOKEN", None)
    port = free_port()
    server = JupyterServer(f"http://127.0.0.1:{port}", base_url, secrets.token_hex(24), home / "server.log")
    with server.log.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={server.token}",
             f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={root}", "--no-browser", "--allow-root"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_api(proc, server)
        yield server
    finally:
        _stop(proc.pid, proc)


@pytest.fixture
def view(jupyter: JupyterServer, port: int, monkeypatch: pytest.MonkeyPatch) -> DashboardView:
    """``lc.dashboard(PAGE)`` as a kernel started by this server computes it (JupyterHub sets the prefix)."""
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.delenv("LABCLUSTER_JUPYTER_BASE_URL", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "notebook.ipynb")  # what a Jupyter server gives every kernel
    if jupyter.base_url != "/":
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", jupyter.base_url.rstrip("/"))
    shown = lc.dashboard(PAGE)
    assert shown.port == port
    return shown


# -- HTTP: refused without the token, served with it ---------------------------------------------------------------

def test_the_view_points_at_the_proxy_under_the_server_base_url(view: DashboardView, jupyter: JupyterServer,
                                                                 port: int) -> None:
    assert view.live_url == f"{jupyter.base_url}proxy/{port}/{ROUTE}"
    assert view.live_url == DashboardView(PAGE, port=port, proxy_base=jupyter.base_url).live_url
    markup = view._repr_html_()
    assert f"src='{view.live_url}'" in markup and "<iframe" in markup
    for shown in (markup, repr(view), DashboardView(PAGE, port=port, proxy_base="/")._repr_html_()):
        assert jupyter.token not in shown  # the token never lands in an output


@pytest.mark.parametrize(("auth", "expected"), [
    pytest.param(None, "refused", id="no-token"),
    pytest.param("wrong", "refused", id="wrong-token"),
    pytest.param("right", "served", id="right-token"),
])
def test_proxied_page_needs_the_token(jupyter: JupyterServer, port: int, auth: str | None, expected: str) -> None:
    headers = {} if auth is None else {"Authorization": f"token {jupyter.token if auth == 'right' else 'nope'}"}
    status, body, response_headers = _get(jupyter.url(f"proxy/{port}/{ROUTE}"), headers)
    if expected == "served":
        assert status == 200, (status, body[:500])
        assert "Bokeh" in body and "labcluster: task timeline" in body  # the scheduler's bokeh page itself
        assert jupyter.token not in body
    else:
        # a browser is sent to the login page, an API client gets 403: either way the page is not served
        assert status == 403 or (status == 302 and "/login" in response_headers.get("Location", "")), status
        assert "Bokeh" not in body


def _upgrade(jupyter: JupyterServer, path: str, headers: dict[str, str]) -> int:
    """Send a websocket upgrade request; the status line's code (101: the upgrade was accepted)."""
    connection = http.client.HTTPConnection(jupyter.origin.removeprefix("http://"), timeout=30)
    try:
        connection.request("GET", f"{jupyter.base_url}{path}", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(), **headers})
        return int(connection.getresponse().status)
    finally:
        connection.close()


def test_proxied_websocket_needs_the_token(jupyter: JupyterServer, port: int) -> None:
    """The websocket the page updates through is behind the same authentication (jupyter-server-proxy >= 4.1.1)."""
    status = _upgrade(jupyter, f"proxy/{port}/{ROUTE}/ws", {"Origin": jupyter.origin})
    assert status in (302, 403), status


# -- a real browser, logged in -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-proxy-screenshots")


@dataclass
class Traffic:
    """Every URL the browser asked for (requests and websockets), to check where they went."""

    requests: list[str]
    websockets: list[str]


@pytest.fixture
def logged_in(browser: Any, jupyter: JupyterServer, port: int) -> Iterator[tuple[Any, Traffic]]:
    """A fresh browser context that opens the proxied page, is sent to the server's login form instead, types the
    token there (as a user does) and is sent on (``next=``) to the page."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        traffic = Traffic([], [])
        page.on("request", lambda r: traffic.requests.append(r.url))
        page.on("websocket", lambda ws: traffic.websockets.append(ws.url))
        target = f"{jupyter.base_url}proxy/{port}/{ROUTE}"
        page.goto(jupyter.origin + target, timeout=60_000)
        assert page.url == jupyter.url("login?next=" + urllib.parse.quote(target, safe="")), page.url
        assert page.evaluate("() => window.Bokeh === undefined")  # not logged in: no page, no document
        field = page.get_by_role("textbox", name="Password or token:")  # (the form below it sets a password)
        field.fill(jupyter.token)
        with page.expect_navigation(url=jupyter.origin + target, timeout=60_000):
            field.press("Enter")
        yield page, traffic
    finally:
        context.close()


#: the newest bar of the timeline's source (``key`` and ``left`` of the last row), or null before the first
NEWEST_BAR = """() => {
  if (window.Bokeh === undefined || Bokeh.documents.length === 0) return null;
  const columns = m => m.data instanceof Map ? m.data : new Map(Object.entries(m.data));
  const source = [...Bokeh.documents[0].all_models].find(m => m.type === "ColumnDataSource" && columns(m).has("lane"));
  if (source === undefined) return null;
  const data = columns(source);
  const keys = Array.from(data.get("key"));
  return keys.length === 0 ? null : [keys[keys.length - 1], Array.from(data.get("left")).pop()];
}"""


def wait_for(frame: Any, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g} s on {frame.url}")
        time.sleep(0.25)


def renders_and_updates(frame: Any) -> tuple[Any, Any]:
    """The bokeh document renders in ``frame`` (a page or an iframe) and its newest bar changes: the two reads."""
    frame.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0", timeout=60_000)
    frame.locator("text=labcluster: task timeline").first.wait_for(timeout=60_000)  # pierces bokeh's shadow DOM
    first = wait_for(frame, lambda: frame.evaluate(NEWEST_BAR), "a bar on the timeline")
    second = wait_for(frame, lambda: (bar := frame.evaluate(NEWEST_BAR)) != first and bar, f"a bar after {first}")
    return first, second


def screenshot(page: Any, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), timeout=90_000)
    assert path.stat().st_size > 10_000
    print(f"screenshot of {name}: {path}")
    return path


def test_browser_renders_and_updates_through_the_proxy(logged_in: tuple[Any, Traffic], jupyter: JupyterServer,
                                                       port: int, workload: None, shots: Path,
                                                       request: pytest.FixtureRequest) -> None:
    page, traffic = logged_in
    assert page.url == jupyter.url(f"proxy/{port}/{ROUTE}")
    first, second = renders_and_updates(page)
    assert first != second  # the document moved: the bokeh server pushed changes over the websocket
    proxied_ws = f"ws://127.0.0.1:{jupyter.origin.rsplit(':', 1)[1]}{jupyter.base_url}proxy/{port}/{ROUTE}/ws"
    assert any(url.startswith(proxied_ws) for url in traffic.websockets), traffic.websockets
    direct = f"127.0.0.1:{port}"
    assert not [u for u in traffic.requests + traffic.websockets if urllib.parse.urlsplit(u).netloc == direct]
    assert not [u for u in traffic.requests + traffic.websockets if jupyter.token in u]  # the cookie, not the token
    screenshot(page, shots, f"proxied-{PAGE}-{request.node.callspec.id}")


def test_notebook_iframe_loads_the_live_page(logged_in: tuple[Any, Traffic], jupyter: JupyterServer, port: int,
                                             view: DashboardView, workload: None, shots: Path,
                                             request: pytest.FixtureRequest) -> None:
    """The output's markup, put into a page of the server's origin as JupyterLab puts a cell's HTML output:
    its iframe's (relative) src resolves to the proxied page, which renders and updates inside the iframe."""
    page, traffic = logged_in
    markup = view._repr_html_()
    assert jupyter.token not in markup
    # JupyterLab's own page sends this policy (frames allowed, from anywhere 'self' frames them); the API's pages
    # forbid frames ("default-src 'none'"), the /files/ ones are sandboxed: neither is where outputs are shown
    policy = _get(jupyter.url("lab"), {"Authorization": f"token {jupyter.token}"})[2]["Content-Security-Policy"]
    assert "default-src" not in policy and "sandbox" not in policy, policy
    host = jupyter.url("lab/labcluster-test-output")  # answered by the browser itself: a page of the server's origin

    def output_page(route: Any) -> None:
        route.fulfill(status=200, content_type="text/html", headers={"Content-Security-Policy": policy},
                      body=f"<!doctype html><html><body><div class='jp-OutputArea-output'>{markup}</div></body></html>")

    page.route(host, output_page)
    page.goto(host, timeout=60_000)
    page.locator("iframe").wait_for(timeout=30_000)
    frame = wait_for(page, lambda: next((f for f in page.frames if "/proxy/" in f.url), None), "the iframe's page")
    assert frame.url == jupyter.origin + str(view.live_url)
    first, second = renders_and_updates(frame)
    assert first != second
    assert not [u for u in traffic.requests + traffic.websockets if jupyter.token in u]
    screenshot(page, shots, f"notebook-iframe-{PAGE}-{request.node.callspec.id}")
