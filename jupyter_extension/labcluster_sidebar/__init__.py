"""labcluster's JupyterLab sidebar, a prebuilt (federated) JupyterLab 4 extension. Its server side is
``labcluster.server`` in the ``labcluster`` package."""

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "labcluster-sidebar"}]
