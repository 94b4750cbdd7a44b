"""The package's shape, kept true by tests: no import cycle, layers import downwards, and only the one seam
(``labcluster/dask_internals.py``) touches private names of Dask's objects."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import labcluster

PACKAGE = Path(labcluster.__file__).parent
SEAM = "labcluster.dask_internals"


def _modules() -> dict[str, Path]:
    out = {"labcluster": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="labcluster."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None
        out[info.name] = Path(spec.origin)
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The labcluster modules ``name`` imports anywhere in it (function-level imports too, not TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != "labcluster":
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 80  # the graph is really read
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(("lower", "upper"), [
    pytest.param("labcluster.scheduler", "labcluster.api", id="scheduler-below-api"),
    pytest.param("labcluster.cluster", "labcluster.api", id="cluster-below-api"),
    pytest.param("labcluster.diagnostics", "labcluster.api", id="diagnostics-below-api"),
    pytest.param("labcluster.dask_internals", "labcluster.", id="the-seam-is-a-leaf"),
])
def test_layers_import_downwards(lower: str, upper: str) -> None:
    bad = {name: sorted(t for t in targets if t.startswith(upper))
           for name, targets in import_graph().items() if name.startswith(lower)}
    assert not {k: v for k, v in bad.items() if v}, bad


def _dask_private_names() -> set[str]:
    """Private attribute names of distributed's and dask's objects (classes and modules labcluster meets)."""
    import dask
    import distributed
    import distributed.batched
    import distributed.client
    import distributed.core
    import distributed.nanny
    import distributed.scheduler
    import distributed.stealing
    import distributed.worker
    import distributed.worker_state_machine

    names: set[str] = set()
    for module in (dask, distributed, distributed.batched, distributed.client, distributed.core, distributed.nanny,
                   distributed.scheduler, distributed.stealing, distributed.worker, distributed.worker_state_machine):
        names |= {n for n in vars(module) if n.startswith("_") and not n.startswith("__")}
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__.startswith(("distributed", "dask")):
                for klass in cls.__mro__:
                    if klass.__module__.startswith(("distributed", "dask")):
                        names |= {n for n in vars(klass) if n.startswith("_") and not n.startswith("__")}
                        names |= {n for n in getattr(klass, "__slots__", ()) if n.startswith("_")
                                  and not n.startswith("__")}
    # instance attributes assigned in __init__ (self._x = ...) are not in vars(class): read them from the source
    for cls in (distributed.Client, distributed.Future, distributed.Worker, distributed.Scheduler, distributed.Nanny,
                distributed.batched.BatchedSend, distributed.client.FutureState, distributed.scheduler.TaskState,
                distributed.scheduler.WorkerState, distributed.SpecCluster):
        for klass in cls.__mro__:
            if klass.__module__.startswith(("distributed", "dask")):
                try:
                    tree = ast.parse(inspect.getsource(klass))
                except (OSError, TypeError):
                    continue
                names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                          and isinstance(n.value, ast.Name) and n.value.id == "self" and n.attr.startswith("_")
                          and not n.attr.startswith("__")}
    return names


def _own_private_names(modules: dict[str, Path]) -> set[str]:
    """Private names labcluster defines itself (attributes and functions of its own objects)."""
    own: set[str] = set()
    for path in modules.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                own.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Assign):
                own |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                                            for t in stmt.targets):
                        own |= {e.value for e in ast.walk(stmt.value) if isinstance(e, ast.Constant)
                                and isinstance(e.value, str)}
    return own


def test_only_the_seam_touches_private_names_of_dask_objects() -> None:
    modules = _modules()
    dask_private = _dask_private_names() - _own_private_names(modules)
    assert {"_send_to_scheduler", "_gather", "_scheduler_identity", "_worker_cvar"} <= dask_private | {"_state"}
    found = []
    for name, path in modules.items():
        if name == SEAM:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("distributed", "dask"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in (node.module or "").split(".")):
                    found.append(f"{name}:{node.lineno}: from {node.module} import {', '.join(private) or '...'}")
            elif isinstance(node, ast.Attribute) and node.attr in dask_private:
                found.append(f"{name}:{node.lineno}: .{node.attr}")
    assert not found, "private Dask names outside labcluster/dask_internals.py:\n" + "\n".join(found)


def test_only_the_jupyter_layer_imports_ipython() -> None:
    # DESIGN's line: labcluster/jupyter (and labcluster/server, when it exists) may import IPython, ipywidgets and
    # jupyter_server; nothing below it does, not even inside a function
    above = ("labcluster.jupyter", "labcluster.server")
    found = []
    for name, path in _modules().items():
        if name.startswith(above):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{name}:{node.lineno}: {t}" for t in targets
                      if t.split(".")[0] in ("IPython", "ipywidgets", "ipykernel", "jupyter_server")]
    assert not found, found
    assert "labcluster.jupyter.magics" in _modules()  # the layer above is really there to be skipped
