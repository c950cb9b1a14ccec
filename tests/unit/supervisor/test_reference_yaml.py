"""configs/reference.yaml stays in sync with the Config dataclass; the shipped configs load."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from serve.supervisor.config_loader import load_config
from serve.supervisor.config_schema import NESTED, Config
from tests.conftest import ROOT

CONFIGS = ROOT / "configs"
REFERENCE = CONFIGS / "reference.yaml"
_KEY_LINE = re.compile(r"^([a-z_][a-z0-9_]*):")
_SUB_KEY_LINE = re.compile(r"^  ([a-z_][a-z0-9_]*):")


def test_reference_is_exactly_the_defaults() -> None:
    loaded = load_config(str(REFERENCE), {}, {})
    for f in dataclasses.fields(Config):
        assert getattr(loaded, f.name) == f.default, f.name
    assert loaded == Config()


def test_reference_has_every_key_and_no_other() -> None:
    keys = set(yaml.safe_load(REFERENCE.read_text()))
    assert keys == {f.name for f in dataclasses.fields(Config)}


def test_each_key_is_documented_by_the_line_above() -> None:
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(Config)}
    lines = REFERENCE.read_text().splitlines()
    seen = []
    for number, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if match:
            key = match.group(1)
            seen.append(key)
            assert number > 0
            assert lines[number - 1] == f"# {docs[key]}", key
    assert sorted(seen) == sorted(docs)


@pytest.mark.parametrize("outer", sorted(NESTED))
def test_nested_keys_are_documented_by_the_line_above(outer: str) -> None:
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(NESTED[outer])}
    lines = REFERENCE.read_text().splitlines()
    start = lines.index(f"{outer}:")
    seen = []
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if not line.startswith(" "):
            if not line.startswith("#"):
                break
            continue
        match = _SUB_KEY_LINE.match(line)
        if match:
            seen.append(match.group(1))
            assert lines[number - 1] == f"  # {docs[match.group(1)]}", match.group(1)
    assert seen == list(docs)


@pytest.mark.parametrize("name", ["example.yaml", "prod.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(str(CONFIGS / name), {}, {})
    assert config.app == "examples.hello:app"


def test_prod_differs_from_defaults_where_it_says_so() -> None:
    config = load_config(str(CONFIGS / "prod.yaml"), {}, {})
    assert config.bind == ("0.0.0.0:8000",)
    assert config.workers == 4
    assert config.log_format == "json"
    assert config.max_body_size == 10_000_000
    assert config.max_worker_memory == 1024**3
    assert (config.max_requests, config.max_requests_jitter) == (100_000, 10_000)
