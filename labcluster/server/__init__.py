"""labcluster's Jupyter server extension: the REST API the JupyterLab sidebar talks to (``handlers.py``) over a
:class:`~labcluster.server.manager.ClusterManager` (no web code). Above the line: only this package and
``labcluster.jupyter`` import Jupyter, IPython or ipywidgets.

Enabled by ``jupyter-config/jupyter_server_config.d/labcluster.json`` (installed with the package), or by hand:
``jupyter server extension enable labcluster.server``.
"""

from __future__ import annotations

import atexit
from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "labcluster.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from .handlers import routes
    from .manager import ClusterManager

    manager = ClusterManager()
    web_app = server_app.web_app
    web_app.settings["labcluster_manager"] = manager
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
    atexit.register(manager.close)  # the clusters this server started stop with it (their heads also watch it)
    server_app.log.info("labcluster: the sidebar's API is at %slabcluster/api", web_app.settings["base_url"])
