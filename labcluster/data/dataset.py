"""``Dataset``: a lazy chain of operators over blocks, run pipelined (Ray-style) or bulk (Spark-style).

Names and shapes follow Ray Data. Transformations return a new Dataset and run nothing; consumers (``iter_batches``,
``take``, ``count``, ``to_pandas``, ``write_parquet``, ``materialize``...) run it, in the mode of the call
(``mode=``), of the enclosing ``with lc.data.execution(mode=...)``, or ``labcluster.data.mode`` (pipelined).

>>> ds = lc.data.range(8).map(lambda r: {"id": r["id"], "sq": r["id"] ** 2})   # doctest: +SKIP
>>> ds.filter(lambda r: r["sq"] > 10).take(2)                                    # doctest: +SKIP
[{'id': 4, 'sq': 16}, {'id': 5, 'sq': 25}]
"""

from __future__ import annotations

import html
import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

import labcluster as lc
import labcluster.data.blocks as blocks
import labcluster.data.tasks as tasks

from ..api import serialization
from ..api.boundary import entry
from ..api.objects import check_alive
from ..exceptions import LabclusterError, unknown_name
from ..text import html_table, plural
from .context import DataContext, check_mode
from .executor import Execution
from .grouped import GroupedData
from .operators import Step, check_class_arguments, function_name
from .plan import AllToAll, Limit, OneToOne, Operator, Resources, Stage, stages
from .runs import Item
from .sources import Source
from .stats import DatasetStats

#: what map, map_batches, filter, flat_map and add_column accept besides their own arguments (the row operators take
#: no batch options: a row is not a batch)
_OPTIONS = frozenset({"fn_args", "fn_kwargs", "fn_constructor_args", "fn_constructor_kwargs", "num_cpus", "num_gpus",
                      "resources", "concurrency"})

#: what an interrupted consumer says: Python cannot stop a thread, so a block ends at its next row or batch (a single
#: call of a user function that runs long still runs to its end)
STOPPED = "the dataset's execution stopped; its running blocks end at their next row or batch"


class Plan(str):
    """``explain()``'s text: prints as text, and shows as text when it is a cell's last expression."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Materialized:
    """Blocks already in the object store (``Dataset.materialize()``)."""

    items: tuple[Item, ...]
    name: str = "Materialized"


@dataclass(frozen=True)
class Union:
    """Several datasets one after the other: each runs as it would alone when the union runs."""

    children: tuple[Dataset, ...]
    name: str = "Union"


#: Ray Data's methods a Dataset lacks, and what to do instead
NOT_HERE = {
    "iter_torch_batches": "iter_batches() gives numpy batches: torch.as_tensor(batch['col']) makes each a tensor",
    "iter_tf_batches": "iter_batches() gives numpy batches: tf.convert_to_tensor(batch['col']) makes each a tensor",
    "to_torch": "iter_batches() gives numpy batches: torch.as_tensor(batch['col']) makes each a tensor",
    "to_numpy_refs": "materialize() keeps the blocks in the object store; iter_batches() or take_batch() give numpy",
    "to_arrow_refs": "materialize() keeps the blocks in the object store; to_arrow() gives one table",
    "split": "filter() on a column gives each part (e.g. lambda r: r['id'] % n == i), or take the rows apart "
             "after to_pandas()",
    "streaming_split": "filter() on a column gives each part (e.g. lambda r: r['id'] % n == i)",
    "train_test_split": "random_shuffle(seed=...) then limit() for one part; filter() on a column splits exactly",
    "zip": "add the columns with map_batches over one dataset, or join after to_pandas()",
    "write_json": "write_parquet() or write_csv()",
    "write_images": "write_parquet() keeps image arrays as tensor columns",
    "iter_internal_ref_bundles": "materialize() keeps the blocks in the object store",
}


class Dataset:
    """A lazy chain of operators; see the module docstring. Build one with ``lc.data.range``, ``from_items``,
    ``read_parquet``..."""

    def __init__(self, source: Source | Materialized | Union, ops: tuple[Operator, ...] = ()) -> None:
        self._source = source
        self._ops = ops
        self._last: Execution | None = None

    def _with(self, op: Operator) -> Dataset:
        return Dataset(self._source, (*self._ops, op))

    # -- transformations -------------------------------------------------------------------------------------------
    def _one_to_one(self, kind: str, label: str, fn: Any, options: Mapping[str, Any], **own: Any) -> Dataset:
        """``options``: what the user passed as keywords (checked); ``own``: the operator's own arguments."""
        for key in options:
            if key not in _OPTIONS:
                valid = sorted(_OPTIONS | own.keys() - {"columns"})
                rows = key in ("batch_size", "batch_format") and "batch_format" not in own
                hint = "(a row is not a batch: batch_size and batch_format are map_batches' options)" if rows else ""
                raise unknown_name(f"{label} option", key, valid, hint)
        return self._operator(kind, label, fn, **options, **own)

    def _operator(self, kind: str, label: str, fn: Any, *, fn_args: Sequence[Any] = (),
                    fn_kwargs: Mapping[str, Any] | None = None, fn_constructor_args: Sequence[Any] = (),
                    fn_constructor_kwargs: Mapping[str, Any] | None = None, num_cpus: float | None = None,
                    num_gpus: float | None = None, resources: Mapping[str, float] | None = None,
                    concurrency: int | tuple[int, int] | None = None, batch_size: int | None = None,
                    batch_format: str = "default", columns: tuple[str, ...] = ()) -> Dataset:
        if not callable(fn):
            raise TypeError(f"{label} needs a function (or a class for map_batches), got {type(fn).__name__}")
        name = f"{label}({function_name(fn)})"
        fmt = blocks.check_batch_format(batch_format)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"{name}: batch_size must be an int >= 1 or None (whole blocks), got {batch_size!r}")
        if inspect.isclass(fn):
            if kind != "map_batches" and kind != "map":
                raise TypeError(f"{name}: a class runs in an actor pool with map_batches or map; "
                                f"{label.lower()} takes a function")
            check_class_arguments(fn, fn_constructor_args, fn_constructor_kwargs or {}, name)
            concurrency = 1 if concurrency is None else concurrency
        elif fn_constructor_args or fn_constructor_kwargs:
            raise TypeError(f"{name}: fn_constructor_args/kwargs are for a class; {function_name(fn)} is a function")
        _check_concurrency(concurrency, name)
        serialization.check_function(fn, f"dataset operator {name!r}")
        step = Step(name, kind, fn, tuple(fn_args), dict(fn_kwargs or {}), batch_size, fmt, columns,
                    tuple(fn_constructor_args), dict(fn_constructor_kwargs or {}))
        return self._with(OneToOne(step, Resources.of(num_cpus, num_gpus, resources), concurrency))

    @entry(inputs=True)
    def map(self, fn: Callable[[dict[str, Any]], dict[str, Any]], **options: Any) -> Dataset:
        """Apply ``fn`` to each row (a dict) and keep what it returns (a dict). Options as for ``map_batches``, less
        its batch options."""
        return self._one_to_one("map", "Map", fn, options)

    @entry(inputs=True)
    def map_batches(self, fn: Any, *, batch_size: int | None = None, batch_format: str = "default",
                    **options: Any) -> Dataset:
        """Apply ``fn`` to batches of at most ``batch_size`` rows (None: whole blocks), given as ``batch_format``
        (``"numpy"``: a dict of arrays, the default; ``"pandas"``; ``"pyarrow"``). ``fn`` returns a batch the same
        ways. A class runs in an actor pool of ``concurrency`` actors (an int, or ``(min, max)`` to grow with the
        backlog), each built once with ``fn_constructor_args`` / ``fn_constructor_kwargs``, holding ``num_cpus``,
        ``num_gpus`` and ``resources`` while it lives; a function runs as a task per block (``concurrency``: at most
        that many at once). Other options: ``fn_args``, ``fn_kwargs``.

        >>> ds.map_batches(Model, num_gpus=1, concurrency=1, batch_size=32)   # doctest: +SKIP
        """
        return self._one_to_one("map_batches", "MapBatches", fn, options, batch_size=batch_size,
                                batch_format=batch_format)

    @entry(inputs=True)
    def filter(self, fn: Callable[[dict[str, Any]], bool], **options: Any) -> Dataset:
        """Keep the rows for which ``fn(row)`` is true."""
        return self._one_to_one("filter", "Filter", fn, options)

    @entry(inputs=True)
    def flat_map(self, fn: Callable[[dict[str, Any]], list[dict[str, Any]]], **options: Any) -> Dataset:
        """Replace each row by the rows ``fn(row)`` returns (a list of dicts)."""
        return self._one_to_one("flat_map", "FlatMap", fn, options)

    @entry(inputs=True)
    def add_column(self, col: str, fn: Callable[[Any], Any], *, batch_format: str = "pandas",
                   **options: Any) -> Dataset:
        """Add (or replace) column ``col`` with ``fn(batch)``: one value per row (a batch is a pandas DataFrame by
        default, as in Ray Data)."""
        return self._one_to_one("add_column", f"AddColumn({col})", fn, options, batch_format=batch_format,
                                columns=(str(col),))

    @entry(inputs=True)
    def drop_columns(self, cols: Sequence[str]) -> Dataset:
        cols = _names(cols, "drop_columns")
        return self._with(OneToOne(Step(f"DropColumns({', '.join(cols)})", "drop_columns", columns=cols)))

    @entry(inputs=True)
    def select_columns(self, cols: Sequence[str]) -> Dataset:
        cols = _names(cols, "select_columns")
        return self._with(OneToOne(Step(f"SelectColumns({', '.join(cols)})", "select_columns", columns=cols)))

    @entry(inputs=True)
    def limit(self, n: int) -> Dataset:
        """The first ``n`` rows (the stages before stop once they are there)."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"limit needs an int >= 0, got {n!r}")
        return self._with(Limit(n))

    @entry(inputs=True)
    def repartition(self, num_blocks: int) -> Dataset:
        """The same rows in ``num_blocks`` blocks of (nearly) equal size."""
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"repartition needs an int >= 1, got {num_blocks!r}")
        return self._with(AllToAll(f"Repartition({num_blocks})", tasks.repartition, (), num_blocks))

    @entry(inputs=True)
    def random_shuffle(self, *, seed: int | None = None) -> Dataset:
        return self._with(AllToAll("RandomShuffle", tasks.random_shuffle, (seed,)))

    @entry(inputs=True)
    def sort(self, key: str | Sequence[str], descending: bool | Sequence[bool] = False) -> Dataset:
        """Rows ordered by ``key`` (a column, or several); ``descending``: one flag for all, or one per key (Ray's)."""
        keys = [key] if isinstance(key, str) else list(key)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise TypeError(f"sort: key must be a column name or a list of them, got {key!r}")
        flags = [descending] * len(keys) if isinstance(descending, bool) else list(descending)
        if len(flags) != len(keys) or not all(isinstance(f, bool) for f in flags):
            raise ValueError(f"sort: descending must be a bool or one bool per key ({len(keys)}), got {descending!r}")
        return self._with(AllToAll(f"Sort({', '.join(keys)})", tasks.sort, (keys, flags)))

    @entry(inputs=True)
    def groupby(self, key: str | Sequence[str] | None) -> GroupedData:
        """Group rows by ``key`` (None: one group); then ``.count()``, ``.sum(col)``, ``.mean(col)``, ``.min``,
        ``.max``, ``.std`` or ``.aggregate((col, fn, name), ...)`` with pyarrow's aggregate names."""
        keys = [] if key is None else [key] if isinstance(key, str) else list(key)
        return GroupedData(self, keys)

    @entry(inputs=True)
    def union(self, *others: Dataset) -> Dataset:
        """This dataset's rows, then the others' (each runs as it would alone; their blocks are gathered first)."""
        for other in others:
            if not isinstance(other, Dataset):
                raise TypeError(f"union takes Datasets, got {type(other).__name__}")
        return Dataset(Union((self, *others)))

    # -- running ---------------------------------------------------------------------------------------------------
    def _stages(self) -> list[Stage]:
        return stages(self._source.name, self._ops, reads=isinstance(self._source, Source))

    def _every_stage(self) -> list[Stage]:
        """The stages a run of it runs: a union's parts' first, then its own."""
        parts = self._source.children if isinstance(self._source, Union) else ()
        return [st for part in parts for st in part._every_stage()] + self._stages()

    def _execution(self, mode: str | None = None, preserve_order: bool | None = None) -> Execution:
        _check_mode(mode)
        ctx = DataContext.get_current()
        began: float | None = None  # a union's run begins with its parts'
        before: list[Execution] = []
        if isinstance(self._source, Source):
            source = [Item(i, read=t, rows=t.rows) for i, t in enumerate(self._source.tasks)]
        elif isinstance(self._source, Union):  # its parts run first, each as it would alone: part of its run
            began = time.perf_counter()
            parts: list[Item] = []
            for child in self._source.children:  # each part's own run (one dataset twice: two runs)
                parts.extend(child._items(mode))
                if child._last is not None:
                    before.append(child._last)
            source = [Item(i, it.ref, rows=it.rows, nbytes=it.nbytes) for i, it in enumerate(parts)]
        else:  # blocks held by a session that was shut down: say so, and start no cluster
            source = list(self._source.items)
            try:
                check_alive([it.ref for it in source if it.ref is not None])
            except lc.exceptions.ObjectLostError as e:
                raise lc.exceptions.ObjectLostError(
                    e.key, "it is a block of a materialized dataset whose session was shut down (lc.shutdown), "
                           "which freed its blocks", "materialize the dataset again in the new session") from None
        ex = Execution(source, self._stages(), mode=mode or ctx.execution_mode,
                       preserve_order=ctx.preserve_order if preserve_order is None else preserve_order,
                       max_blocks=ctx.max_blocks_per_operator, max_bytes=ctx.max_bytes_per_operator)
        self._last = ex
        ex.parts = before
        for part in before:  # the parts' tasks are its records too
            ex.keys |= part.keys
        return ex.start(began=began)

    def _items(self, mode: str | None = None) -> list[Item]:
        """Run to the end and keep every output block in the object store, in order."""
        return list(self._execution(mode, preserve_order=True).outputs())

    def _blocks(self, mode: str | None = None, preserve_order: bool | None = None) -> Iterator[pa.Table]:
        ex = self._execution(mode, preserve_order)
        for item in ex.outputs():
            assert item.ref is not None
            yield lc.get(item.ref, timeout=None)

    def _stream(self, items: Iterator[Any], what: str) -> Iterator[Any]:
        """What ``iter_batches`` / ``iter_rows`` hand out: an interrupt or a labcluster error raised while they are
        iterated shows as one line of the caller's, not the machinery's frames."""
        try:
            yield from items
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"Dataset.{what} was interrupted; {STOPPED}") from None
        except LabclusterError as e:
            raise e.with_traceback(None)  # noqa: B904  (the same error; only the frames go)

    @entry(interrupted=STOPPED, inputs=True)
    def iter_batches(self, *, batch_size: int | None = 256, batch_format: str = "default", drop_last: bool = False,
                     mode: str | None = None, prefetch_batches: int = 1) -> Iterator[Any]:
        """Batches of ``batch_size`` rows (None: a block each) as they are made: the first arrive before the dataset
        is done. Breaking off, or an error, stops the execution. ``prefetch_batches`` (Ray's) is accepted and has
        no effect: a pipelined execution runs ahead of the consumer up to its bound anyway."""
        fmt = blocks.check_batch_format(batch_format)
        blocks.check_batch_size(batch_size)
        _check_mode(mode)
        return self._stream(blocks.rebatch(self._blocks(mode), batch_size, fmt, drop_last), "iter_batches")

    @entry(interrupted=STOPPED, inputs=True)
    def iter_rows(self, *, mode: str | None = None) -> Iterator[dict[str, Any]]:
        """Rows (dicts) as they are made."""
        _check_mode(mode)
        return self._stream((row for block in self._blocks(mode) for row in blocks.rows(block)), "iter_rows")

    @entry(interrupted=STOPPED, inputs=True)
    def take(self, limit: int = 20, *, mode: str | None = None) -> list[dict[str, Any]]:
        """The first ``limit`` rows, in the dataset's order."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"take: limit must be an int >= 0, got {limit!r}")
        out: list[dict[str, Any]] = []
        limited = self.limit(limit)
        for block in limited._blocks(mode, preserve_order=True):
            out.extend(blocks.rows(block))
        self._last = limited._last
        return out[:limit]

    @entry(interrupted=STOPPED, inputs=True)
    def take_all(self, *, mode: str | None = None) -> list[dict[str, Any]]:
        return [row for block in self._blocks(mode, preserve_order=True) for row in blocks.rows(block)]

    @entry(interrupted=STOPPED, inputs=True)
    def take_batch(self, batch_size: int = 20, *, batch_format: str = "default", mode: str | None = None) -> Any:
        fmt = blocks.check_batch_format(batch_format)
        limited = self.limit(batch_size)
        batch = blocks.to_batch(blocks.concat(list(limited._blocks(mode, True))), fmt)
        self._last = limited._last
        return batch

    def show(self, limit: int = 20) -> None:
        for row in self.take(limit):
            print(row)

    @entry(interrupted=STOPPED, inputs=True)
    def count(self, *, mode: str | None = None) -> int:
        """The number of rows; known without running when no operator changes it, else counted from the blocks'
        reports (no block is fetched)."""
        reads = self._source.tasks if isinstance(self._source, Source) and not self._ops else ()
        if reads and all(t.rows is not None for t in reads):
            return sum(t.rows or 0 for t in reads)
        return self._run(mode)[1]

    def _run(self, mode: str | None = None) -> tuple[Execution, int]:
        """Run it to the end (always: a source of known size too), fetching no block; the execution and its rows."""
        ex = self._execution(mode)
        return ex, sum(item.rows or 0 for item in ex.outputs())

    # -- whole-dataset aggregates (Ray Data's: a value for one column, a dict for several; None when empty) ------
    def _aggregate(self, fn: str, on: str | Sequence[str], **options: Any) -> Any:
        rows = getattr(self.groupby(None), fn)(on, **options).take_all()
        names = [f"{fn}({c})" for c in ([on] if isinstance(on, str) else on)]
        got = {n: rows[0].get(n) if rows else None for n in names}
        return got[names[0]] if isinstance(on, str) else got

    @entry(interrupted=STOPPED, inputs=True)
    def sum(self, on: str | Sequence[str]) -> Any:
        """The sum of column ``on`` (a dict of sums for several columns)."""
        return self._aggregate("sum", on)

    @entry(interrupted=STOPPED, inputs=True)
    def min(self, on: str | Sequence[str]) -> Any:
        return self._aggregate("min", on)

    @entry(interrupted=STOPPED, inputs=True)
    def max(self, on: str | Sequence[str]) -> Any:
        return self._aggregate("max", on)

    @entry(interrupted=STOPPED, inputs=True)
    def mean(self, on: str | Sequence[str]) -> Any:
        return self._aggregate("mean", on)

    @entry(interrupted=STOPPED, inputs=True)
    def std(self, on: str | Sequence[str], ddof: int = 1) -> Any:
        """The standard deviation of column ``on``; ``ddof=1`` (the sample's), as Ray Data."""
        return self._aggregate("std", on, ddof=ddof)

    @entry(interrupted=STOPPED, inputs=True)
    def unique(self, column: str) -> list[Any]:
        """The distinct values of ``column`` (sorted)."""
        return [row[column] for row in self.groupby(column).count().take_all()]

    @entry(interrupted=STOPPED, inputs=True)
    def schema(self) -> pa.Schema:
        """The columns and their types (from the first block that has any: an empty one may not know them)."""
        found = pa.schema([])
        for block in self.limit(1)._blocks(None, True):
            if block.num_columns and not found.names:
                found = block.schema
        return found

    def columns(self) -> list[str]:
        return list(self.schema().names)

    @entry(interrupted=STOPPED, inputs=True)
    def to_arrow(self, *, mode: str | None = None) -> pa.Table:
        return blocks.concat(list(self._blocks(mode, preserve_order=True)))

    def to_pandas(self, *, mode: str | None = None) -> Any:
        return blocks.to_batch(self.to_arrow(mode=mode), "pandas")

    @entry(interrupted=STOPPED, inputs=True)
    def to_dask(self, *, mode: str | None = None) -> Any:
        """A dask dataframe of it, a partition per block: the dataset runs and its blocks stay on the workers,
        each becoming a pandas partition there (nothing is collected in the driver)."""
        from .convert import to_dask

        return to_dask(self._items(mode))

    @entry(interrupted=STOPPED, inputs=True)
    def materialize(self, *, mode: str | None = None) -> Dataset:
        """Run it and keep its blocks in the object store: a Dataset that reads them (computed once)."""
        items = self._items(mode)
        out = Dataset(Materialized(tuple(items)))
        out._last = self._last
        return out

    def write_parquet(self, path: str, *, mode: str | None = None) -> list[str]:
        """Write a Parquet file per block into directory ``path`` (made if missing), from the workers."""
        return self._write(path, "parquet", mode)

    def write_csv(self, path: str, *, mode: str | None = None) -> list[str]:
        return self._write(path, "csv", mode)

    @entry(interrupted=STOPPED, inputs=True)
    def _write(self, path: str, fmt: str, mode: str | None) -> list[str]:
        import fsspec.core

        fs, root = fsspec.core.url_to_fs(path)
        fs.makedirs(root, exist_ok=True)
        step = Step(f"Write{fmt.capitalize()}", "write", tasks.write_block, (path, fmt))
        ds = self._with(OneToOne(step))
        written = [row["path"] for block in ds._blocks(mode, True) for row in blocks.rows(block)]
        self._last = ds._last
        return written

    # -- what it is ------------------------------------------------------------------------------------------------
    def stats(self) -> DatasetStats:
        """What each stage of the last execution did (blocks, rows, bytes, task and wall time)."""
        if self._last is None:
            raise RuntimeError("this dataset has not run yet: consume it first (take_all, iter_batches, materialize..."
                               "; count() of a source whose size is known runs nothing)")
        return DatasetStats(self._last)

    def lineage(self) -> Any:
        """The lineage of a materialized dataset's blocks (``lc.lineage`` of them): its stage view has a node per
        stage, in pipeline order (``ds.materialize().lineage().stages``)."""
        if not isinstance(self._source, Materialized):
            raise TypeError("lineage() is for a materialized dataset: ds.materialize().lineage()")
        refs = [item.ref for item in self._source.items if item.ref is not None]
        return lc.lineage(refs)

    @entry(interrupted=STOPPED, inputs=True)
    def size_bytes(self, *, mode: str | None = None) -> int:
        """The bytes its blocks hold in memory (it runs, as Ray Data's does; no block is fetched)."""
        if isinstance(self._source, Materialized) and not self._ops:
            return sum(item.nbytes for item in self._source.items)
        return sum(item.nbytes for item in self._execution(mode).outputs())

    def __getattr__(self, name: str) -> Any:
        fix = NOT_HERE.get(name)
        if fix is None:
            raise AttributeError(f"'Dataset' object has no attribute {name!r}")
        raise AttributeError(f"Dataset.{name} is Ray Data's, which labcluster's Dataset does not have; {fix}")

    def num_blocks(self) -> int:
        """Blocks it will be made of (after the last repartition; the source's blocks before that), on the cluster
        of now: without ``override_num_blocks``, a source is cut when it runs, for the cluster it runs on."""
        for op in reversed(self._ops):
            if isinstance(op, AllToAll) and op.num_outputs:
                return op.num_outputs
        if isinstance(self._source, Union):
            return sum(child.num_blocks() for child in self._source.children)
        return self._source.num_blocks if isinstance(self._source, Source) else len(self._source.items)

    def explain(self) -> Plan:
        """The operators, and the stages they run as (fused where they can be; bulk mode waits between stages)."""
        lines = [f"Dataset: {self._source_label()}", "operators:"]
        lines += [f"  {op.name}" + (f"  [{_op_label(op)}]" if _op_label(op) else "") for op in self._ops]
        if not self._ops:
            lines.append("  (none)")
        lines.append("stages (a task or actor call per block; bulk mode finishes each before the next starts):")
        for i, st in enumerate(self._stages(), 1):
            lines.append(f"  {i}. {st.name}  [{_stage_label(st)}]")
        if not self._stages():
            lines.append("  (none: its blocks are held already)" if isinstance(self._source, Materialized) else
                         "  (none of its own: its parts run first, each as it would alone)")
        return Plan("\n".join(lines))

    def _source_label(self) -> str:
        if isinstance(self._source, Source):
            return f"{self._source.name}{' ' + self._source.detail if self._source.detail else ''}, " \
                   f"{self._source.num_blocks} blocks"
        if isinstance(self._source, Union):
            return f"Union of {len(self._source.children)} datasets, {self.num_blocks()} blocks"
        return f"{self._source.name}, {len(self._source.items)} blocks in the object store"

    def __repr__(self) -> str:
        chain = " -> ".join([self._source.name, *(op.name for op in self._ops)])
        return f"Dataset({chain}; {plural(self.num_blocks(), 'block')})"

    def _repr_html_(self) -> str:
        first = "1" if isinstance(self._source, Source) else ""
        rows: list[list[Any]] = [[self._source_label(), "source", first]]
        rows += [[op.name, _op_label(op) or "-", i] for op, i in _stage_numbers(self._stages(), self._ops)]
        return "<div>" + html.escape(repr(self)) + html_table(("operator", "runs on", "stage"), rows) + "</div>"


# -- helpers -----------------------------------------------------------------------------------------------------

def _check_mode(mode: str | None) -> None:
    if mode is not None:
        check_mode(mode)


def _names(cols: Sequence[str] | str, what: str) -> tuple[str, ...]:
    out = (cols,) if isinstance(cols, str) else tuple(cols)
    if not out or not all(isinstance(c, str) for c in out):
        raise TypeError(f"{what} takes a list of column names, got {cols!r}")
    return out


def _check_concurrency(concurrency: Any, name: str) -> None:
    ok = concurrency is None or (isinstance(concurrency, int) and not isinstance(concurrency, bool)
                                 and concurrency >= 1)
    if isinstance(concurrency, tuple):
        ok = len(concurrency) == 2 and all(isinstance(c, int) for c in concurrency) and 1 <= concurrency[0] \
            <= concurrency[1]
    if not ok:
        raise ValueError(f"{name}: concurrency must be an int >= 1 or a (min, max) pair, got {concurrency!r}")


def _op_label(op: Operator) -> str:
    if not isinstance(op, OneToOne):
        return "all blocks at once" if isinstance(op, AllToAll) else "driver"
    label = op.resources.label()
    if op.step.is_class:
        low, high = op.concurrency if isinstance(op.concurrency, tuple) else (op.concurrency, op.concurrency)
        label += f"; {plural(low or 1, 'actor')}" if low == high else f"; {low}-{high} actors"
    elif op.concurrency:
        label += f"; at most {op.concurrency} at once"
    return label


def _stage_label(st: Stage) -> str:
    if st.kind == "limit":
        return "in the driver: stops the stages before it once it has its rows"
    if st.kind == "all_to_all":
        return "needs every block of the stage before it"
    label = st.resources.label()
    if st.actors:
        low, high = st.pool_size()
        return f"{label}; actor pool of {low if low == high else f'{low}-{high}'}"
    return f"{label}; a task per block" + (f", at most {st.concurrency} at once" if st.concurrency else "")


def _stage_numbers(sts: list[Stage], ops: tuple[Operator, ...]) -> list[tuple[Operator, int]]:
    out = []
    for op in ops:
        for i, st in enumerate(sts, 1):
            if op.name in st.name.split("->"):
                out.append((op, i))
                break
    return out
