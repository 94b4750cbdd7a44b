"""Dataframes on the session's cluster (``lc.dataframe``): dask.dataframe, bound to the labcluster session.

Every name of ``dask.dataframe`` is here (``read_csv``, ``read_parquet``, ``from_pandas``, ``concat``...): the
sources make sure a session exists first (``lc.init()``'s cluster, started on first use as tasks do), and the
session's client is Dask's default, so ``.compute()``, ``.persist()``, groupby, merge and shuffle run on the same
cluster as tasks, actors and Datasets, with no second client. Their tasks are in the same records: each in the
stage of its dataframe operation (``read-csv``, ``shuffle-transfer``, ``groupby-agg``...), so the lineage's stage
view of a groupby shows its shuffle as a boundary, and the timeline colours by operation.

``lc.resources(num_gpus=1)`` around a ``compute`` or ``persist`` runs that computation's tasks on workers with those
resources (a GPU step of a dataframe pipeline: persist what comes before it, then compute the step in the block).

>>> import labcluster as lc                                                       # doctest: +SKIP
>>> df = lc.dataframe.from_pandas(pandas.DataFrame({"k": [1, 2, 1], "v": [1, 2, 3]}), npartitions=2)  # doctest: +SKIP
>>> df.groupby("k").v.sum().compute().to_dict()                               # doctest: +SKIP
{1: 4, 2: 2}
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dask.dataframe as _dd

from ..api.start import current_session

#: the sources that start the session before they read: what they read runs on its cluster
_SOURCES = ("from_array", "from_dask_array", "from_delayed", "from_dict", "from_map", "from_pandas", "read_csv",
            "read_fwf", "read_hdf", "read_json", "read_orc", "read_parquet", "read_sql", "read_sql_query",
            "read_sql_table", "read_table")

__all__ = sorted({*_SOURCES, "DataFrame", "Series", "concat", "from_dataset", "merge", "to_dataset"})


def _bound(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def source(*args: Any, **kwargs: Any) -> Any:
        current_session()  # starts the default local cluster when there is none, as submitting a task does
        return fn(*args, **kwargs)

    source.__doc__ = (f"``dask.dataframe.{fn.__name__}`` on the labcluster session's cluster.\n\n"
                      + (fn.__doc__ or ""))
    return source


def from_dataset(ds: Any, *, mode: str | None = None) -> Any:
    """A Dataset as a dask dataframe, a partition per block, without collecting it (``Dataset.to_dask()``)."""
    return ds.to_dask(mode=mode)


def to_dataset(df: Any) -> Any:
    """A dask dataframe as a Dataset, a block per partition, without collecting it (``lc.data.from_dask``)."""
    from ..data import from_dask

    return from_dask(df)


def __getattr__(name: str) -> Any:
    value = getattr(_dd, name)  # AttributeError names dask.dataframe, which is what is missing
    out = _bound(value) if name in _SOURCES else value
    globals()[name] = out
    return out


def __dir__() -> list[str]:
    return sorted({*globals(), *dir(_dd)})
