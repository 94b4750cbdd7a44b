"""labcluster: Jupyter-first interactive distributed computing on Dask, with Ray's API.

>>> import labcluster as lc
>>> @lc.remote
... def square(x):
...     return x * x
>>> with lc.init(num_cpus=2, processes=False):
...     lc.get([square.remote(i) for i in range(4)])
[0, 1, 4, 9]
"""

from . import config as _config  # noqa: F401  (registers labcluster.yaml with dask.config)
from . import exceptions, util
from .api.actors import ActorClass, ActorHandle, get_actor, kill, list_actors
from .api.lineage import LineageGraph, lineage
from .api.objects import cancel, get, put, wait
from .api.placement import PlacementGroup, placement_group, remove_placement_group
from .api.records import list_tasks, summary, timeline, timeline_figure
from .api.refs import ObjectRef
from .api.remote import RemoteFunction, remote, stage
from .api.session import Session, current_session, init, is_initialized, shutdown
from .api.state import (
    RuntimeContext,
    available_resources,
    cluster_resources,
    get_gpu_ids,
    get_runtime_context,
    nodes,
)
from .cluster.groups import WorkerGroup

__version__ = "0.1.0"

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
    "current_session",
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
    "nodes",
    "placement_group",
    "put",
    "remote",
    "remove_placement_group",
    "shutdown",
    "stage",
    "summary",
    "timeline",
    "timeline_figure",
    "util",
    "wait",
]
