"""``%%distributed``: a cell's code run on the cluster as one task.

The driver finds the names the cell reads (:func:`names_read`) and ships those the notebook defines as the task's
keyword arguments: an ``ObjectRef`` travels as a ref (wrapped, so the task does not turn it into its value), any
other value is pickled, and one that cannot be is named in the error. On the worker :func:`run_cell` runs the code
in a namespace of those names and returns the value of its last expression and the names asked for with ``-o``.

>>> names_read("import numpy as np\\ny = np.sum(x) + offset\\ny")
['np', 'x', 'offset', 'y']
>>> sorted(names_bound("import numpy as np\\nfor i in x:\\n    y = i"))
['i', 'np', 'y']
>>> run_cell("y = x * 2\\ny + 1", ["y"], x=Shipped(20))
(41, 40)
"""

from __future__ import annotations

import ast
import builtins
import linecache
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: names of IPython's own that a cell may read and that never travel
_SHELL_NAMES = frozenset({"In", "Out", "_", "__", "___", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"})


@dataclass
class Shipped:
    """A value in the cell's namespace, wrapped so that an ObjectRef stays a ref (a task gets a top-level ref's
    value)."""

    value: Any


def names_read(code: str) -> list[str]:
    """The names ``code`` reads, in the order they appear (builtins left out)."""
    tree = ast.parse(code)
    loads = sorted((node.lineno, node.col_offset, node.id) for node in ast.walk(tree)
                   if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load))
    seen = dict.fromkeys(name for _, _, name in loads)
    return [n for n in seen if not hasattr(builtins, n) and n not in _SHELL_NAMES]


def names_bound(code: str) -> set[str]:
    """The names ``code`` binds anywhere (assignments, imports, defs, loop variables)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def namespace_for(code: str, user_ns: Mapping[str, Any]) -> dict[str, Shipped]:
    """What travels with the cell: the names it reads that the notebook defines. A name the cell also binds travels
    only if it can be pickled (the cell may read it after making it itself)."""
    shipped = {n: Shipped(user_ns[n]) for n in names_read(code) if n in user_ns}
    for name in names_bound(code) & set(shipped):
        if unpicklable({name: shipped[name]}) is not None:
            del shipped[name]
    return shipped


def unpicklable(namespace: Mapping[str, Shipped]) -> tuple[str, str] | None:
    """The first name whose value cannot be pickled, and why (None: every one can)."""
    import cloudpickle

    for name, shipped in namespace.items():
        try:
            cloudpickle.dumps(shipped.value)
        except Exception as e:
            return name, f"{type(e).__name__}: {e}"
    return None


def run_cell(code: str, outputs: Sequence[str], **namespace: Shipped) -> Any:
    """Run ``code`` (on a worker) with ``namespace``; returns its last expression's value (None if it has none), or
    with ``outputs``, a tuple of that value and each output's value (a task with one return each)."""
    ns: dict[str, Any] = {"__name__": "__distributed_cell__", **{k: v.value for k, v in namespace.items()}}
    # the cell's lines, for tracebacks (a file name per cell text: two cells may run on one worker at once)
    filename = f"<%%distributed cell {zlib.crc32(code.encode()):08x}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    tree = ast.parse(code, filename=filename)
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop().value  # type: ignore[attr-defined]
    exec(compile(tree, filename, "exec"), ns)
    value = eval(compile(ast.Expression(last), filename, "eval"), ns) if last is not None else None
    missing = [n for n in outputs if n not in ns]
    if missing:
        raise NameError(f"%%distributed -o {' '.join(outputs)}: the cell defines no {missing[0]!r}; assign it in the "
                        f"cell, or drop it from -o")
    return (value, *(ns[n] for n in outputs)) if outputs else value
