"""``%%distributed``: a cell's code run on the cluster as one task.

The driver finds the names the cell reads from the notebook (:func:`names_read`) and ships those the notebook
defines, as one dict (so an ``ObjectRef`` stays a ref: a task gets only its top-level refs as values); one that
cannot be pickled is named in the error. On the worker :func:`run_cell` runs the code in a namespace of those
names and returns the value of its last expression, and the names asked for with ``-o``.

A name is read from the notebook when the cell's top level reads it before binding it, or when one of the cell's
functions, lambdas, classes or comprehensions reads it as a global; parameters and names the cell makes first do
not travel.

>>> names_read("import numpy as np\\ny = np.sum(x) + offset\\nz = y")
['x', 'offset']
>>> names_read("f = lambda y: y + scale\\ndef g(df):\\n    return df.sum() + f(1)\\nn = n + 1")
['n', 'scale']
>>> run_cell("y = x * 2\\ny + 1", ["y"], {"x": 20})
(41, 40)
"""

from __future__ import annotations

import ast
import builtins
import linecache
import symtable
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

#: names of IPython's own that a cell may read and that never travel
_SHELL_NAMES = frozenset({"In", "Out", "_", "__", "___", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"})


class _TopLevel(ast.NodeVisitor):
    """Each name's first use at the cell's top level, in the order Python evaluates it: a read (True) or a binding."""

    def __init__(self) -> None:
        self.first: dict[str, bool] = {}

    def visit_Name(self, node: ast.Name) -> None:
        self.first.setdefault(node.id, isinstance(node.ctx, ast.Load))

    def visit_Assign(self, node: ast.Assign) -> None:  # the value is evaluated before the targets are bound
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:  # x += 1 reads x first
        if isinstance(node.target, ast.Name):
            self.first.setdefault(node.target.id, True)
        self.generic_visit(node)

    def _defined(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda) -> None:
        # what runs at the top level when it is defined: decorators, defaults, bases; its body is its own scope
        parts: list[ast.AST] = list(getattr(node, "decorator_list", []))
        if isinstance(node, ast.ClassDef):
            parts += [*node.bases, *node.keywords]
        else:
            parts += [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
        for part in parts:
            self.visit(part)
        if not isinstance(node, ast.Lambda):
            self.first.setdefault(node.name, False)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _defined

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        self.visit(node.generators[0].iter)  # evaluated here; the rest is the comprehension's own scope

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            self.first.setdefault((alias.asname or alias.name).split(".")[0], False)

    visit_ImportFrom = visit_Import


def _nested_globals(table: symtable.SymbolTable) -> list[str]:
    """The globals the cell's nested scopes (functions, lambdas, classes, comprehensions) read."""
    out: list[str] = []
    for child in table.get_children():
        out += [sym.get_name() for sym in child.get_symbols() if sym.is_global() and sym.is_referenced()]
        out += _nested_globals(child)
    return out


def names_read(code: str) -> list[str]:
    """The names ``code`` reads from the notebook's namespace (see the module docstring), builtins left out."""
    top = _TopLevel()
    top.visit(ast.parse(code))
    names = [n for n, read in top.first.items() if read]
    names += [n for n in _nested_globals(symtable.symtable(code, "<cell>", "exec")) if n not in top.first]
    return [n for n in dict.fromkeys(names) if not hasattr(builtins, n) and n not in _SHELL_NAMES]


def namespace_for(code: str, user_ns: Mapping[str, Any]) -> dict[str, Any]:
    """What travels with the cell: the names it reads that the notebook defines."""
    return {n: user_ns[n] for n in names_read(code) if n in user_ns}


def unpicklable(namespace: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first name whose value cannot be pickled, and why (None: every one can)."""
    import cloudpickle

    for name, value in namespace.items():
        try:
            cloudpickle.dumps(value)
        except Exception as e:
            return name, f"{type(e).__name__}: {e}"
    return None


def run_cell(code: str, outputs: Sequence[str], namespace: Mapping[str, Any]) -> Any:
    """Run ``code`` (on a worker) with ``namespace``; returns its last expression's value (None if it has none), or
    with ``outputs``, a tuple of that value and each output's value (a task with one return each)."""
    ns: dict[str, Any] = {"__name__": "__distributed_cell__", **namespace}
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
