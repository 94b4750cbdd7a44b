"""How Datasets run unless a call says otherwise: ``DataContext`` (as Ray Data's) and ``lc.data.execution``.

>>> with execution(mode="bulk"):
...     DataContext.get_current().execution_mode
'bulk'
>>> DataContext.get_current().execution_mode
'pipelined'
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from dask.utils import parse_bytes

from .. import config
from ..api.boundary import entry
from ..exceptions import unknown_name

MODES = ("pipelined", "bulk")


def check_mode(mode: object, what: str = "execution mode") -> str:
    """``mode`` if it is one of :data:`MODES`, else ``ValueError`` naming the fix.

    >>> check_mode("Bulk")
    Traceback (most recent call last):
    ...
    ValueError: execution mode must be 'pipelined' or 'bulk', got 'Bulk' (did you mean 'bulk'?)
    """
    if mode in MODES:
        return str(mode)
    hint = ""
    if mode == "streaming":
        hint = " (Ray Data's streaming execution is 'pipelined' here)"
    elif isinstance(mode, str) and mode.strip().lower() in MODES:
        hint = f" (did you mean {mode.strip().lower()!r}?)"
    raise ValueError(f"{what} must be 'pipelined' or 'bulk', got {mode!r}{hint}")


@dataclass(frozen=True)
class DataContext:
    """Settings of Dataset execution; defaults from ``labcluster.data.*`` in ``labcluster.yaml``."""

    #: "pipelined" (Ray-style streaming) or "bulk" (Spark-style, stage by stage)
    execution_mode: str = "pipelined"
    #: iter_batches / iter_rows give blocks in the dataset's order (else as they finish)
    preserve_order: bool = False
    #: pipelined backpressure per operator: blocks running plus finished blocks not yet taken (None: automatic)
    max_blocks_per_operator: int | None = None
    #: ... and the bytes of those finished blocks
    max_bytes_per_operator: int = 256 * 2**20

    @staticmethod
    def defaults() -> DataContext:
        blocks = config.get("data.max-blocks-per-operator")
        return DataContext(
            execution_mode=str(config.get("data.mode")),
            preserve_order=bool(config.get("data.preserve-order")),
            max_blocks_per_operator=None if blocks is None else int(blocks),
            max_bytes_per_operator=config.nbytes("data.max-bytes-per-operator"),
        )

    @staticmethod
    def get_current() -> DataContext:
        """The settings in effect here (``lc.data.execution(...)`` blocks override the defaults)."""
        return _current.get() or DataContext.defaults()

    def check(self) -> DataContext:
        check_mode(self.execution_mode)
        if self.max_blocks_per_operator is not None and (
                not isinstance(self.max_blocks_per_operator, int) or self.max_blocks_per_operator < 1):
            raise ValueError(f"max_blocks_per_operator must be an int >= 1 or None, got "
                             f"{self.max_blocks_per_operator!r}")
        return self


_current: contextvars.ContextVar[DataContext | None] = contextvars.ContextVar("labcluster_data", default=None)

_ALIASES = {"mode": "execution_mode"}


@entry(inputs=True)
def execution(mode: str | None = None, /, **settings: Any) -> contextlib.AbstractContextManager[DataContext]:
    """Run the Datasets consumed inside the block with these settings (``mode``, also as ``mode=``;
    ``preserve_order=``, ``max_blocks_per_operator=``, ``max_bytes_per_operator=``). Checked here, where it is
    called, not when the block runs.

    >>> with lc.data.execution("bulk"):              # doctest: +SKIP
    ...     rows = ds.take_all()
    """
    names = [f.name for f in fields(DataContext)]
    if mode is not None:
        if "mode" in settings:
            raise TypeError("lc.data.execution: the mode is given twice (as its first argument and as mode=)")
        settings["mode"] = mode
    given = {_ALIASES.get(k, k): v for k, v in settings.items()}
    for key in given:
        if key not in names:
            raise unknown_name("lc.data.execution setting", key, [*_ALIASES, *names])
    if isinstance(given.get("max_bytes_per_operator"), str):
        given["max_bytes_per_operator"] = int(parse_bytes(given["max_bytes_per_operator"]))
    return _using(replace(DataContext.get_current(), **given).check())


@contextlib.contextmanager
def _using(ctx: DataContext) -> Iterator[DataContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
