"""The import graph of serve.server and serve.supervisor, read from the source with ast.

Every import counts: at module level, inside a function (the lazy ones) and under
TYPE_CHECKING, since each ties the two modules together for whoever reads or changes them.
Rules asserted: no import circle; what the worker's protocols share imports none of them.
Between the master and the worker: tests/unit/test_master_worker_contract.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import serve.server
import serve.supervisor

PACKAGES = (serve.server, serve.supervisor)
Graph = dict[str, set[str]]


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            name = package.__name__
            files[name if path.stem == "__init__" else f"{name}.{path.stem}"] = path
    return files


def imported(node: ast.Import | ast.ImportFrom, module: str, known: set[str]) -> set[str]:
    """The modules of `known` that one import statement of `module` names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:
        package = module.rsplit(".", node.level)[0]
        base = f"{package}.{base}" if base else package
    # `from serve.server import channel` names a module; `from serve.server.x import y` one.
    names = {f"{base}.{alias.name}" for alias in node.names} & known
    return names or ({base} & known)


def import_graph() -> Graph:
    files = module_files()
    known = set(files)
    graph: Graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= imported(node, module, known)
        targets.discard(module)
        graph[module] = targets
    return graph


def circles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_is_read_from_the_real_imports() -> None:
    graph = import_graph()
    assert "serve.server.channel" in graph["serve.supervisor.worker_links"]
    assert "serve.server.cycle" in graph["serve.server.context"]
    # A lazy import inside a function counts as well.
    assert "serve.server.h2_handover" in graph["serve.server.h2_dispatch"]


def test_no_import_circle_in_the_worker_or_the_master() -> None:
    assert circles(import_graph()) == []


def test_a_circle_would_be_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def worker_layer(module: str) -> int:
    """0: shared by every protocol (cycle, scope, context, leaves); 1: one protocol's own
    (h1_*, h2_*, ws_*, their settings aside); 2: the process (worker, entry)."""
    name = module.rpartition(".")[2]
    if name in ("entry", "worker"):
        return 2
    if name.split("_")[0] in ("h1", "h2", "ws") and not name.endswith("_settings"):
        return 1
    return 0


def test_shared_worker_modules_import_no_protocol_and_protocols_no_process() -> None:
    """What HTTP/1.1, HTTP/2 and WebSocket share (the cycle, the scope, the context) never
    reaches up into one of them, as the cycle once did for an h1 exception."""
    graph = import_graph()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("serve.server.")
        for target in targets
        if target.startswith("serve.server.") and worker_layer(target) > worker_layer(module)
    )
    assert upward == []
