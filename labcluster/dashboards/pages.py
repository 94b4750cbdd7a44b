"""The table of labcluster's dashboard pages, and how they join the scheduler's dashboard server.

==================================  =========================  ====================================================
route                               listed as                  shows
==================================  =========================  ====================================================
/individual-labcluster-resources    Labcluster Resources       CPU % and memory per worker; resource slots in use
                                                               against each total (GPU slots of simulated-GPU
                                                               workers say "simulated"); utilisation and memory per
                                                               real GPU, each counted once by UUID, or NVML's state
                                                               in words; placement-group reservations
/individual-labcluster-timeline     Labcluster Timeline        a live lane per worker thread: a bar per task
                                                               attempt or actor call of the last N seconds,
                                                               coloured by stage or function
/individual-labcluster-lineage      Labcluster Lineage         stages (or functions) and what fed what, with lost,
                                                               rebuilt and failed marks; a task-level view of the
                                                               newest tasks
/individual-labcluster-actors       Labcluster Actors          every actor: state, class, worker, restarts left,
                                                               resources, why a dead one died
==================================  =========================  ====================================================

``/individual-plots.json`` names a page after its route (distributed's rule: "Individual Labcluster Resources";
dask-labextension drops the "Individual"). :func:`add_pages` is what labcluster's scheduler plugin calls when it
starts (``labcluster/scheduler/extension.py``), on any scheduler the plugin runs on: the pages are served by the
scheduler's own dashboard server, bound where it binds (127.0.0.1 unless the cluster was started otherwise), next
to distributed's pages, and only read state. A page is a bokeh document with one or more components that follow
distributed's dashboard contract (a ``source``, a ``root`` layout, an ``update()`` called from a periodic callback
every ``labcluster.dashboard.update-interval``). What the updates cost this process (CPU seconds, building the data
and the patches bokeh sends) is counted in :data:`SPENT`: ``bench.observability`` reads it.

>>> sorted(PAGES)[0], PAGES["/individual-labcluster-resources"].title
('/individual-labcluster-actors', 'labcluster: resources')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import config
from ..dask_internals import add_dashboard_pages

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One page: its title, a line saying what it shows, and the components it stacks (built per browser tab)."""

    title: str
    what: str
    components: Callable[[Any], list[Any]]


def _resources(scheduler: Any) -> list[Any]:
    from .gpus import GPUDevices
    from .resources import ResourceSlots, WorkerLoad
    from .tables import PlacementGroupTable

    return [WorkerLoad(scheduler), ResourceSlots(scheduler), GPUDevices(scheduler), PlacementGroupTable(scheduler)]


def _timeline(scheduler: Any) -> list[Any]:
    from .timeline import TaskTimeline

    return [TaskTimeline(scheduler)]


def _lineage(scheduler: Any) -> list[Any]:
    from .lineage import LineageGraph

    return [LineageGraph(scheduler)]


def _actors(scheduler: Any) -> list[Any]:
    from .tables import ActorTable

    return [ActorTable(scheduler)]


PAGES: dict[str, Page] = {
    "/individual-labcluster-resources": Page(
        "labcluster: resources", "CPU and memory per worker, resource slots in use (simulated GPUs marked), GPU "
        "devices (pynvml), placement-group reservations", _resources),
    "/individual-labcluster-timeline": Page(
        "labcluster: task timeline", "a lane per worker thread, a bar per task or actor call of the last seconds, "
        "coloured by stage or function", _timeline),
    "/individual-labcluster-lineage": Page(
        "labcluster: lineage", "stages and what fed what; lost, rebuilt and failed work marked", _lineage),
    "/individual-labcluster-actors": Page(
        "labcluster: actors", "state, class, worker, restarts left and resources of every actor", _actors),
}


#: what the pages' periodic updates cost in this process so far: CPU seconds (the update's own, and bokeh's, which
#: serialises the changes it sends within it) and how many ran; a page's first fill, as it opens, is not counted
SPENT: dict[str, float] = {"cpu": 0.0, "updates": 0}


class Metered:
    """A component whose ``update()`` adds its CPU time to :data:`SPENT` (the rest of the contract passes through)."""

    def __init__(self, component: Any) -> None:
        self.component = component
        self.root = component.root

    def update(self) -> None:
        started = time.thread_time()
        try:
            self.component.update()
        finally:
            SPENT["cpu"] += time.thread_time() - started
            SPENT["updates"] += 1


def build(scheduler: Any, page: Page, doc: Any) -> list[Any]:
    """Fill ``doc`` with ``page``'s components, each updated every ``labcluster.dashboard.update-interval``.
    Returns the components (a test may call their ``update()``)."""
    from bokeh.layouts import column
    from bokeh.models.widgets import Div
    from distributed.dashboard.components import add_periodic_callback
    from distributed.dashboard.components.scheduler import BOKEH_THEME

    components = page.components(scheduler)
    for component in components:
        component.update()
        # distributed's helper: the callback holds the component weakly, so a closed tab frees it
        add_periodic_callback(doc, Metered(component), int(config.seconds("dashboard.update-interval") * 1000))
    header = Div(text=f"<h3 style='margin:4px 0'>{page.title}</h3><span style='color:#555'>{page.what} &middot; "
                      f"read-only, refreshed every {config.seconds('dashboard.update-interval'):g} s</span>",
                 sizing_mode="stretch_width")
    doc.add_root(column(header, *[c.root for c in components], sizing_mode="stretch_width"))
    doc.title = page.title
    doc.theme = BOKEH_THEME
    return components


def _doc_function(scheduler: Any, page: Page) -> Callable[[Any], None]:
    def fill(doc: Any) -> None:
        build(scheduler, page, doc)

    return fill


def add_pages(scheduler: Any) -> list[str]:
    """Serve :data:`PAGES` from ``scheduler``'s dashboard server and list them in ``/individual-plots.json``.
    Returns the routes added: none when the scheduler has no dashboard or serves them already. A dashboard that
    cannot take them (bokeh missing, distributed's internals changed) logs a warning: it must not stop the scheduler
    extension."""
    try:
        routes = add_dashboard_pages(scheduler, {route: _doc_function(scheduler, page)
                                                 for route, page in PAGES.items()})
    except (ImportError, AttributeError, TypeError):  # bokeh missing or too old, or distributed's internals moved
        logger.warning("labcluster's dashboard pages could not be added to the scheduler's dashboard (see "
                       "labcluster/dask_internals.py: add_dashboard_pages)", exc_info=True)
        return []
    if routes:
        logger.debug("labcluster dashboard pages at %s", ", ".join(routes))
    return routes
