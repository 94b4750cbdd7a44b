"""What a partition task runs: a tree of nodes over the task's inputs, evaluated lazily on the worker.

The driver turns the narrow transformations between two stage boundaries (a shuffle, a persisted RDD, the
source) into one :class:`Plan` per partition: its ``inputs`` travel as the task's arguments (the partitions of
the stage before, as objects, so Dask fetches them as dependencies), its ``node`` says how to make the partition
from them. Every node yields elements one at a time, so ``rdd.map(f).filter(g)`` is one pass over the partition
in one task, as Spark pipelines narrow transformations.

>>> plan = Plan((["a b", "c"],), Input(0)).then(FlatMap(str.split), 0, "flatMap", "RDD[1] flatMap")
>>> list(plan.node.run(plan.inputs))
['a', 'b', 'c']
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: a transformation's code on a partition: (partition index, its elements) -> the new elements
PartitionFn = Callable[[int, Iterator[Any]], Iterable[Any]]
_NOTE = "in RDD operation "


def note(e: BaseException, where: str) -> None:
    """Say where in the job ``e`` happened, once: the innermost operation names itself, the ones after it don't."""
    if not any(n.startswith(_NOTE) for n in getattr(e, "__notes__", ())):
        e.add_note(_NOTE + where)


def guarded(elements: Iterable[Any], where: str) -> Iterator[Any]:
    try:
        yield from elements
    except Exception as e:
        note(e, where)
        raise


class Node:
    """How a partition is made from a task's inputs (``inputs[i]``: an upstream partition, as a list)."""

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        raise NotImplementedError

    def shift(self, k: int) -> Node:
        """The same node over inputs that start ``k`` positions later (when plans are put side by side)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Input(Node):
    """Input ``position`` as it is: a partition computed by an earlier stage."""

    position: int

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        return iter(inputs[self.position])

    def shift(self, k: int) -> Node:
        return Input(self.position + k)


@dataclass(frozen=True)
class Generate(Node):
    """Elements made in the task (``sc.range``, a split of a text file): ``fn(*args)``."""

    fn: Callable[..., Iterable[Any]]
    args: tuple[Any, ...]
    where: str

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        return guarded(self.fn(*self.args), self.where)

    def shift(self, k: int) -> Node:
        return self


@dataclass(frozen=True)
class Apply(Node):
    """A narrow transformation over its child's elements."""

    child: Node
    fn: PartitionFn
    index: int
    where: str

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        try:
            out = self.fn(self.index, self.child.run(inputs))
        except Exception as e:  # a mapPartitions function that raised before its first element
            note(e, self.where)
            raise
        return guarded(out, self.where)

    def shift(self, k: int) -> Node:
        return replace(self, child=self.child.shift(k))


@dataclass(frozen=True)
class Concat(Node):
    """Partitions one after the other (``coalesce`` without a shuffle)."""

    children: tuple[Node, ...]

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        return itertools.chain.from_iterable(c.run(inputs) for c in self.children)

    def shift(self, k: int) -> Node:
        return Concat(tuple(c.shift(k) for c in self.children))


@dataclass(frozen=True)
class Zip(Node):
    """``a.zip(b)``: element i of one with element i of the other; both must have as many."""

    a: Node
    b: Node
    where: str

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        done = object()
        for x, y in itertools.zip_longest(self.a.run(inputs), self.b.run(inputs), fillvalue=done):
            if x is done or y is done:
                raise ValueError(f"zip: partitions of different lengths ({self.where}); zip needs RDDs with as "
                                 f"many elements in each partition (to pair any two RDDs: zipWithIndex on both, "
                                 f"each mapped to (index, x), then join)")
            yield x, y

    def shift(self, k: int) -> Node:
        return replace(self, a=self.a.shift(k), b=self.b.shift(k))


@dataclass(frozen=True)
class Product(Node):
    """``a.cartesian(b)``: every pair of an element of ``a``'s partition and one of ``b``'s."""

    a: Node
    b: Node

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        right = list(self.b.run(inputs))
        return ((x, y) for x in self.a.run(inputs) for y in right)

    def shift(self, k: int) -> Node:
        return Product(self.a.shift(k), self.b.shift(k))


@dataclass(frozen=True)
class Aggregator:
    """How values of one key combine (Spark's ``combineByKey`` triple)."""

    create: Callable[[Any], Any]
    merge_value: Callable[[Any, Any], Any]
    merge_combiners: Callable[[Any, Any], Any]


def group_values(pairs: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    """Every value of a key in one list, in the order they came (``groupByKey``, the joins)."""
    groups: dict[Any, list[Any]] = {}
    for k, v in pairs:
        values = groups.get(k)
        if values is None:
            groups[k] = [v]
        else:
            values.append(v)
    return groups


@dataclass(frozen=True)
class Merge(Node):
    """The reduce side of a shuffle: one bucket from every map task (inputs ``start`` to ``start + count``). With an
    aggregator the buckets hold (key, combiner), combined on the map side, and the combiners of a key merge; with
    ``group`` every value of a key goes in one list; else the elements pass as they came."""

    start: int
    count: int
    aggregator: Aggregator | None
    group: bool
    where: str

    def run(self, inputs: Sequence[Any]) -> Iterator[Any]:
        pairs = itertools.chain.from_iterable(inputs[self.start:self.start + self.count])
        agg = self.aggregator
        if agg is None:
            return iter(group_values(pairs).items()) if self.group else pairs
        out: dict[Any, Any] = {}
        merge = agg.merge_combiners
        try:
            for k, c in pairs:
                out[k] = merge(out[k], c) if k in out else c
        except Exception as e:
            note(e, self.where)
            raise
        return iter(out.items())

    def shift(self, k: int) -> Node:
        return replace(self, start=self.start + k)


@dataclass(frozen=True)
class Plan:
    """One partition's task: its arguments and the node that makes the partition of them."""

    inputs: tuple[Any, ...]
    node: Node
    #: the operations fused into it, in order (the stage's name)
    ops: tuple[str, ...] = field(default=())

    def then(self, fn: PartitionFn, index: int, op: str, where: str) -> Plan:
        return Plan(self.inputs, Apply(self.node, fn, index, where), _joined(self.ops, (op,)))


def side_by_side(plans: Sequence[Plan]) -> tuple[tuple[Any, ...], list[Node], tuple[str, ...]]:
    """Plans in one task: their inputs one after the other, each node shifted to find its own."""
    inputs: list[Any] = []
    nodes: list[Node] = []
    ops: tuple[str, ...] = ()
    for plan in plans:
        nodes.append(plan.node.shift(len(inputs)))
        inputs.extend(plan.inputs)
        ops = _joined(ops, plan.ops)
    return tuple(inputs), nodes, ops


def _joined(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(op for op in b if op not in a)


# -- the partition functions of the transformations (picklable classes: a stage pickles them once) -----------------

@dataclass(frozen=True)
class Map:
    f: Callable[[Any], Any]

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[Any]:
        return map(self.f, it)


@dataclass(frozen=True)
class FlatMap:
    f: Callable[[Any], Iterable[Any]]

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[Any]:
        return itertools.chain.from_iterable(map(self.f, it))


@dataclass(frozen=True)
class Filter:
    f: Callable[[Any], Any]

    def __call__(self, index: int, it: Iterator[Any]) -> Iterator[Any]:
        return filter(self.f, it)


@dataclass(frozen=True)
class Partitions:
    """``mapPartitions`` (``with_index=False``) and ``mapPartitionsWithIndex``."""

    f: Callable[..., Iterable[Any]]
    with_index: bool

    def __call__(self, index: int, it: Iterator[Any]) -> Iterable[Any]:
        out = self.f(index, it) if self.with_index else self.f(it)
        if out is None:
            return ()  # Spark's Python API allows a partition function that returns nothing
        if not isinstance(out, Iterable):
            raise TypeError(f"a mapPartitions function must return an iterable (a list, or yield its elements), "
                            f"got {type(out).__name__}")
        return out
