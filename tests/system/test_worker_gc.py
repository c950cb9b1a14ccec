"""A worker freezes what it holds once the app is loaded and started, after collecting the
garbage that left: its full collections then walk only what requests create."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import StartServe

pytestmark = pytest.mark.system


def get(url: str) -> Any:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("flags", [(), ("--preload",)], ids=["fork", "preload"])
def test_the_app_is_frozen_after_its_import_garbage_is_collected(
    start_serve: StartServe, flags: tuple[str, ...]
) -> None:
    server = start_serve("gc_apps:app", "--workers", "1", *flags)
    first = get(server.url + "/")
    # The app, the framework and the server: thousands of objects no collection walks again.
    assert first["frozen"] > 5000, first
    # Collected before the freeze: frozen, the import's garbage would never be freed.
    assert first["import_freed"] is True, first
    assert server.stop() == 0


def test_garbage_made_while_serving_is_still_collected(start_serve: StartServe) -> None:
    server = start_serve("gc_apps:app", "--workers", "1")
    for _ in range(3):
        get(server.url + "/cycle")
    assert get(server.url + "/collect")["requests_freed"] == 3
    assert server.stop() == 0
