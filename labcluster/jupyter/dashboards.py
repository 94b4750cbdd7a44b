"""``lc.dashboard(page)``: one of labcluster's dashboard pages in a notebook cell.

The pages themselves are bokeh documents served by the scheduler's dashboard server (``individual-labcluster-*``).
A notebook page never talks to that port: inside a Jupyter server with jupyter-server-proxy, the view is an
``<iframe>`` of ``<base_url>proxy/<port>/individual-labcluster-<page>``, which the Jupyter server serves behind its
own authentication (its token never lands in the output), and which keeps updating while other cells run.
Elsewhere (nbconvert, a plain IPython, a scheduler on another machine) it is a static snapshot made now, and says
so. Importing this module imports neither IPython nor bokeh.

>>> view = DashboardView("actors", port=8787, proxy_base="/")
>>> view.live_url
'/proxy/8787/individual-labcluster-actors'
"""

from __future__ import annotations

import html
import importlib.util
import os

PAGES = ("resources", "timeline", "lineage", "actors")


def proxy_base() -> str | None:
    """The Jupyter server's base URL when this kernel was started by one that proxies (None: no such server)."""
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    if os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
        return os.environ["JUPYTERHUB_SERVICE_PREFIX"].rstrip("/") + "/"
    if os.environ.get("JPY_SESSION_NAME") or os.environ.get("LABCLUSTER_JUPYTER_BASE_URL"):
        return os.environ.get("LABCLUSTER_JUPYTER_BASE_URL", "/")
    return None


class DashboardView:
    """A dashboard page as a notebook shows it: live through the Jupyter server, or a snapshot."""

    def __init__(self, page: str, *, port: int | None, proxy_base: str | None, local: bool = True,
                 direct_url: str | None = None) -> None:
        if page not in PAGES:
            raise ValueError(f"lc.dashboard: no page {page!r}; the pages are {', '.join(PAGES)}")
        self.page, self.port, self.proxy_base, self.local, self.direct_url = page, port, proxy_base, local, direct_url

    @property
    def live_url(self) -> str | None:
        """The page's URL through the Jupyter server (None: it cannot be proxied from here)."""
        if self.port is None or self.proxy_base is None or not self.local:
            return None
        return f"{self.proxy_base}proxy/{self.port}/individual-labcluster-{self.page}"

    def __repr__(self) -> str:
        where = self.live_url or self.direct_url or "no dashboard server"
        return f"DashboardView({self.page!r}, {where})"

    def _repr_html_(self) -> str:
        url = self.live_url
        if url is not None:
            return (f"<iframe src='{html.escape(url)}' title='labcluster {self.page}' "
                    f"style='width:100%;height:460px;border:1px solid #ddd'></iframe>")
        why = ("the scheduler has no dashboard (lc.init(include_dashboard=False))" if self.port is None else
               "no Jupyter server proxies this kernel's cluster (pip install jupyter-server-proxy and run this in "
               "JupyterLab)" if self.local else "the scheduler runs on another machine")
        link = (f" The live page: <a href='{html.escape(self.direct_url)}' target='_blank'>"
                f"{html.escape(self.direct_url)}</a>." if self.direct_url else "")
        return (f"<div><em>labcluster {html.escape(self.page)}: a static snapshot, not live: "
                f"{html.escape(why)}.</em>{link}</div>{snapshot(self.page)}")


def snapshot(page: str) -> str:
    """The page's content now, as plain HTML (no network, no bokeh server)."""
    import labcluster as lc

    if page == "actors":
        return str(lc.list_actors()._repr_html_())
    if page == "timeline":  # a Figure: bokeh's inline resources, no network
        return lc.timeline_figure()._repr_html_()
    if page == "lineage":  # the tasks by function and state: what the stage view aggregates
        return str(lc.summary()._repr_html_())
    from ..cluster.info import LIVE_STYLE, live_html

    return LIVE_STYLE + live_html(lc.current_session())


def dashboard(page: str = "resources") -> DashboardView:
    """Show a dashboard page (``resources``, ``timeline``, ``lineage``, ``actors``) in a notebook cell: live through
    the Jupyter server where one proxies it, else a snapshot that says so.

    >>> lc.dashboard("timeline")                       # doctest: +SKIP
    """
    import labcluster as lc

    session = lc.current_session()
    from ..api.session import dashboard_port

    port = dashboard_port(session.client)
    host = session.address.split("://")[-1].rsplit(":", 1)[0]
    local = host in ("127.0.0.1", "localhost", "::1") or session.owns_cluster
    link = session.dashboard_link
    direct = f"{link.rsplit('/', 1)[0]}/individual-labcluster-{page}" if link else None
    return DashboardView(page, port=port, proxy_base=proxy_base(), local=local, direct_url=direct)

