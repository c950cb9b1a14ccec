"""The framework apps of the framework scenarios: FastAPI and Starlette, the same routes in each.

Rules:
- What an app of either framework typically does: a JSON route with a path parameter and a
  query (`async def`), the same route as a sync `def` (run in the framework's thread pool),
  the same route again below a mount whose app has a middleware (BaseHTTPMiddleware, the
  kind most apps write), and a POST whose 100 KiB JSON body the app parses.
- Answers are fixed for a given request, so the probe can check their exact length.
- Imported only by servers launched for these scenarios: the raw app (bench/app.py) stays
  free of framework imports, and its scenarios' memory figures with it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

# Each JSON body of the POST scenarios: {"data": "aaa..."}, 100 KiB in all.
POST_BYTES = 100 * 1024
ITEM_PATH = "/items/42?q=hello"


def item(item_id: int, q: str | None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q, "tags": ["fast", "asgi"], "ok": True}


def compact(doc: object) -> int:
    """Length of `doc` as both frameworks' JSONResponse renders it."""
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))


ITEM_BYTES = compact(item(42, "hello"))
POST_ANSWER_BYTES = compact({"received": POST_BYTES - len('{"data":""}')})


class Stamp(BaseHTTPMiddleware):
    """Adds one response header, as request-id or timing middlewares do."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["x-served-by"] = "bench"
        return response


def _fastapi_routes(api: FastAPI) -> FastAPI:
    @api.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return item(item_id, q)

    @api.get("/sync/items/{item_id}")
    def read_item_sync(item_id: int, q: str | None = None) -> dict[str, Any]:
        return item(item_id, q)

    @api.post("/upload")
    async def upload(payload: dict[str, str]) -> dict[str, int]:
        return {"received": len(payload["data"])}

    return api


fastapi_app = _fastapi_routes(FastAPI())
fastapi_app.mount("/mw", _fastapi_routes(FastAPI(middleware=[Middleware(Stamp)])))


async def _item(request: Request) -> JSONResponse:
    return JSONResponse(item(request.path_params["item_id"], request.query_params.get("q")))


def _item_sync(request: Request) -> JSONResponse:
    return JSONResponse(item(request.path_params["item_id"], request.query_params.get("q")))


async def _upload(request: Request) -> JSONResponse:
    payload = await request.json()
    return JSONResponse({"received": len(payload["data"])})


_STARLETTE_ROUTES = [
    Route("/items/{item_id:int}", _item),
    Route("/sync/items/{item_id:int}", _item_sync),
    Route("/upload", _upload, methods=["POST"]),
]
starlette_app = Starlette(
    routes=[
        *_STARLETTE_ROUTES,
        Mount("/mw", app=Starlette(routes=_STARLETTE_ROUTES, middleware=[Middleware(Stamp)])),
    ]
)
