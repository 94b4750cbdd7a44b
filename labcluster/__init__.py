"""labcluster: Jupyter-first interactive distributed computing on Dask, with Ray's API.

>>> import labcluster as lc
>>> @lc.remote
... def square(x):
...     return x * x
>>> with lc.init(num_cpus=2, processes=False):
...     lc.get([square.remote(i) for i in range(4)])
[0, 1, 4, 9]

``import labcluster`` is light: it registers labcluster's settings and nothing more; each public name imports its
module on first use, so ``lc.init()`` can start the cluster's processes while this one is still importing Dask.
"""

import importlib as _importlib
from typing import TYPE_CHECKING

from . import config as _config  # registers labcluster.yaml with dask.config

__version__ = "0.1.0"

#: public name -> the module that defines it
_HOME = {
    "ActorClass": "api.actors", "ActorHandle": "api.actors", "get_actor": "api.actors", "kill": "api.actors",
    "list_actors": "api.actors", "method": "api.actors",
    "LineageGraph": "api.lineage", "lineage": "api.lineage",
    "cancel": "api.objects", "get": "api.objects", "put": "api.objects", "wait": "api.objects",
    "PlacementGroup": "api.placement", "placement_group": "api.placement",
    "remove_placement_group": "api.placement",
    "list_tasks": "api.history", "summary": "api.history", "timeline": "api.history",
    "timeline_figure": "api.history",
    "ObjectRef": "api.refs", "compare": "data.compare", "dashboard": "jupyter.dashboards",
    "resources": "api.collection_resources",
    "RemoteFunction": "api.remote", "remote": "api.remote", "stage": "api.submit",
    "Session": "api.session", "is_initialized": "api.session", "shutdown": "api.session",
    "current_session": "api.start", "init": "api.start",
    "RuntimeContext": "api.state", "available_resources": "api.state", "cluster_resources": "api.state",
    "get_gpu_ids": "api.state", "get_runtime_context": "api.state", "nodes": "api.state",
    "WorkerGroup": "cluster.groups",
    "data": "", "dataframe": "", "exceptions": "", "spark": "", "util": "",
}

__all__ = [
    "ActorClass",
    "ActorHandle",
    "LineageGraph",
    "ObjectRef",
    "PlacementGroup",
    "RemoteFunction",
    "RuntimeContext",
    "Session",
    "WorkerGroup",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "compare",
    "current_session",
    "dashboard",
    "data",
    "dataframe",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "lineage",
    "list_actors",
    "list_tasks",
    "method",
    "nodes",
    "placement_group",
    "put",
    "remote",
    "remove_placement_group",
    "resources",
    "shutdown",
    "spark",
    "stage",
    "summary",
    "timeline",
    "timeline_figure",
    "util",
    "wait",
]


def load_ipython_extension(shell: object) -> None:
    """``%load_ext labcluster``: the magics, per-cell interrupt and output, the cluster widget (``jupyter/``)."""
    from .jupyter import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell: object) -> None:
    from .jupyter import unload_ipython_extension as unload

    unload(shell)


def _autoload() -> None:
    """Inside a running IPython (already imported: this imports nothing of it), load the extension."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and _config.get("jupyter.autoload"):
        # through IPython's extension manager, so that %unload_ext / %reload_ext know it is loaded
        shell.extension_manager.load_extension(__name__)


_autoload()


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'labcluster' has no attribute {name!r}")
    module = _importlib.import_module(f"{__name__}.{home or name}")
    value = module if not home else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from . import data, dataframe, exceptions, spark, util
    from .api.actors import ActorClass, ActorHandle, get_actor, kill, list_actors, method
    from .api.collection_resources import resources
    from .api.history import list_tasks, summary, timeline, timeline_figure
    from .api.lineage import LineageGraph, lineage
    from .api.objects import cancel, get, put, wait
    from .api.placement import PlacementGroup, placement_group, remove_placement_group
    from .api.refs import ObjectRef
    from .api.remote import RemoteFunction, remote
    from .api.session import Session, is_initialized, shutdown
    from .api.start import current_session, init
    from .api.state import (
        RuntimeContext,
        available_resources,
        cluster_resources,
        get_gpu_ids,
        get_runtime_context,
        nodes,
    )
    from .api.submit import stage
    from .cluster.groups import WorkerGroup
    from .data.compare import compare
    from .jupyter.dashboards import dashboard
