"""Datasets (``lc.data``): one pipeline, run Spark-style (bulk, stage by stage) or Ray-style (pipelined).

Names follow Ray Data: sources here (``range``, ``from_items``, ``read_parquet``...), operators and consumers on
:class:`Dataset`, settings in :class:`DataContext` and ``with lc.data.execution(mode=...)``. A source's
``override_num_blocks=`` says how many blocks it makes; by default Ray Data's rule (``sources.default_blocks``):
200, or a row (file) a block when fewer; ``range`` makes no block under 1 MiB or over 128 MiB, as Ray's does, and so
do the tables (``from_pandas``, ``from_numpy``, ``from_arrow``: Ray keeps each as one block); and at least twice the
cluster's CPU slots (``range(10_000)``: 4 blocks on 2 slots, ``from_items`` of 1,000 rows: 200). As in Ray, the
count is made when the dataset runs: one made before ``lc.init("tcp://...")`` is cut for the cluster it runs on.

>>> import labcluster as lc
>>> with lc.init(num_cpus=2, processes=False):
...     ds = lc.data.range(6).map(lambda r: {"id": r["id"], "even": r["id"] % 2 == 0})
...     ds.filter(lambda r: r["even"]).take_all()
[{'id': 0, 'even': True}, {'id': 2, 'even': True}, {'id': 4, 'even': True}]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..api.boundary import entry
from . import blocks, sources
from .context import MODES, DataContext, execution
from .dataset import Dataset, Materialized
from .grouped import GroupedData
from .stats import DatasetStats

__all__ = [
    "MODES",
    "DataContext",
    "Dataset",
    "DatasetStats",
    "GroupedData",
    "execution",
    "from_arrow",
    "from_dask",
    "from_items",
    "from_numpy",
    "from_pandas",
    "range",
    "read_binary_files",
    "read_csv",
    "read_images",
    "read_json",
    "read_parquet",
    "read_text",
]

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def __dir__() -> list[str]:
    """What ``dir(lc.data)`` and tab completion offer: the public names, not this module's imports."""
    return sorted(__all__)


@entry(inputs=True)
def from_dask(df: Any) -> Dataset:
    """A dask dataframe as a Dataset, a block per partition: the partitions are computed on the cluster and become
    blocks there (nothing is collected in the driver)."""
    from .convert import from_dask as convert

    return Dataset(Materialized(tuple(convert(df)), name="FromDask"))


@entry(inputs=True)
def range(n: int, *, override_num_blocks: int | None = None) -> Dataset:
    """Rows ``{"id": 0}`` ... ``{"id": n - 1}``, made on the workers."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"lc.data.range needs an int >= 0, got {n!r}")
    sources.check_blocks(override_num_blocks, "lc.data.range")
    return Dataset(sources.range_source(n, override_num_blocks))


@entry(inputs=True)
def from_items(items: Sequence[Any], *, override_num_blocks: int | None = None) -> Dataset:
    """Rows from a list: dicts are rows; any other value becomes ``{"item": value}``."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"lc.data.from_items takes a list, got {type(items).__name__}")
    sources.check_blocks(override_num_blocks, "lc.data.from_items")
    # a row a block, as Ray Data's from_items: a short list is often of work items (paths, parameters), each heavy
    return _from_table("FromItems", blocks.from_rows(list(items), "lc.data.from_items"), override_num_blocks,
                       by_size=False)


@entry(inputs=True)
def from_pandas(df: Any, *, override_num_blocks: int | None = None) -> Dataset:
    import pandas as pd

    frames = df if isinstance(df, list) else [df]
    if not all(isinstance(f, pd.DataFrame) for f in frames):
        raise TypeError("lc.data.from_pandas takes a pandas DataFrame (or a list of them)")
    table = blocks.concat([pa.Table.from_pandas(f, preserve_index=False) for f in frames])
    return _from_table("FromPandas", table, override_num_blocks or (len(frames) if isinstance(df, list) else None))


@entry(inputs=True)
def from_numpy(arr: np.ndarray | dict[str, np.ndarray], *, override_num_blocks: int | None = None) -> Dataset:
    """Rows of an array (column ``data``; an n-d array gives a row per first index) or of a dict of arrays."""
    columns = arr if isinstance(arr, dict) else {"data": arr}
    if not all(isinstance(v, np.ndarray) for v in columns.values()):
        raise TypeError("lc.data.from_numpy takes a numpy array or a dict of them")
    return _from_table("FromNumpy", blocks.to_block(columns, "lc.data.from_numpy"), override_num_blocks)


@entry(inputs=True)
def from_arrow(table: pa.Table | list[pa.Table], *, override_num_blocks: int | None = None) -> Dataset:
    tables = table if isinstance(table, list) else [table]
    if not all(isinstance(t, pa.Table) for t in tables):
        raise TypeError("lc.data.from_arrow takes a pyarrow Table (or a list of them)")
    return _from_table("FromArrow", blocks.concat(tables), override_num_blocks)


def _from_table(name: str, table: pa.Table, override_num_blocks: int | None, by_size: bool = True) -> Dataset:
    sources.check_blocks(override_num_blocks, f"lc.data.{name}")
    return Dataset(sources.table_source(name, table, override_num_blocks, by_size))


def _files(name: str, fn: str, kind: str, paths: Paths, reader: Any, suffixes: Sequence[str],
           override_num_blocks: int | None) -> Dataset:
    what = f"lc.data.{fn}"
    sources.check_blocks(override_num_blocks, what)
    found = sources.expand_files(paths, what, suffixes)
    return Dataset(sources.file_source(name, found, reader, what, kind, override_num_blocks))


@entry(inputs=True)
def read_parquet(paths: Paths, *, columns: list[str] | None = None,
                 override_num_blocks: int | None = None) -> Dataset:
    """Parquet files (a file, a directory, a glob or a list; local or an fsspec URL), read on the workers."""
    reader = functools.partial(sources.read_parquet_file, columns=columns) if columns else sources.read_parquet_file
    ds = _files("ReadParquet", "read_parquet", "Parquet", paths, reader, (".parquet", ".pq"), override_num_blocks)
    if columns and isinstance(ds._source, sources.Source):  # from the first file's footer: a misspelt column
        sources.check_parquet_columns(ds._source.files[0], columns)  # fails here, before anything runs
    return ds


@entry(inputs=True)
def read_csv(paths: Paths, *, override_num_blocks: int | None = None) -> Dataset:
    return _files("ReadCSV", "read_csv", "CSV", paths, sources.read_csv_file, (".csv",), override_num_blocks)


@entry(inputs=True)
def read_json(paths: Paths, *, override_num_blocks: int | None = None) -> Dataset:
    """JSON lines files (one object a line), or files holding one array of objects."""
    return _files("ReadJSON", "read_json", "JSON", paths, sources.read_json_file, (".json", ".jsonl"),
                  override_num_blocks)


@entry(inputs=True)
def read_text(paths: Paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
              override_num_blocks: int | None = None) -> Dataset:
    """A row ``{"text": line}`` per line; empty lines left out unless ``drop_empty_lines=False`` (Ray's default)."""
    reader = functools.partial(sources.read_text_file, encoding=encoding, drop_empty_lines=drop_empty_lines)
    return _files("ReadText", "read_text", "text", paths, reader, (), override_num_blocks)


@entry(inputs=True)
def read_binary_files(paths: Paths, *, include_paths: bool = True,
                      override_num_blocks: int | None = None) -> Dataset:
    """A row ``{"bytes": ..., "path": ...}`` per file."""
    reader = functools.partial(sources.read_binary_file, include_paths=include_paths)
    return _files("ReadBinary", "read_binary_files", "binary", paths, reader, (), override_num_blocks)


@entry(inputs=True)
def read_images(paths: Paths, *, size: tuple[int, int] | None = None, mode: str | None = None,
                include_paths: bool = False, override_num_blocks: int | None = None) -> Dataset:
    """A row ``{"image": ndarray}`` per image file (Pillow; ``size=(height, width)`` resizes, ``mode="RGB"``
    converts)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ImportError("lc.data.read_images needs Pillow: pip install pillow") from None
    reader = functools.partial(sources.read_image_file, size=size, mode=mode, include_paths=include_paths)
    return _files("ReadImages", "read_images", "image", paths, reader,
                  (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"), override_num_blocks)

