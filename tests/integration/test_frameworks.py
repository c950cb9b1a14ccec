"""Real Starlette and FastAPI apps served by a real `serve`, exercised with httpx."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import StartServe

pytestmark = pytest.mark.system


def test_starlette_lifespan_state_streaming_and_upload(start_serve: StartServe) -> None:
    server = start_serve("frameworks:starlette_app")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"db": "connected", "path": "/"}
        assert client.get("/stream").text == "0\n1\n2\n3\n4\n"
        assert client.post("/upload", content=b"x" * 300_000).text == "300000"
    assert server.stop() == 0
    assert "app: framework shutdown" in server.log()


def test_fastapi_json_form_upload_background_and_stream(start_serve: StartServe) -> None:
    server = start_serve("frameworks:fastapi_app", "--workers", "2")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"Hello": "World", "db": "connected"}
        assert client.get("/items/5", params={"q": "x"}).json() == {"item_id": 5, "q": "x"}
        missing = client.get("/items/not-a-number")
        assert missing.status_code == 422
        form = client.post("/form", data={"name": "n"}, files={"upload": ("a.bin", b"\0" * 70_000)})
        assert form.json() == {"name": "n", "filename": "a.bin", "size": 70_000}
        assert client.post("/background").json() == {"queued": True}
        assert client.get("/stream").text == "0\n1\n2\n3\n4\n"
    server.wait_log("app: background task one ran")
    assert server.stop() == 0
    assert server.log().count("app: framework shutdown") == 2
