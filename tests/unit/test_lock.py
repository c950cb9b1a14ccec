"""The committed locks agree with pyproject.toml and with each other.

`make run`, `make test` and the Dockerfile install only from requirements/*.lock; a
dependency added to pyproject.toml without `make lock` would never be installed by them.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(name: str) -> dict[str, str]:
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    found = (PIN.match(line) for line in lines)
    return {canonicalize_name(m.group(1)): m.group(2) for m in found if m}


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


def test_every_runtime_dependency_is_pinned_in_both_locks() -> None:
    assert declared() <= set(pins("runtime.lock"))
    assert declared() <= set(pins("dev.lock"))


def test_every_dev_dependency_is_pinned_in_the_dev_lock() -> None:
    assert declared("dev") <= set(pins("dev.lock"))


def test_the_build_backend_is_locked_for_the_no_isolation_install() -> None:
    assert "setuptools" in pins("runtime.lock")
    assert "setuptools" in pins("dev.lock")


def test_the_runtime_lock_pins_what_the_dev_lock_pins() -> None:
    runtime, dev = pins("runtime.lock"), pins("dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_every_pin_carries_a_hash() -> None:
    for name in ("runtime.lock", "dev.lock"):
        text = (ROOT / "requirements" / name).read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert all("--hash=sha256:" in entry for entry in entries if PIN.match(entry))


def bench_pins() -> list[tuple[str, str]]:
    lines = (ROOT / "bench" / "requirements.txt").read_text().splitlines()
    found = (PIN.match(line) for line in lines)
    return [(canonicalize_name(m.group(1)), m.group(2)) for m in found if m]


def test_the_bench_pins_each_package_once() -> None:
    names = [name for name, _ in bench_pins()]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []


def test_the_bench_pins_what_the_dev_lock_pins_at_the_same_release() -> None:
    dev = pins("dev.lock")
    shared = {name: version for name, version in bench_pins() if name in dev}
    assert shared == {name: dev[name] for name in shared}
