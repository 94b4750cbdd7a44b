"""Where a Dataset's rows come from: read tasks, each of which makes one block on a worker.

In-memory sources (``from_items``, ``from_pandas``, ``from_numpy``, ``from_arrow``) cut their data into blocks here
and ship each block with its task (large ones travel as objects, not in the task graph). File sources list their
files here, in the driver, so that a missing path fails at once, and read them in the tasks, on the workers, with
pyarrow (local paths, and any fsspec URL: ``s3://``, ``gs://``, ``memory://``...).

>>> [t.label for t in range_tasks(10, 3)]
['range(0, 4)', 'range(4, 7)', 'range(7, 10)']
>>> range_tasks(10, 3)[2].read().column("id").to_pylist()
[7, 8, 9]
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

import labcluster.data.blocks as blocks

from .. import config
from ..text import plural


@dataclass(frozen=True)
class ReadTask:
    """One block's worth of reading: ``fn(*args)`` runs on a worker and returns a block."""

    fn: Callable[..., pa.Table]
    args: tuple[Any, ...] = ()
    #: what it reads, for errors and ``explain()``
    label: str = ""
    #: rows it will make, when known before reading
    rows: int | None = None

    def read(self) -> pa.Table:
        return self.fn(*self.args)


@dataclass(frozen=True)
class Source:
    """A Dataset's first operator: a name (``ReadParquet``, ``FromItems``...) and how its rows (or files) are cut
    into read tasks.

    Without ``override_num_blocks`` the blocks are counted when the dataset runs (or is shown), not when it is made,
    as Ray Data counts them: a dataset made before ``lc.init("tcp://...")`` runs as many blocks as the cluster it
    runs on wants (:func:`default_blocks`), not as this machine's cores would.
    """

    name: str
    #: ``cut(parts)``: the read tasks of ``parts`` blocks
    cut: Callable[[int], Sequence[ReadTask]]
    #: rows (or files) it holds, and their size in memory where known (sized sources: range, in-memory tables)
    count: int
    nbytes: int | None = None
    override_num_blocks: int | None = None
    #: what the dataset's repr says about it (the paths, the row count)
    detail: str = ""
    files: tuple[str, ...] = field(default=(), repr=False)
    _cuts: dict[int, tuple[ReadTask, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_blocks(self) -> int:
        """As many as asked for, never more than rows (or files), at least one."""
        parts = self.override_num_blocks or default_blocks(self.count, self.nbytes)
        return max(1, min(parts, self.count))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cuts": {}}  # the read tasks are made again where it arrives

    @property
    def tasks(self) -> tuple[ReadTask, ...]:
        """The read tasks for the cluster of now (the same tasks again while its CPU slots stay the same)."""
        parts = self.num_blocks
        tasks = self._cuts.get(parts)
        if tasks is None:
            tasks = self._cuts[parts] = tuple(self.cut(parts))
        return tasks


def default_blocks(n: int, nbytes: int | None = None, cpus: int | None = None) -> int:
    """How many blocks ``n`` rows (or files) make when ``override_num_blocks`` is not given, by Ray Data's rule
    (``_autodetect_parallelism``): ``data.default-num-blocks`` (200); when their size in memory ``nbytes`` is known,
    no block under ``data.min-block-size`` (1 MiB: a task per tiny block costs more than its rows) nor over
    ``data.max-block-size`` (128 MiB); and at least twice the cluster's CPU slots, so that every slot has work.
    Never more blocks than rows (or files).

    >>> default_blocks(10_000, nbytes=80_000, cpus=2), default_blocks(10**8, nbytes=8 * 10**8, cpus=2)
    (4, 200)
    >>> default_blocks(3, nbytes=24, cpus=2), default_blocks(500, cpus=2), default_blocks(500, cpus=128)
    (3, 200, 256)
    >>> default_blocks(10**10, nbytes=8 * 10**10, cpus=2)  # 80 GB: blocks of at most 128 MiB
    596
    """
    most = int(config.get("data.default-num-blocks"))
    if nbytes is not None:
        smallest, largest = (max(1, config.nbytes(f"data.{k}-block-size")) for k in ("min", "max"))
        most = max(min(most, nbytes // smallest), nbytes // largest)
    if n <= most:  # one row (or file) a block: the slots cannot matter
        return max(1, n)
    return min(n, max(most, 2 * (cpus if cpus is not None else cpu_slots())))


#: how long a session's CPU slots, once asked, stand (a dataset's repr and run both ask; clusters seldom resize)
SLOTS_FOR = 5.0


class _Slots:
    """A session's CPU slots, as last asked, and until when that answer stands."""

    def __init__(self, session: Any) -> None:
        self.value, self.until = 0, 0.0


def cpu_slots() -> int:
    """The CPU slots work can use: the cluster's (a plain Dask worker's threads count); before ``lc.init`` (or with
    its cluster gone), this machine's cores, as many as the local cluster ``lc.init`` starts has."""
    from ..api.session import is_initialized
    from ..api.start import current_session
    from ..cluster.groups import cpu_count
    from ..cluster.info import cpu_slots_of, workers_from_info

    if is_initialized():
        with contextlib.suppress(Exception):  # a lost cluster: its own error comes when the dataset runs
            session = current_session(auto_init=False)
            slots = session.part(_Slots)
            if time.monotonic() >= slots.until:
                workers = workers_from_info(session.client.scheduler_info(n_workers=-1))
                slots.value = max(1, int(sum(cpu_slots_of(w) for w in workers)))
                slots.until = time.monotonic() + SLOTS_FOR
            return int(slots.value)
    return cpu_count()


def _splits(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(n)``, sizes differing by at most one (the larger first)."""
    parts = max(1, min(parts, n)) if n else 1
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def check_blocks(override_num_blocks: int | None, what: str) -> None:
    if override_num_blocks is not None and (not isinstance(override_num_blocks, int) or override_num_blocks < 1):
        raise ValueError(f"{what}: override_num_blocks must be an int >= 1, got {override_num_blocks!r}")


# -- in memory ---------------------------------------------------------------------------------------------------

def _ipc(table: pa.Table) -> pa.Buffer:
    """A table (a slice too) in Arrow's stream format: only its own rows. A pickled slice carries its parent's
    whole buffers: a block cut from a 1M-row table pickled to the size of the table."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(data: pa.Buffer) -> pa.Table:
    with pa.ipc.open_stream(data) as reader:
        return reader.read_all()


def _range_block(start: int, stop: int) -> pa.Table:
    return pa.table({"id": np.arange(start, stop, dtype=np.int64)})


def range_tasks(n: int, parts: int) -> list[ReadTask]:
    return [ReadTask(_range_block, (a, b), f"range({a}, {b})", b - a) for a, b in _splits(n, parts)]


def range_source(n: int, override_num_blocks: int | None) -> Source:
    """``range(n)``, sized as one int64 column."""
    return Source("ReadRange", functools.partial(range_tasks, n), n, 8 * n, override_num_blocks, f"({n})")


def block_tasks(table: pa.Table, parts: int) -> list[ReadTask]:
    """Cut one in-memory table into ``parts`` blocks (zero-copy slices), each shipped with its task."""
    return [ReadTask(_from_ipc, (_ipc(table.slice(a, b - a)),), f"rows {a}-{b - 1}" if b > a else "no rows", b - a)
            for a, b in _splits(table.num_rows, parts)]


def table_source(name: str, table: pa.Table, override_num_blocks: int | None, by_size: bool = True) -> Source:
    """An in-memory table; ``by_size``: blocks of 1-128 MiB (:func:`default_blocks`), else a row a block."""
    return Source(name, functools.partial(block_tasks, table), table.num_rows, table.nbytes if by_size else None,
                  override_num_blocks, f"({table.num_rows} rows)")


# -- files -------------------------------------------------------------------------------------------------------

def expand_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], what: str,
                 suffixes: Sequence[str] = ()) -> list[str]:
    """Every file ``paths`` names: files as given, directories walked (sorted, hidden files skipped), globs
    expanded. A path that does not exist raises ``FileNotFoundError`` naming it, before anything runs."""
    return [path for path, _ in expand_files(paths, what, suffixes)]


def expand_files(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], what: str,
                 suffixes: Sequence[str] = ()) -> list[tuple[str, int | None]]:
    """:func:`expand_paths`, with each file's size in bytes where the listing says it (no request of its own: a
    file named is one ``info``, a directory one ``find``)."""
    import fsspec.core

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError(f"{what}: no paths given")
    out: list[tuple[str, int | None]] = []
    for item in items:
        path = os.fspath(item)
        fs, root = fsspec.core.url_to_fs(path)
        protocol = "" if "://" not in path else path.split("://", 1)[0] + "://"
        found: dict[str, Any]
        if any(c in root for c in "*?["):
            found = dict(sorted(fs.glob(root, detail=True).items()))
        else:
            try:
                info = fs.info(root)
            except FileNotFoundError:
                raise FileNotFoundError(f"{what}: no such file or directory: {path!r}") from None
            if info.get("type") == "directory":
                found = {p: info for p, info in sorted(fs.find(root, detail=True).items())
                         if not any(part.startswith((".", "_")) for part in p[len(root):].split("/") if part)}
                if suffixes:
                    found = {p: info for p, info in found.items() if p.lower().endswith(tuple(suffixes))}
            else:
                found = {root: info}
        if not found:
            raise FileNotFoundError(f"{what}: {path!r} holds no files" + (
                f" ending in {', '.join(suffixes)}" if suffixes else ""))
        for p, info in found.items():
            size = info.get("size") if isinstance(info, dict) else None
            full = p if p.startswith(protocol) or not protocol or protocol == "file://" else protocol + p
            out.append((full, int(size) if isinstance(size, (int, float)) else None))
    return out


def _open(path: str) -> Any:
    import fsspec

    return fsspec.open(path, "rb").open()


def _read_files(reader: Callable[[str], pa.Table], what: str, kind: str, paths: tuple[str, ...]) -> pa.Table:
    parts = []
    for path in paths:
        try:
            parts.append(reader(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"{what}: {path!r} disappeared before it was read") from None
        except (pa.ArrowInvalid, OSError, ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{what}: cannot read {path!r} ({type(e).__name__}: {e}); check that it is a "
                             f"valid {kind} file, or leave it out of the paths") from None
    return blocks.concat(parts)


def file_source(name: str, files: Sequence[tuple[str, int | None]], reader: Callable[[str], pa.Table], what: str,
                kind: str, override_num_blocks: int | None) -> Source:
    """Files, sized by their bytes on disk where known (:func:`default_blocks`: small files share a block, at least
    twice the CPU slots; a file is never split), each block's files of about equal bytes."""
    paths = tuple(path for path, _ in files)
    sizes = [size for _, size in files]
    known = None if any(size is None for size in sizes) else sum(int(size or 0) for size in sizes)
    cut = functools.partial(file_tasks, list(paths), [int(s or 0) for s in sizes], reader, what, kind)
    return Source(name, cut, len(paths), known, override_num_blocks, f"({plural(len(paths), 'file')})", paths)


def file_tasks(paths: list[str], sizes: list[int], reader: Callable[[str], pa.Table], what: str, kind: str,
               parts: int) -> list[ReadTask]:
    """Group the files, in order, into ``parts`` blocks of about equal bytes."""
    out = []
    for a, b in _splits_by_size(sizes, parts):
        group = tuple(paths[a:b])
        label = group[0] if len(group) == 1 else f"{group[0]} and {len(group) - 1} more"
        out.append(ReadTask(_read_files, (reader, what, kind, group), label))
    return out


def _splits_by_size(sizes: Sequence[int], parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges of ``sizes``, none empty, each ending where the running total first reaches its
    share of the whole (by count where the sizes are unknown or all zero).

    >>> _splits_by_size([100, 1, 1, 1, 1, 100], 3), _splits_by_size([0, 0, 0, 0], 2)
    ([(0, 1), (1, 5), (5, 6)], [(0, 2), (2, 4)])
    """
    n = len(sizes)
    parts = max(1, min(parts, n)) if n else 1
    total = sum(sizes)
    if not total:
        return _splits(n, parts)
    out: list[tuple[int, int]] = []
    start = running = 0
    for i, size in enumerate(sizes):
        running += size
        left_parts = parts - len(out) - 1  # ranges still to make after this one
        if left_parts == 0:
            break
        # close the range here once it holds its share, or when the files left are just enough for the rest
        if running >= total * (len(out) + 1) / parts or n - (i + 1) == left_parts:
            out.append((start, i + 1))
            start = i + 1
    out.append((start, n))
    return out


def read_parquet_file(path: str, columns: list[str] | None = None) -> pa.Table:
    import pyarrow.parquet as pq

    with _open(path) as f:
        if columns:
            check_parquet_columns(path, columns, f)
            f.seek(0)
        return pq.read_table(f, columns=columns)


def check_parquet_columns(path: str, columns: Sequence[str], f: Any = None) -> None:
    """The Parquet file at ``path`` (open as ``f``, or opened here) has every one of ``columns``, or
    :class:`blocks.MissingColumnError` says which it lacks and what it has (pyarrow's own error lists its internal
    fields, and blames the file)."""
    import pyarrow.parquet as pq

    try:
        if f is None:
            with _open(path) as opened:
                names = pq.ParquetFile(opened).schema_arrow.names
        else:
            names = pq.ParquetFile(f).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"lc.data.read_parquet: cannot read {path!r} ({type(e).__name__}: {e}); check that it is a "
                         f"valid Parquet file, or leave it out of the paths") from None
    # a nested field's path ("s.a") names its top-level column first
    blocks.require_columns(names, [c for c in columns if c.split(".", 1)[0] not in names],
                           "lc.data.read_parquet(columns=...)", holder=repr(path))


def read_csv_file(path: str) -> pa.Table:
    import pyarrow.csv as pcsv

    with _open(path) as f:
        return pcsv.read_csv(f)


def read_json_file(path: str) -> pa.Table:
    """JSON lines (one object a line), as Ray Data reads; a file holding one JSON array of objects works too."""
    import json

    import pyarrow.json as pjson

    with _open(path) as f:
        data = f.read()
    if data.lstrip()[:1] == b"[":
        return blocks.from_rows(json.loads(data), f"lc.data.read_json({path!r})")
    return pjson.read_json(io.BytesIO(data))


def read_text_file(path: str, encoding: str = "utf-8", drop_empty_lines: bool = False) -> pa.Table:
    with _open(path) as f:
        lines = f.read().decode(encoding).splitlines()
    if drop_empty_lines:
        lines = [line for line in lines if line.strip()]
    return pa.table({"text": pa.array(lines, pa.string())})


def read_binary_file(path: str, include_paths: bool = True) -> pa.Table:
    with _open(path) as f:
        data = f.read()
    columns: dict[str, Any] = {"bytes": pa.array([data], pa.binary())}
    if include_paths:
        columns["path"] = pa.array([path])
    return pa.table(columns)


def read_image_file(path: str, size: tuple[int, int] | None = None, mode: str | None = None,
                    include_paths: bool = False) -> pa.Table:
    from PIL import Image

    with _open(path) as f:
        image: Any = Image.open(f)
        if mode is not None:
            image = image.convert(mode)
        if size is not None:
            image = image.resize((size[1], size[0]))
        array = np.asarray(image)
    columns: dict[str, Any] = {"image": array[None]}
    if include_paths:
        columns["path"] = [path]
    return blocks.to_block(columns, f"lc.data.read_images({path!r})")
