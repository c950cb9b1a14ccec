"""A Starlette app and a FastAPI app exercising what real projects use."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import BackgroundTasks, FastAPI, File, Form, UploadFile
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan_state(app: Any) -> AsyncIterator[dict[str, Any]]:
    print("app: framework startup", file=sys.stderr, flush=True)
    yield {"db": "connected"}
    print("app: framework shutdown", file=sys.stderr, flush=True)


async def homepage(request: Request) -> JSONResponse:
    return JSONResponse({"db": request.state.db, "path": request.url.path})


async def numbers() -> AsyncIterator[bytes]:
    for i in range(5):
        yield f"{i}\n".encode()
        await asyncio.sleep(0)


async def streamed(request: Request) -> StreamingResponse:
    return StreamingResponse(numbers(), media_type="text/plain")


async def upload(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(str(len(body)))


starlette_app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/stream", streamed),
        Route("/upload", upload, methods=["POST"]),
    ],
    lifespan=lifespan_state,
)

fastapi_app = FastAPI(lifespan=lifespan_state)
TASKS_DONE: list[str] = []


@fastapi_app.get("/")
def read_root(request: Request) -> dict[str, str]:
    return {"Hello": "World", "db": request.state.db}


@fastapi_app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/form")
async def form(name: str = Form(...), upload: UploadFile = File(...)) -> dict[str, Any]:
    content = await upload.read()
    return {"name": name, "filename": upload.filename, "size": len(content)}


def record(label: str) -> None:
    print(f"app: background task {label} ran", file=sys.stderr, flush=True)


@fastapi_app.post("/background")
def background(tasks: BackgroundTasks) -> dict[str, bool]:
    tasks.add_task(record, "one")
    return {"queued": True}


@fastapi_app.get("/stream")
def fastapi_stream() -> StreamingResponse:
    return StreamingResponse(numbers(), media_type="text/plain")
