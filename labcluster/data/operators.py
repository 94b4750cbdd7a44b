"""A Dataset's operators: what each does to a block, on a worker.

A one-to-one operator (``map``, ``map_batches``, ``filter``, ``flat_map``, column operations) is a :class:`Step`,
a block -> block function. Consecutive steps with the same resources fuse into one stage and run in one task, as
Spark fuses narrow transformations (``plan.py``). A step whose function is a class runs in an actor pool: the
class is constructed once per actor (``construct``) and called per batch.

When user code raises, the error keeps its type and remote traceback and gains a note naming the operator, the
block and the row or batch (``add_note``), so the cell shows where in the data it broke.

>>> step = Step("Map(double)", "map", lambda row: {"x": row["x"] * 2})
>>> run_steps([step], blocks.to_block({"x": [1, 2]}, "t"), 0).column("x").to_pylist()
[2, 4]
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

import labcluster.data.blocks as blocks

from ..api.state import canceled_here
from ..exceptions import TaskCancelledError

#: step kinds that apply a user function to rows or batches
ROW_KINDS = ("map", "filter", "flat_map")


@dataclass(frozen=True)
class Step:
    """One one-to-one operator: ``kind`` says how ``fn`` meets the block."""

    name: str
    kind: str  # map | filter | flat_map | map_batches | add_column | drop_columns | select_columns
    fn: Any = None
    fn_args: tuple[Any, ...] = ()
    fn_kwargs: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    batch_format: str = blocks.DEFAULT_BATCH_FORMAT
    #: for add_column / drop_columns / select_columns
    columns: tuple[str, ...] = ()
    #: a callable class: built once per actor with these
    constructor_args: tuple[Any, ...] = ()
    constructor_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_class(self) -> bool:
        return inspect.isclass(self.fn)

    def construct(self) -> Step:
        """The step with its class replaced by an instance (in the actor, once)."""
        if not self.is_class:
            return self
        try:
            instance = self.fn(*self.constructor_args, **self.constructor_kwargs)
        except TypeError as e:
            if "argument" in str(e):
                raise TypeError(f"{self.name}: constructing {self.fn.__name__} failed ({e}); pass its arguments "
                                f"with fn_constructor_args= / fn_constructor_kwargs=") from None
            raise
        return replace(self, fn=instance)


def check_class_arguments(cls: type, args: Sequence[Any], kwargs: Mapping[str, Any], name: str) -> None:
    """Fail in the driver, not in every actor, when the constructor's required arguments are not given."""
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}: {cls.__name__}({', '.join(map(repr, args))}) cannot be constructed ({e}); pass "
                        f"the constructor's arguments with fn_constructor_args= / fn_constructor_kwargs=") from None
    except ValueError:  # no signature (a builtin): find out in the actor
        pass


def _where(step: Step, block_index: int, part: str) -> str:
    """Where in the data a call failed: ``row 3 of block 1`` (rows and batches count from 0 in their block)."""
    return f"in dataset operator {step.name!r}, {part} of block {block_index}"


#: how often (seconds) a block's loop over rows or batches asks whether its execution still wants it
CANCEL_CHECK_EVERY = 0.05
_cancel_checked = threading.local()


def _stop_if_cancelled(block_index: int, part: str) -> None:
    """End a block whose execution stopped (the consumer broke off, raised or was interrupted) before its next row
    or batch: Python cannot stop a thread, so the work would otherwise run to the block's end, holding its slot."""
    now = time.monotonic()
    if now < getattr(_cancel_checked, "next", 0.0):
        return
    _cancel_checked.next = now + CANCEL_CHECK_EVERY
    if canceled_here():
        raise TaskCancelledError(f"dataset block {block_index}")


def _call(step: Step, value: Any, block_index: int, part: str) -> Any:
    _stop_if_cancelled(block_index, part)
    try:
        return step.fn(value, *step.fn_args, **step.fn_kwargs)
    except Exception as e:
        e.add_note(_where(step, block_index, part))
        raise


def _rows_step(step: Step, block: pa.Table, block_index: int) -> pa.Table:
    where = f"dataset operator {step.name!r}"
    if step.kind == "filter":  # a mask keeps the block's schema (tensor columns too)
        keep = [bool(_call(step, row, block_index, f"row {i}")) for i, row in enumerate(blocks.rows(block))]
        return block.filter(pa.array(keep, pa.bool_())) if block.num_rows else block
    rows = _on_rows(step, blocks.rows(block), block_index)
    try:
        return blocks.from_rows(rows, where)
    except blocks.BlockTypeError as e:
        if e.reason is None:
            raise
        raise blocks.BlockTypeError(f"{where} returned rows of block {block_index} whose values cannot be stored "
                                    f"({e.reason}); a row's values must be numbers, strings, bytes, lists, dicts or "
                                    f"numpy arrays (an object of your own: turn it into those, or pickle it to "
                                    f"bytes)", e.reason) from None


def _on_rows(step: Step, rows: list[dict[str, Any]], block_index: int) -> list[Any]:
    """One row operator over a block's rows, as Python rows (``filter`` too: see :func:`run_steps`)."""
    if step.kind == "filter":
        return [row for i, row in enumerate(rows) if _call(step, row, block_index, f"row {i}")]
    where = f"dataset operator {step.name!r}"
    out: list[Any] = []
    for i, row in enumerate(rows):
        result = _call(step, row, block_index, f"row {i}")
        if step.kind == "map":
            if not isinstance(result, Mapping):
                raise TypeError(f"{where} returned {type(result).__name__} for row {i} of block {block_index}; "
                                f"map's function must return a dict (one row), e.g. {{'value': x}}")
            out.append(result)
        else:
            if isinstance(result, Mapping) or not isinstance(result, Iterable):
                raise TypeError(f"{where} returned {type(result).__name__} for row {i} of block {block_index}; "
                                f"flat_map's function must return a list of dicts (rows)")
            out.extend(result)
    return out


def _batches_step(step: Step, block: pa.Table, block_index: int) -> pa.Table:
    where = f"dataset operator {step.name!r}"
    outs = []
    for i, batch in enumerate(blocks.batches(block, step.batch_size)):
        result = _call(step, blocks.to_batch(batch, step.batch_format), block_index, f"batch {i}")
        try:
            outs.append(blocks.to_block(result, where))
        except blocks.BlockTypeError as e:
            raise TypeError(f"{e} (batch {i} of block {block_index})") from None
    return blocks.concat(outs)


#: steps whose output columns are the function's: an empty block gives an empty block of no columns
_MAKE_COLUMNS = frozenset({"map", "flat_map", "map_batches", "write"})
#: steps that run a function of the user's
_USER_STEPS = _MAKE_COLUMNS | {"filter", "add_column"}


def apply(step: Step, block: pa.Table, block_index: int) -> pa.Table:
    """Run one step on one block. An empty block runs no function of the user's (as in Ray Data): it passes a
    filter or add_column as it is, and where the function would have made the columns it becomes an empty block of
    no columns (its columns unknown), which every later step passes on and putting blocks together leaves out."""
    if not block.num_rows and (step.kind in _USER_STEPS or not block.num_columns):
        return pa.table({}) if step.kind in _MAKE_COLUMNS else block
    if step.kind in ROW_KINDS:
        return _rows_step(step, block, block_index)
    if step.kind == "map_batches":
        return _batches_step(step, block, block_index)
    if step.kind == "add_column":
        (name,) = step.columns
        values = _call(step, blocks.to_batch(block, step.batch_format), block_index, "all rows")
        column = blocks.to_block({name: values}, f"dataset operator {step.name!r}").column(0)
        if len(column) != block.num_rows:
            raise ValueError(f"dataset operator {step.name!r} made {len(column)} values for a block of "
                             f"{block.num_rows} rows; return one value per row")
        if name in block.column_names:
            return block.set_column(block.column_names.index(name), name, column)
        return block.append_column(name, column)
    if step.kind == "drop_columns":
        blocks.require_columns(block, step.columns, f"dataset operator {step.name!r}")
        return block.drop_columns(list(step.columns))
    if step.kind == "write":  # fn(block, index, *args): writes the block, returns a row naming the file
        written: pa.Table = step.fn(block, block_index, *step.fn_args)
        return written
    if step.kind == "select_columns":
        blocks.require_columns(block, step.columns, f"dataset operator {step.name!r}")
        return block.select(list(step.columns))
    raise ValueError(f"unknown step kind {step.kind!r}")


def run_steps(steps: Sequence[Step], block: pa.Table, block_index: int) -> pa.Table:
    """Run a stage's steps over one block. Consecutive row operators (map, filter, flat_map) pass Python rows from
    one to the next: the block becomes rows once and a block again once, not at every operator."""
    i = 0
    while i < len(steps):
        j = i
        while j < len(steps) and steps[j].kind in ROW_KINDS:
            j += 1
        if j - i >= 2 and block.num_rows:
            rows: list[Any] = blocks.rows(block)
            for step in steps[i:j]:
                rows = _on_rows(step, rows, block_index)
            block = blocks.from_rows(rows, f"dataset operator {steps[j - 1].name!r}")  # no rows: no columns
            i = j
        else:
            block = apply(steps[i], block, block_index)
            i += 1
    return block


def function_name(fn: Callable[..., Any] | type) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__
