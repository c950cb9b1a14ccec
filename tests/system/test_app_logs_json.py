"""With `--log-format json`, the app's own log records come out as the same JSON lines as
serve's: one object per record, multi-line messages and tracebacks included, INFO kept."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServe

pytestmark = pytest.mark.system

LOGGING_APP = """
import logging

log = logging.getLogger("myapp")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    log.info("first line\\nsecond line")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handled")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"logged"})
"""


def test_the_apps_records_are_json_lines_too(start_serve: StartServe, tmp_path: Path) -> None:
    (tmp_path / "logging_app.py").write_text(LOGGING_APP)
    serve = start_serve("logging_app:app", "--log-format", "json", "--no-access-log", cwd=tmp_path)
    assert httpx.get(serve.url, timeout=10).text == "logged"
    serve.wait_log('"logger": "myapp".*"handled"')
    assert serve.stop() == 0
    records = [json.loads(line) for line in serve.log().splitlines()]
    mine = [r for r in records if r["logger"] == "myapp"]
    assert [(r["level"], r["msg"]) for r in mine] == [
        ("INFO", "first line\nsecond line"),
        ("ERROR", "handled"),
    ]
    assert "ValueError: boom" in mine[1]["exc"]
