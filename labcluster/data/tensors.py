"""Tensor columns: n-dimensional arrays (images, embeddings) as pyarrow columns, one array a row.

Arrays of one shape are pyarrow's fixed-shape tensor columns. Arrays whose shapes differ from row to row (photos
of different sizes read by ``read_images``) are a :class:`VariableShapeTensorType` column, as in Ray Data: each row
keeps its own shape, and a numpy batch gives an object ``ndarray`` holding one ``ndarray`` per row. Blocks with
fixed-shape columns of different shapes become variable-shaped when they are put together (:func:`unify`).

>>> column = from_arrays([np.zeros((2, 3)), np.ones((4, 3))])
>>> column.type
VariableShapeTensorType(double, ndim=2)
>>> [a.shape for a in to_numpy(pa.chunked_array([column]))]
[(2, 3), (4, 3)]
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa


class VariableShapeTensorType(pa.ExtensionType):  # type: ignore[misc]
    """One n-dimensional array a row, each of its own shape: stored as ``struct<data: large_list<value>, shape:
    list<int64>>`` (the values flattened in C order, and the shape)."""

    def __init__(self, value_type: pa.DataType, ndim: int) -> None:
        self.ndim = int(ndim)
        storage = pa.struct([("data", pa.large_list(value_type)), ("shape", pa.list_(pa.int64()))])
        super().__init__(storage, "labcluster.variable_shape_tensor")

    @property
    def value_type(self) -> pa.DataType:
        return self.storage_type.field("data").type.value_type

    def __arrow_ext_serialize__(self) -> bytes:
        return json.dumps({"ndim": self.ndim}).encode()

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> VariableShapeTensorType:
        return cls(storage_type.field("data").type.value_type, json.loads(serialized)["ndim"])

    def __reduce__(self) -> tuple[Any, ...]:
        return VariableShapeTensorType, (self.value_type, self.ndim)

    def __eq__(self, other: object) -> bool:  # pyarrow's own compares the storage only: the ndim too
        return (isinstance(other, VariableShapeTensorType) and other.ndim == self.ndim
                and other.value_type == self.value_type)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("labcluster.variable_shape_tensor", str(self.value_type), self.ndim))

    def __repr__(self) -> str:
        return f"VariableShapeTensorType({self.value_type}, ndim={self.ndim})"


with contextlib.suppress(pa.ArrowKeyError):  # registered already (a module reloaded)
    pa.register_extension_type(VariableShapeTensorType(pa.float64(), 1))


def is_tensor(type_: pa.DataType) -> bool:
    return isinstance(type_, (pa.FixedShapeTensorType, VariableShapeTensorType))


def _ndim(type_: pa.DataType) -> int:
    return len(type_.shape) if isinstance(type_, pa.FixedShapeTensorType) else int(type_.ndim)


def from_arrays(arrays: Sequence[np.ndarray], variable: bool = False) -> pa.ExtensionArray:
    """A tensor column of ``arrays`` (all of one ndim): fixed-shape where their shapes agree (unless ``variable``),
    else variable-shaped."""
    if len({a.shape for a in arrays}) == 1 and not variable:
        return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(np.stack(arrays)))
    ndims = {a.ndim for a in arrays}
    if len(ndims) != 1:
        raise ValueError(f"arrays of different numbers of dimensions ({', '.join(map(str, sorted(ndims)))}) "
                         f"cannot share a column")
    dtype = np.result_type(*arrays)
    flat = [np.ascontiguousarray(a, dtype=dtype).reshape(-1) for a in arrays]
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in flat])]).astype(np.int64)
    values = pa.array(np.concatenate(flat) if flat else np.array([], dtype))
    data = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    shape = pa.array([list(a.shape) for a in arrays], pa.list_(pa.int64()))
    storage = pa.StructArray.from_arrays([data, shape], names=["data", "shape"])
    return pa.ExtensionArray.from_storage(VariableShapeTensorType(values.type, next(iter(ndims))), storage)


def to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A tensor column as numpy: one ``(rows, *shape)`` array (fixed shape), or an object array of arrays."""
    chunk = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column.type, pa.FixedShapeTensorType):
        return np.asarray(chunk.to_numpy_ndarray())
    storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
    data, shapes = storage.field("data"), storage.field("shape").to_pylist()
    values = data.values.to_numpy(zero_copy_only=False)
    offsets = data.offsets.to_numpy()
    out = np.empty(len(shapes), dtype=object)
    for i, shape in enumerate(shapes):  # a null row (a block without the column, put together) stays None
        out[i] = None if shape is None else values[offsets[i]:offsets[i + 1]].reshape(shape)
    return out


def unify(blocks: Sequence[pa.Table]) -> list[pa.Table]:
    """The blocks, with each tensor column whose shapes differ between blocks made variable-shaped in all of them
    (so that they concatenate)."""
    if all(b.schema == blocks[0].schema for b in blocks[1:]):  # the common case (every batch cut): nothing to do
        return list(blocks)
    names = {name for b in blocks for name in b.column_names}
    widen = []
    for name in names:
        types = [b.schema.field(name).type for b in blocks if name in b.column_names]
        if any(t != types[0] for t in types) and all(is_tensor(t) for t in types):
            ndims = {_ndim(t) for t in types}
            if len(ndims) > 1:
                raise TypeError(f"column {name!r} holds arrays of {' and '.join(map(str, sorted(ndims)))} "
                                f"dimensions in different blocks; one column holds arrays of one ndim")
            widen.append(name)
    if not widen:
        return list(blocks)
    out = []
    for b in blocks:
        for name in widen:
            type_ = b.schema.field(name).type if name in b.column_names else None
            if isinstance(type_, pa.FixedShapeTensorType):
                column = (from_arrays(list(to_numpy(b.column(name))), variable=True) if b.num_rows else
                          pa.ExtensionArray.from_storage(
                              VariableShapeTensorType(type_.value_type, len(type_.shape)),
                              pa.array([], VariableShapeTensorType(type_.value_type, len(type_.shape)).storage_type)))
                b = b.set_column(b.column_names.index(name), name, column)
        out.append(b)
    return out

