"""Helpers for config tests that load YAML text: the Load callable type and error_of()."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from serve.supervisor.config_loader import ConfigError
from serve.supervisor.config_schema import Config

Load = Callable[..., Config]


def error_of(load: Load, text: str, **layers: Mapping[str, object]) -> str:
    """The one-line ConfigError that loading `text` (with env/cli layers) raises."""
    with pytest.raises(ConfigError) as info:
        load(text, **layers)
    return str(info.value)
