"""Fixtures shared by the supervisor unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from serve.supervisor.config_loader import load_config
from serve.supervisor.config_schema import Config
from tests.unit.supervisor.config_text import Load


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Load:
    """Write `text` to conf.yaml in a fresh cwd and load it, so errors name 'conf.yaml'."""
    monkeypatch.chdir(tmp_path)

    def load_text(
        text: str, env: Mapping[str, str] | None = None, cli: Mapping[str, object] | None = None
    ) -> Config:
        Path("conf.yaml").write_text(text)
        return load_config("conf.yaml", env or {}, cli or {})

    return load_text
