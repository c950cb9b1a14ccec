"""The `serve` command line as a real subprocess: `serve check`, config errors, --version.

Only commands that exit on their own live here; running servers belong to the supervisor
tests.
"""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess

import pytest
import yaml

from tests.conftest import ROOT
from tests.conftest import run_serve as run_in

pytestmark = pytest.mark.system


def run_serve(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> CompletedProcess[str]:
    """`serve ARGS` from the repository root, where configs/ and examples/ are."""
    return run_in(*args, cwd=cwd, env=env)


def test_check_prints_the_effective_config(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("app: examples.hello:app\nworkers: 3\nlog_level: debug\n")
    result = run_serve(
        "check",
        "-c",
        "good.yaml",
        "--log-level",
        "warning",
        cwd=tmp_path,
        env={"SERVE_BACKLOG": "64"},
    )
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["workers"] == 3
    assert effective["log_level"] == "warning"
    assert effective["backlog"] == 64
    assert effective["bind"] == ["127.0.0.1:8000"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("app: examples.hello:app\nworkers: [2\n", "bad.yaml:3:1: invalid YAML"),
        (
            "app: examples.hello:app\nwokers: 2\n",
            "bad.yaml:2:1: wokers: unknown key (did you mean 'workers'?)",
        ),
        (
            "app: examples.hello:app\nworkers: four\n",
            "bad.yaml:2:10: workers: expected a positive integer, got 'four'",
        ),
    ],
)
def test_config_errors_exit_2_with_location(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    for args in (["check", "-c", "bad.yaml"], ["-c", "bad.yaml"]):
        result = run_serve(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith(f"serve: error: {where}")
        assert result.stdout == ""


def test_flag_errors_name_the_flag() -> None:
    result = run_serve("check", "examples.hello:app", "--bind", "localhost")
    assert result.returncode == 2
    assert result.stderr == (
        "serve: error: --bind: expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N, "
        "got 'localhost'\n"
    )


@pytest.mark.parametrize("name", ["example.yaml", "prod.yaml"])
def test_shipped_configs_check(name: str) -> None:
    result = run_serve("check", "-c", f"configs/{name}")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["app"] == "examples.hello:app"


@pytest.mark.parametrize("args", [[], ["--workers", "2"], ["check"]])
def test_missing_app_exits_2(args: list[str]) -> None:
    result = run_serve(*args)
    assert result.returncode == 2
    assert "no app to serve" in result.stderr


def test_unknown_flag_exits_2() -> None:
    result = run_serve("examples.hello:app", "--wrokers", "2")
    assert result.returncode == 2
    assert "unrecognized arguments: --wrokers" in result.stderr


def test_version() -> None:
    result = run_serve("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("serve 0.1.0 ")


def test_short_version_flag() -> None:
    assert run_serve("-V").stdout == run_serve("--version").stdout


@pytest.mark.parametrize(
    ("flags", "bind"),
    [
        (["--host", "0.0.0.0", "--port", "9000"], ["0.0.0.0:9000"]),
        (["--port", "9000"], ["127.0.0.1:9000"]),
        (["--host", "::1"], ["[::1]:8000"]),
    ],
)
def test_host_and_port_set_bind_as_in_uvicorn(flags: list[str], bind: list[str]) -> None:
    result = run_serve("check", "examples.hello:app", *flags)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["bind"] == bind


def test_host_and_bind_together_are_an_error() -> None:
    result = run_serve("check", "examples.hello:app", "--bind", "127.0.0.1:1", "--port", "2")
    assert result.returncode == 2
    assert result.stderr == (
        "serve: error: --host/--port: give either --bind or --host/--port, not both\n"
    )


@pytest.mark.parametrize("flag", ["--header", "--server", "--max-requests-jit"])
def test_flags_are_never_abbreviated(flag: str) -> None:
    result = run_serve("check", "examples.hello:app", flag, "5")
    assert result.returncode == 2
    assert f"unrecognized arguments: {flag} 5" in result.stderr


def test_a_misspelt_environment_variable_is_warned_about() -> None:
    result = run_serve("check", "examples.hello:app", env={"SERVE_WOKERS": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "serve: warning: SERVE_WOKERS: unknown environment variable, ignored "
        "(did you mean 'SERVE_WORKERS'?)\n"
    )
    assert yaml.safe_load(result.stdout)["workers"] == 1


def test_help_shows_the_defaults() -> None:
    result = run_serve("--help")
    assert result.returncode == 0
    assert "number of worker processes (default: 1)" in result.stdout
    assert "(default: 127.0.0.1:8000)" in result.stdout
