"""The app of bench/preload_memory.py: FastAPI with the imports of a typical service.

Rules: no dependency on the project (peers import it too). Importing it loads FastAPI,
pydantic, numpy and a spread of the standard library, defines MODELS pydantic models and two
routes per model, and builds the OpenAPI schema once, as a service that serves /docs does on
its first request. Every route answers from data made at import, so what a worker holds
beyond the import is its server's own.
"""

import asyncio
import concurrent.futures
import decimal
import email.message
import http.cookies
import json
import logging.handlers
import sqlite3
import ssl
import uuid
import xml.etree.ElementTree as ET
import zoneinfo
from typing import Any

import numpy
import yaml
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, create_model

MODELS = 60
FIELDS = 12

app = FastAPI(title="preload bench")


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok"}


def _model(number: int) -> type[BaseModel]:
    fields: dict[str, Any] = {"id": (int, Field(ge=0))}
    for index in range(FIELDS):
        kind = (str, int, float, list[str])[index % 4]
        fields[f"field_{index}"] = (kind, Field(default_factory=kind))
    model: type[BaseModel] = create_model(f"Model{number}", **fields)
    return model


def _routes(number: int, model: type[BaseModel]) -> None:
    sample = model(id=number)

    @app.get(f"/m{number}/{{item_id}}", response_model=model, name=f"get_{number}")
    async def get(item_id: int) -> BaseModel:
        if item_id < 0:
            raise HTTPException(404)
        return sample

    # A model made at run time is a valid annotation to FastAPI, not to a type checker.
    @app.post(f"/m{number}", response_model=model, name=f"post_{number}")
    async def post(item: model) -> BaseModel:  # type: ignore[valid-type]
        return item


for _number in range(MODELS):
    _routes(_number, _model(_number))

SCHEMA = app.openapi()
# What the imports above are for in a real service; touched so no linter drops them.
TOOLS = (
    asyncio,
    concurrent.futures,
    decimal,
    email.message,
    http.cookies,
    json,
    logging.handlers,
    sqlite3,
    ssl,
    uuid,
    ET,
    zoneinfo,
    numpy,
    yaml,
)
