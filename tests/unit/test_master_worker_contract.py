"""The master knows the worker only through a small, named set of serve.server modules.

serve.supervisor forks workers and talks to them over their channel; everything else in
serve.server (the protocols, the cycle, the parser, the counters) may change without the
master noticing. CONTRACT is that set, README's Architecture section names it, and every
import of a serve.supervisor module (TYPE_CHECKING blocks and imports inside functions
included) must stay within it. The other direction is closed entirely: no serve.server
module imports serve.supervisor.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = "serve.server"
CONTRACT = frozenset(
    {
        "serve.server.entry",  # run_worker(), the worker's entry after fork
        "serve.server.channel",  # the messages a worker sends its master
        "serve.server.settings",  # WorkerSettings and the settings types it holds
        "serve.server.exitcodes",  # the exit-code contract
        "serve.server.logs",  # logging setup, shared so both sides log alike
        "serve.server.tls",  # the TLS context, built once by the master to check the files
    }
)


def imports(source: str, package: str) -> Iterator[tuple[str, list[str]]]:
    """(module, names) for every import in `source`, relative ones made absolute; a plain
    `import m` gives (m, [])."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            yield base, [alias.name for alias in node.names]


def server_modules(source: str, package: str) -> set[str]:
    """The serve.server modules `source` imports. The serve.server package itself counts
    as a module of its own (no part of the contract): importing it, or a name its
    __init__ would re-export, crosses as much as importing a module."""
    existing = {f"{SERVER}.{path.stem}" for path in (ROOT / "server").glob("*.py")}
    found: set[str] = set()
    for module, names in imports(source, package):
        if module in existing:
            found.add(module)
        elif module == SERVER:
            candidates = {f"{SERVER}.{name}" for name in names} or {SERVER}
            found |= {name if name in existing else SERVER for name in candidates}
    return found


def package_sources(folder: str) -> list[Path]:
    paths = sorted((ROOT / folder).glob("*.py"))
    assert paths, f"no modules under {folder}/"
    return paths


@pytest.mark.parametrize("path", package_sources("supervisor"), ids=lambda path: path.name)
def test_the_master_imports_only_the_contract_modules(path: Path) -> None:
    outside = server_modules(path.read_text(), "serve.supervisor") - CONTRACT
    assert not outside, f"supervisor/{path.name} reaches past the contract into {outside}"


def test_every_contract_module_exists() -> None:
    for name in CONTRACT:
        assert (ROOT / "server" / f"{name.rsplit('.', 1)[1]}.py").is_file(), name


@pytest.mark.parametrize("path", package_sources("server"), ids=lambda path: path.name)
def test_the_worker_never_imports_the_master(path: Path) -> None:
    modules = {module for module, _ in imports(path.read_text(), SERVER)}
    master = {name for name in modules if name.split(".")[:2] == ["serve", "supervisor"]}
    assert not master, f"server/{path.name} imports {master}"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from serve.server.stats import STATS", {"serve.server.stats"}),
        ("from serve.server import stats, channel", {"serve.server.stats", "serve.server.channel"}),
        ("import serve.server.stats as s", {"serve.server.stats"}),
        ("def f():\n    from serve.server.app_loader import load_app", {"serve.server.app_loader"}),
        ("if TYPE_CHECKING:\n    from serve.server.types import Scope", {"serve.server.types"}),
        ("from serve.server.settings import WorkerSettings", {"serve.server.settings"}),
        ("from serve.supervisor.fleet import Phase", set()),
        ("from serve.server import WorkerSettings", {"serve.server"}),
        ("import serve.server", {"serve.server"}),
    ],
)
def test_every_form_of_import_is_seen(source: str, found: set[str]) -> None:
    assert server_modules(source, "serve.supervisor") == found


def test_the_readme_names_the_same_set() -> None:
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"^Master-worker contract: (.+)$", readme, re.MULTILINE)
    assert line, "README.md has no 'Master-worker contract:' line"
    assert set(re.findall(r"`(serve\.server\.\w+)`", line.group(1))) == CONTRACT
