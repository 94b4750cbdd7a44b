"""Datasets to and from dask dataframes, a block per partition, on the workers: nothing is collected in the driver.

- ``Dataset.to_dask()``: the dataset runs (its blocks stay in the object store), and each block becomes a pandas
  partition in a task of the dataframe's graph that depends on that block's object.
- ``lc.data.from_dask(df)``: the dataframe is persisted (its partitions computed on the cluster), and each partition
  becomes a block in a labcluster task that depends on it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

import labcluster as lc
import labcluster.data.blocks as blocks

from ..api.refs import ObjectRef
from ..api.start import current_session
from .runs import Item


def _to_pandas(block: pa.Table) -> Any:
    return blocks.to_batch(block, "pandas")


def _empty_pandas(block: pa.Table) -> Any:
    return blocks.to_batch(block.slice(0, 0), "pandas")


def _to_block(frame: Any) -> pa.Table:
    return blocks.to_block(frame, "a dask dataframe partition")


def _size(block: pa.Table) -> tuple[int, int]:
    return block.num_rows, blocks.size(block)


def to_dask(items: list[Item]) -> Any:
    import dask.dataframe as dd
    from dask.delayed import delayed

    refs = [it.ref for it in items if it.ref is not None]
    if not refs:
        raise ValueError("the dataset has no blocks to make a dataframe of")
    meta = lc.get(lc.remote(_empty_pandas).options(name="to_dask meta").remote(refs[0]), timeout=300)
    parts = [delayed(_to_pandas, pure=True)(ref.future, dask_key_name=f"to-dask-{ref.key}") for ref in refs]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def from_dask(df: Any) -> list[Item]:
    session = current_session()
    if not hasattr(df, "to_delayed"):
        raise TypeError(f"lc.data.from_dask takes a dask dataframe, got {type(df).__name__}")
    futures = session.client.compute(df.to_delayed())  # one future per partition, computed on the cluster
    convert = lc.remote(_to_block).options(name="from_dask")
    refs = [convert.remote(ObjectRef(f, "dask partition")) for f in futures]
    sizes = lc.get([lc.remote(_size).options(name="from_dask size").remote(r) for r in refs], timeout=None)
    return [Item(i, ref, rows=rows, nbytes=nbytes) for i, (ref, (rows, nbytes)) in enumerate(zip(refs, sizes,
                                                                                                  strict=True))]
