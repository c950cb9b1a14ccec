"""deploy/docker and the deploy files' cross-references, checked without a Docker engine.

Rules:
- The Dockerfile is read by a small parser (comments, line continuations, exec and shell
  forms) and .dockerignore by a matcher with Docker's rules (`*` stays inside a path
  segment, `**` spans any number, a pattern matching a parent directory excludes what is
  below it, `!` re-includes, the last matching pattern wins).
- The HEALTHCHECK command really runs, against a real HTTP server on 127.0.0.1.
- deploy/k8s is checked in test_deploy_k8s.py.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
LOCK = "requirements/runtime.lock"
CONFIG_PATH = "/etc/serve/prod.yaml"
HEALTH_URL = "http://127.0.0.1:9100/readyz"
HEALTH_PORT = urlsplit(HEALTH_URL).port


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; a trailing backslash continues the line, and blank and
    comment lines inside a continuation are dropped, as Docker does."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        keyword, _, args = " ".join([*pending, line]).partition(" ")
        pending = []
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"expected the exec (JSON) form, got {args!r}"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"{keyword} appears {len(found)} times, expected once"
    return found[0]


def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's --options and its exec-form command."""
    options: dict[str, str] = {}
    rest = only(dockerfile(), "HEALTHCHECK").args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, option_value = option[2:].partition("=")
        options[name] = option_value
        rest = rest.lstrip()
    kind, _, command = rest.partition(" ")
    assert kind == "CMD", f"expected HEALTHCHECK ... CMD [...], got {rest!r}"
    return options, exec_form(command.strip())


_GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_seconds(duration: str) -> float:
    """A Docker (Go) duration like '1m30s' in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * _GO_UNITS_S[unit] for number, unit in parts)


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    result = []
    for instruction in instructions:
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        words = [w for w in instruction.args.split() if not w.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        regex = _glob_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def prod_config() -> Any:
    return yaml.safe_load((ROOT / "configs" / "prod.yaml").read_text())


def test_image_is_slim_python_running_as_a_numeric_non_root_user() -> None:
    instructions = dockerfile()
    assert [i.args for i in instructions if i.keyword == "FROM"] == ["python:3.11-slim"]
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users, "the image runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert gid.isdigit() and int(gid) != 0, users[-1]


def test_image_installs_the_project_from_what_it_copied() -> None:
    instructions = dockerfile()
    install = next(
        n for n, i in enumerate(instructions) if re.search(r"pip install .*\s\.(\s|$)", i.args)
    )
    copied = {src.rstrip("/") for srcs, _ in copies(instructions[:install]) for src in srcs}
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
    packages = re.search(r"^packages\s*=\s*\[([^\]]*)\]", pyproject, re.MULTILINE)
    assert readme and packages
    # A package's folder may be a link (serve/server -> server): the image needs its target.
    folders = {
        str((ROOT / name.replace(".", "/")).resolve().relative_to(ROOT)).split("/")[0]
        for name in re.findall(r'"([^"]+)"', packages.group(1))
    }
    assert folders == {"serve", "server", "supervisor"}
    needed = {"pyproject.toml", readme.group(1), *folders}
    assert needed <= copied


def test_image_installs_dependencies_only_from_the_hashed_runtime_lock() -> None:
    instructions = dockerfile()
    first = next(n for n, i in enumerate(instructions) if "pip install" in i.args)
    installs = [i.args for i in instructions[first:] if "pip install" in i.args]
    assert installs[0] == f"pip install --require-hashes --no-deps -r {LOCK}"
    assert LOCK in {src for srcs, _ in copies(instructions[:first]) for src in srcs}
    assert all("--no-deps" in args for args in installs), installs


def test_image_runs_serve_with_the_prod_config() -> None:
    instructions = dockerfile()
    assert exec_form(only(instructions, "ENTRYPOINT").args) == ["serve"]
    assert exec_form(only(instructions, "CMD").args) == ["-c", CONFIG_PATH]
    assert (["configs/prod.yaml"], CONFIG_PATH) in copies(instructions)
    assert only(instructions, "STOPSIGNAL").args == "SIGTERM"
    exposed = {int(port) for port in only(instructions, "EXPOSE").args.split()}
    bind = prod_config()["bind"]
    assert port_of(bind if isinstance(bind, str) else bind[0]) in exposed
    assert HEALTH_PORT in exposed


def test_healthcheck_is_python_urllib_on_readyz() -> None:
    options, command = healthcheck()
    assert command[:2] == ["python", "-c"] and len(command) == 3
    assert command[2].count(HEALTH_URL) == 1
    assert "urllib.request" in command[2]
    assert go_seconds(options["start-period"]) >= prod_config()["boot_timeout"]
    assert go_seconds(options["timeout"]) > 0


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on exit codes, not on the server's log."""


@pytest.fixture
def health_port() -> Iterator[int]:
    """A real HTTP server: 200 on /readyz, 503 on any other path."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_healthcheck(target: str) -> int:
    """The HEALTHCHECK's Python code with `target` for 127.0.0.1:9100/readyz; its exit status."""
    code = healthcheck()[1][2].replace(HEALTH_URL.removeprefix("http://"), target)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    return result.returncode


@pytest.mark.parametrize(("path", "expected"), [("/readyz", 0), ("/healthz", 1)])
def test_healthcheck_exit_status_follows_the_answer(
    health_port: int, path: str, expected: int
) -> None:
    assert run_healthcheck(f"127.0.0.1:{health_port}{path}") == expected


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # 1 is "unhealthy"; Docker reserves 2, so the command must never exit with it.
    assert run_healthcheck(f"127.0.0.1:{port}/readyz") == 1


def test_dockerignore_keeps_junk_out_and_what_the_image_copies_in() -> None:
    for junk in (".git/HEAD", ".venv/bin/python", ".bench-venv", ".pytest_cache/v"):
        assert dockerignored(junk), junk
    assert dockerignored("server/__pycache__/worker.cpython-311.pyc")
    for sources, _ in copies(dockerfile()):
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source), source
            for path in (ROOT / source).rglob("*.py"):
                assert not dockerignored(str(path.relative_to(ROOT))), path


def test_every_file_the_deploy_files_point_to_exists() -> None:
    deploy = ROOT / "deploy"
    named = {
        match
        for path in deploy.rglob("*")
        if path.is_file()
        for match in re.findall(r"\bdeploy/[\w./-]+\w", path.read_text())
    }
    assert "deploy/README.md" in named
    assert [name for name in sorted(named) if not (ROOT / name).exists()] == []
