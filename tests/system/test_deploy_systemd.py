"""The systemd units in deploy/systemd: accepted by systemd-analyze, and saying what we mean.

systemd-analyze verify runs against a throwaway root: the host's system units (for targets
like sysinit.target), our units in etc/systemd/system, and an executable stub at every
absolute path an Exec*= line names, because verify refuses a unit whose command does not
exist. No systemd needs to be running. verify exits 0 even for an unknown or unparsable key
and only prints a warning, so any line naming one of our units counts as a failure.

The runtime side (systemd-socket-activate serving and surviving a HUP) is test_systemd.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.fleet import STOP_MARGIN_S
from tests.conftest import ROOT

pytestmark = pytest.mark.system

UNIT_DIR = ROOT / "deploy" / "systemd"
SERVICES = ("serve.service", "serve-activated.service")
UNITS = (*SERVICES, "serve.socket")
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
CONFIG_PATH = "/etc/serve/prod.yaml"

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    # Empty: port 8000 needs no privilege, and serve.socket binds low ports for the service.
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(path: Path) -> Unit:
    """Sections of a unit file as ordered (key, value) pairs; keys may repeat."""
    sections: Unit = {}
    current: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [value for name, value in unit.get(section, []) if name == key]


def value(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= set {len(found)} times, expected once"
    return found[0]


_SPAN_UNITS_S = {"us": 1e-6, "ms": 1e-3, "": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0}
_SPAN_UNITS_S |= {"min": 60.0, "h": 3600.0, "hr": 3600.0}
_SPAN_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")


def seconds(span: str) -> float:
    """A systemd time span ("45s", "1min 30s", "90") in seconds."""
    total, position = 0.0, 0
    while position < len(span):
        match = _SPAN_RE.match(span, position)
        assert match and match.group(2) in _SPAN_UNITS_S, f"not a time span: {span!r}"
        total += float(match.group(1)) * _SPAN_UNITS_S[match.group(2)]
        position = match.end()
    return total


def prod_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "prod.yaml").read_text())
    return config


def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail(
            "systemd-analyze is not installed: it ships with systemd "
            "(Debian/Ubuntu: apt-get install systemd); this test needs the real tool"
        )
    return binary


def verify(unit_files: list[Path], root: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of `unit_files`, installed into the fresh root `root`."""
    host_units = next((d for d in HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    assert host_units is not None, f"no systemd unit directory among {HOST_UNIT_DIRS}"
    shutil.copytree(host_units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    installed = root / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    for unit_file in unit_files:
        shutil.copy(unit_file, installed / unit_file.name)
        for key, text in parse_unit(unit_file).get("Service", []):
            if key.startswith("Exec"):
                stub = root / text.lstrip("-@:+!").split()[0].lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    command = [systemd_analyze(), "verify", "--man=no", "--generators=no", f"--root={root}"]
    command += [str(installed / unit_file.name) for unit_file in unit_files]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def complaints(result: subprocess.CompletedProcess[str], names: list[str]) -> list[str]:
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if any(name in line for name in names)]


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    result = verify([UNIT_DIR / name for name in UNITS], tmp_path / "root")
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints(result, list(UNITS)) == []


def test_verify_reports_a_misspelt_key(tmp_path: Path) -> None:
    """The check above can fail: a unit with a typo in a hardening key is reported."""
    broken = tmp_path / "serve.service"
    text = (UNIT_DIR / "serve.service").read_text()
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = verify([broken], tmp_path / "root")
    assert any("ProtectSytem" in line for line in complaints(result, ["serve.service"]))


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_serve_under_notify_with_a_waiting_reload(name: str) -> None:
    unit = parse_unit(UNIT_DIR / name)
    assert value(unit, "Service", "Type") == "notify"
    assert value(unit, "Service", "NotifyAccess") == "main"
    assert value(unit, "Service", "ExecStart") == f"/usr/local/bin/serve -c {CONFIG_PATH}"
    # `serve reload` waits for the outcome, so a failed reload fails `systemctl reload`.
    assert value(unit, "Service", "ExecReload") == f"/usr/local/bin/serve reload -c {CONFIG_PATH}"
    assert value(unit, "Service", "KillMode") == "mixed"
    assert value(unit, "Service", "Restart") == "on-failure"
    assert seconds(value(unit, "Service", "WatchdogSec")) > 0


@pytest.mark.parametrize("name", SERVICES)
def test_service_timeouts_cover_the_configured_ones(name: str) -> None:
    unit = parse_unit(UNIT_DIR / name)
    config = prod_config()
    # The master kills workers STOP_MARGIN_S after graceful_timeout; systemd must not first.
    stop_budget = config["graceful_timeout"] + STOP_MARGIN_S + config.get("shutdown_delay", 0)
    assert seconds(value(unit, "Service", "TimeoutStopSec")) > stop_budget
    assert seconds(value(unit, "Service", "TimeoutStartSec")) > config["boot_timeout"]
    assert int(value(unit, "Service", "LimitNOFILE")) > config["limit_concurrency"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_unprivileged_and_hardened(name: str) -> None:
    unit = parse_unit(UNIT_DIR / name)
    assert value(unit, "Service", "DynamicUser") == "yes"
    assert value(unit, "Service", "User") not in ("root", "0")
    for key, expected in HARDENING.items():
        assert value(unit, "Service", key) == expected, key
    runtime_dir = value(unit, "Service", "RuntimeDirectory")
    assert value(unit, "Service", "Environment") == f"SERVE_PIDFILE=/run/{runtime_dir}/serve.pid"


def test_activated_service_differs_from_serve_service_only_in_unit_deps() -> None:
    plain = parse_unit(UNIT_DIR / "serve.service")
    activated = parse_unit(UNIT_DIR / "serve-activated.service")
    assert activated["Service"] == plain["Service"]
    assert value(activated, "Unit", "Requires") == "serve.socket"
    assert "serve.socket" in value(activated, "Unit", "After").split()
    assert value(activated, "Unit", "Conflicts") == "serve.service"
    assert value(activated, "Install", "Also") == "serve.socket"


def test_socket_matches_prod_yaml() -> None:
    socket_unit = parse_unit(UNIT_DIR / "serve.socket")
    config = prod_config()
    bind = config["bind"] if isinstance(config["bind"], str) else config["bind"][0]
    listen = value(socket_unit, "Socket", "ListenStream")
    assert listen.rpartition(":")[2] == bind.rpartition(":")[2]
    assert int(value(socket_unit, "Socket", "Backlog")) == config["backlog"]
    assert value(socket_unit, "Socket", "Accept") == "no"
    assert value(socket_unit, "Socket", "Service") == "serve-activated.service"
    assert value(socket_unit, "Install", "WantedBy") == "sockets.target"
