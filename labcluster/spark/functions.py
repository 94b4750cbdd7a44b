"""The small picklable functions RDD transformations and actions run in their tasks (each partition's work), apart
from the RDD classes so that the tasks import nothing of the driver's side.

>>> Head(2)(iter("abc")), Reduce(max)(iter([3, 9, 4])), Reduce(max)(iter([])) is EMPTY
(['a', 'b'], 9, True)
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any


class Marker:
    def __repr__(self) -> str:
        return "<empty partition>"

    def __reduce__(self) -> str:
        return "EMPTY"  # one marker in every process


EMPTY = Marker()


def glom(index: int, it: Iterator[Any]) -> Iterator[list[Any]]:
    yield list(it)


def length(it: Iterator[Any]) -> int:
    return sum(1 for _ in it)


def sum_count(it: Iterator[Any]) -> tuple[Any, int]:
    total, n = 0, 0
    for x in it:
        total += x
        n += 1
    return total, n


def counts(it: Iterator[Any]) -> dict[Any, int]:
    out: defaultdict[Any, int] = defaultdict(int)
    for x in it:
        out[x] += 1
    return dict(out)


def with_none(x: Any) -> tuple[Any, None]:
    return x, None


def first(a: Any, b: Any) -> Any:
    return a


def key(kv: tuple[Any, Any]) -> Any:
    return kv[0]


def identity_partition(k: Any) -> int:
    return int(k)


class KeyBy:
    def __init__(self, f: Callable[[Any], Any]) -> None:
        self.f = f

    def __call__(self, x: Any) -> tuple[Any, Any]:
        return self.f(x), x


class WithIndex:
    """``zipWithIndex``: each partition's elements numbered from where the partitions before it end."""

    def __init__(self, starts: list[int]) -> None:
        self.starts = starts

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[tuple[Any, int]]:
        return ((x, i) for i, x in enumerate(it, self.starts[index]))


class RoundRobin:
    """``repartition``'s keys: a partition's elements go to the output partitions in turn, each partition
    starting at another one, so the outputs come out even."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        start = random.Random(index).randrange(self.n)
        return (((start + i) % self.n, x) for i, x in enumerate(it))


class Sampler:
    def __init__(self, with_replacement: bool, fraction: float, seed: int) -> None:
        self.with_replacement, self.fraction, self.seed = with_replacement, fraction, seed

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[Any]:
        rng = random.Random(self.seed ^ (index * 0x9E3779B1))
        if not self.with_replacement:
            return (x for x in it if rng.random() < self.fraction)
        import numpy as np

        poisson = np.random.default_rng(rng.randrange(2**32))
        return (x for x in it for _ in range(int(poisson.poisson(self.fraction))))


class Head:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, it: Iterator[Any]) -> list[Any]:
        return list(itertools.islice(it, self.n))


class Top:
    def __init__(self, n: int, key: Callable[[Any], Any] | None, largest: bool) -> None:
        self.n, self.key, self.largest = n, key, largest

    def __call__(self, it: Iterator[Any]) -> list[Any]:
        pick = heapq.nlargest if self.largest else heapq.nsmallest
        return pick(self.n, it, key=self.key)


class Reduce:
    def __init__(self, f: Callable[[Any, Any], Any]) -> None:
        self.f = f

    def __call__(self, it: Iterator[Any]) -> Any:
        first = next(it, EMPTY)
        return first if first is EMPTY else functools.reduce(self.f, it, first)


class Fold:
    def __init__(self, zero: Any, op: Callable[[Any, Any], Any]) -> None:
        self.zero, self.op = zero, op

    def __call__(self, it: Iterator[Any]) -> Any:
        import copy

        return functools.reduce(self.op, it, copy.deepcopy(self.zero))


class Extreme:
    def __init__(self, pick: Callable[..., Any], key: Callable[[Any], Any] | None) -> None:
        self.pick, self.key = pick, key

    def __call__(self, it: Iterator[Any]) -> Any:
        return self.pick(it, key=self.key, default=EMPTY) if self.key else self.pick(it, default=EMPTY)


class ForEach:
    def __init__(self, f: Callable[[Any], Any]) -> None:
        self.f = f

    def __call__(self, it: Iterator[Any]) -> None:
        for x in it:
            self.f(x)


class ForEachPartition:
    def __init__(self, f: Callable[[Iterator[Any]], Any]) -> None:
        self.f = f

    def __call__(self, it: Iterator[Any]) -> None:
        self.f(it)


class Writer:
    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/")

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[str]:
        import fsspec

        name = f"{self.path}/part-{index:05d}"
        with fsspec.open(name, "w", encoding="utf-8") as f:
            for x in it:
                f.write(f"{x}\n")
        yield name


def read_lines(path: str, start: int, stop: int, compressed: bool, use_unicode: bool) -> Iterator[Any]:
    """The lines that start in bytes [start, stop) of ``path`` (a whole compressed file): a split that starts
    inside a line leaves that line to the split before, which reads past its end to finish it."""
    import fsspec

    with fsspec.open(path, "rb", compression="infer" if compressed else None) as f:
        if not compressed and start > 0:
            f.seek(start - 1)
            f.readline()  # the rest of the line the split before owns (just b"\n" if one ends at start - 1)
        while compressed or f.tell() < stop:
            line = f.readline()
            if not line:
                return
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line
            # bytes that are not UTF-8 become U+FFFD, as PySpark's lines (decoded by the JVM) show them
            yield line.decode("utf-8", "replace") if use_unicode else line

