"""``lc.resources(...)``: the resources the tasks of Dask collections (dataframes, bags, arrays) ask for.

Tasks and actors take ``num_cpus`` / ``num_gpus`` / ``resources`` as options; a dataframe's tasks are made by Dask,
so they take them from the block around their ``compute`` or ``persist``. Inside it, every task of what is
computed asks for the resources (Dask's annotations, applied when the graph is sent), so a GPU step runs on GPU
workers only, and one that no worker can ever run fails at once, as a task would.

>>> with lc.resources(num_gpus=1):                                                 # doctest: +SKIP
...     scores = features.map_partitions(score_on_gpu).persist()
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping

import dask.config
from dask.base import annotate

from . import feasibility
from .options import TaskOptions
from .start import current_session


@contextlib.contextmanager
def resources(num_cpus: float | None = None, num_gpus: float | None = None,
              resources: Mapping[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Dask collections computed or persisted inside the block ask for these resources (a GPU step: ``num_gpus=1``,
    which asks for no CPU slot, as GPU tasks do). Yields the resource request."""
    given = {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": dict(resources or {})}
    request = TaskOptions().merged(**{k: v for k, v in given.items() if v is not None}).request()
    feasibility.check(current_session(), request, "lc.resources(...)")
    # Dask's peer-to-peer shuffle places its output partitions without looking at resource restrictions, so a
    # restricted shuffle would wait forever for a worker it cannot use (seen with a GPU step's unique()): inside
    # the block, shuffles are made of tasks, which the restrictions steer like any other
    with warnings.catch_warnings(), annotate(resources=request), \
            dask.config.set({"dataframe.shuffle.method": "tasks"}):
        # dask.dataframe warns that annotations "will be ignored" when a collection is made inside the block;
        # they are not: the client applies them to every task of what is computed here
        warnings.filterwarnings("ignore", message="Dask annotations .* detected")
        yield request
