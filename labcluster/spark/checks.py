"""Checks an RDD operation makes in the driver, when it is called: bad input fails at once, not in a task."""

from __future__ import annotations

from typing import Any

from ..api import serialization


def checked(fn: Any, op: str) -> Any:
    """``fn`` if it can travel to the workers; else ``SerializationError`` now, naming what it captured."""
    if not callable(fn):
        raise TypeError(f"{op} needs a function, got {type(fn).__name__} {fn!r}")
    serialization.check_function(fn, f"RDD operation {op!r}")
    return fn


def partitions(n: Any, op: str) -> int:
    """``n`` if it is a valid number of partitions."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{op}: the number of partitions (numPartitions) must be an int >= 1, got {n!r}")
    return n
