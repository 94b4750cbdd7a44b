"""Blocks: the unit a Dataset moves. A block is a ``pyarrow.Table``; user functions see batches of it.

A batch reaches a user function as ``batch_format="numpy"`` (a dict of column name -> ``numpy.ndarray``, the
default), ``"pandas"`` (a ``DataFrame``) or ``"pyarrow"`` (a ``Table``). What a function returns becomes a block
again: a dict of arrays or lists, a ``DataFrame`` or a ``Table``. Columns of n-dimensional arrays (images,
embeddings) are stored as tensor columns (``tensors``) and come back as an ``ndarray`` of that shape, or, where the
rows' shapes differ, as an object ``ndarray`` of one array a row.

>>> block = to_block({"x": np.arange(3), "img": np.zeros((3, 2, 2))}, "example")
>>> block.num_rows, to_batch(block, "numpy")["img"].shape
(3, (3, 2, 2))
>>> rows(block)[0]["x"]
0
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas
import pyarrow as pa

import labcluster.data.tensors as tensors

# pyarrow imports pandas lazily, the first time a column becomes a numpy array, and swallows what interrupts that
# import: a Ctrl-C that landed then, in a notebook's first Dataset loop, was lost (seen: the cell ran to its end).
# Importing pandas with this module moves that import out of every loop.

BATCH_FORMATS = ("numpy", "pandas", "pyarrow")
DEFAULT_BATCH_FORMAT = "numpy"


class MissingColumnError(KeyError):
    """An operator names a column the block does not have (a KeyError, shown unquoted: its text is a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_columns(table: pa.Table | Sequence[str], names: Sequence[str], where: str,
                    holder: str = "the block") -> None:
    """Raise :class:`MissingColumnError` naming the columns of ``names`` that ``table`` (or a list of column names)
    lacks and what it has."""
    have = table.column_names if isinstance(table, pa.Table) else list(table)
    missing = [n for n in names if n not in have]
    if missing:
        raise MissingColumnError(f"{where}: no column {', '.join(map(repr, missing))}; {holder} has "
                                 f"{', '.join(map(repr, have)) or 'no columns'}")


class BlockTypeError(TypeError):
    """A user function returned something that cannot be a block (``reason``: Arrow's words, where it refused)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def check_batch_format(batch_format: str) -> str:
    if batch_format == "default":
        return DEFAULT_BATCH_FORMAT
    if batch_format not in BATCH_FORMATS:
        raise ValueError(f"batch_format must be one of {', '.join(map(repr, BATCH_FORMATS))}, got {batch_format!r}")
    return batch_format


def _column(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):  # a pandas Series
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and values.ndim > 1:
        array = np.ascontiguousarray(values)
        if array.strides[0] != array.itemsize * int(np.prod(array.shape[1:])):  # e.g. a size-1 axis from [None]
            array = array.copy()
        return pa.FixedShapeTensorArray.from_numpy_ndarray(array)
    if isinstance(values, np.ndarray) and values.dtype == object and len(values):  # a variable tensor column back
        values = list(values)
    # arrays of one ndim: a tensor column (ragged ones variable-shaped)
    if (isinstance(values, list) and values and all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in values)
            and len({v.ndim for v in values}) == 1):
        return tensors.from_arrays(values)
    return pa.array(values)


def to_block(value: Any, where: str) -> pa.Table:
    """Make a block of what a user function returned (``where`` names the operator for the error)."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, Mapping):
        if not value:
            return pa.table({})
        try:
            columns = {str(k): _column(v) for k, v in value.items()}
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            raise BlockTypeError(f"{where}: a column's values cannot be stored ({e}); a column holds values of "
                                 f"one type (numbers, strings, bytes, lists, dicts or numpy arrays), as equal-length "
                                 f"arrays or lists", reason=str(e)) from None
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(c)}" for k, c in columns.items())
            raise BlockTypeError(f"{where} returned columns of different lengths ({sizes}); every column of a "
                                 f"batch must have one value per row")
        return pa.table(columns)
    if isinstance(value, pandas.DataFrame):
        return pa.Table.from_pandas(value, preserve_index=False)
    raise BlockTypeError(f"{where} returned {type(value).__name__}; a batch function must return a dict of "
                         f"column name -> array, a pandas DataFrame or a pyarrow Table")


def from_rows(items: Sequence[Any], where: str) -> pa.Table:
    """A block of rows: dicts become columns; any other value becomes the ``item`` column (as Ray Data does)."""
    if not items:
        return pa.table({})
    if all(isinstance(r, Mapping) for r in items):
        names: dict[str, None] = {}
        for r in items:
            names.update(dict.fromkeys(map(str, r)))
        return to_block({n: [r.get(n) for r in items] for n in names}, where)
    if any(isinstance(r, Mapping) for r in items):
        raise BlockTypeError(f"{where} got a mix of dict rows and plain values; return a dict for every row")
    return to_block({"item": list(items)}, where)


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    if tensors.is_tensor(column.type):
        return tensors.to_numpy(column)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def to_batch(block: pa.Table, batch_format: str) -> Any:
    """The batch a user function sees."""
    if batch_format == "pyarrow":
        return block
    if batch_format == "pandas":
        frame = block.to_pandas()
        for name in block.column_names:  # tensor columns: one ndarray per row, as numpy batches give
            if tensors.is_tensor(block.schema.field(name).type):
                frame[name] = list(_numpy(block.column(name)))
        return frame
    return {name: _numpy(block.column(name)) for name in block.column_names}


def tensor_columns(block: pa.Table) -> list[str]:
    """The block's columns of n-d arrays."""
    return [n for n in block.column_names if tensors.is_tensor(block.schema.field(n).type)]


def rows(block: pa.Table) -> list[dict[str, Any]]:
    """The block's rows as dicts (tensor columns as ndarrays)."""
    arrays = {n: _numpy(block.column(n)) for n in tensor_columns(block)}
    out: list[dict[str, Any]] = block.drop_columns(list(arrays)).to_pylist() if arrays else block.to_pylist()
    for name, array in arrays.items():
        for i, row in enumerate(out):
            row[name] = array[i]
    if arrays:  # keep the schema's column order
        out = [{n: r[n] for n in block.column_names} for r in out]
    return out


def decoded(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """``table`` with its dictionary-encoded columns among ``names`` (pandas categoricals) as plain values, which
    pyarrow's sorts and groupings take."""
    for name in names:
        type_ = table.schema.field(name).type
        if pa.types.is_dictionary(type_):
            table = table.set_column(table.column_names.index(name), name, table.column(name).cast(type_.value_type))
    return table


def batches(block: pa.Table, batch_size: int | None) -> Iterator[pa.Table]:
    """Zero-copy slices of at most ``batch_size`` rows (the whole block for None)."""
    if batch_size is None or block.num_rows <= batch_size:
        yield block
        return
    for start in range(0, block.num_rows, batch_size):
        yield block.slice(start, batch_size)


def concat(blocks: Sequence[pa.Table]) -> pa.Table:
    """One block of many (schemas unified; an empty list gives an empty table)."""
    blocks = [b for b in blocks if b.num_columns or b.num_rows]
    if not blocks:
        return pa.table({})
    if len(blocks) == 1:
        return blocks[0]
    try:
        return pa.concat_tables(tensors.unify(blocks), promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid) as e:
        raise TypeError(f"blocks of different schemas cannot be put together ({e}); give the datasets one schema "
                        f"first (select_columns, or a map that casts)") from None


def size(block: pa.Table) -> int:
    return int(block.nbytes)


def check_batch_size(batch_size: object) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")


def rebatch(source: Iterator[pa.Table], batch_size: int | None, fmt: str, drop_last: bool) -> Iterator[Any]:
    """Batches of ``batch_size`` rows (None: a block each) as ``fmt``, cut across the blocks as they come."""
    pending: list[pa.Table] = []
    rows = 0
    for block in source:
        if batch_size is None:
            yield to_batch(block, fmt)
            continue
        pending.append(block)
        rows += block.num_rows
        while rows >= batch_size:
            whole = concat(pending)
            yield to_batch(whole.slice(0, batch_size), fmt)
            rest = whole.slice(batch_size)
            pending, rows = [rest], rest.num_rows
    if rows and not drop_last:
        yield to_batch(concat(pending), fmt)
