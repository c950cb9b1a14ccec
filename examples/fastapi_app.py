"""The FastAPI tutorial's first app, served by serve.

Run it with `serve examples.fastapi_app:app` (needs the `fastapi` extra).
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root() -> dict[str, str]:
    return {"Hello": "World"}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict[str, int | str | None]:
    return {"item_id": item_id, "q": q}
