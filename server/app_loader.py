"""Turn an app reference ("pkg.mod:attr" or an object) into an ASGI 3 callable.

Rules: every failure raises AppLoadError with one line that names the app string, so the
master can show it verbatim and the worker can exit with code 4 (the master then halts
instead of crash-looping). Nothing here runs the app; a factory is called once, with no
arguments. ASGI 2 apps (a class, or a callable taking only `scope`) are wrapped so the
rest of the worker only ever sees the ASGI 3 calling convention.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, cast

from serve.server.errors import AppLoadError
from serve.server.types import ASGIApp, Receive, Scope, Send

ASGI2Instance = Callable[[Receive, Send], Awaitable[None]]
ASGI2App = Callable[[Scope], ASGI2Instance]


def load_app(app: str | ASGIApp, *, factory: bool, app_dir: str) -> ASGIApp:
    """Import (if needed), build (if a factory) and normalise the app to ASGI 3."""
    if isinstance(app, str):
        label = app
        target = _import_from_string(app, app_dir)
    else:
        label = _describe(app)
        target = app
    if factory:
        target = _call_factory(target, label)
    return _as_asgi3(target, label)


def _import_from_string(app: str, app_dir: str) -> Any:
    module_name, _, attr = app.partition(":")
    if not (_is_dotted_name(module_name) and _is_dotted_name(attr)):
        raise AppLoadError(f"app string {app!r} must be in the form 'module:attr'")
    path = os.path.abspath(app_dir)
    if not sys.path or sys.path[0] != path:
        sys.path.insert(0, path)
    module = _import_module(module_name, app)
    target: Any = module
    for depth, part in enumerate(attr.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            detail = (
                "" if depth == 0 else f" ({'.'.join(attr.split('.')[:depth])!r} has no {part!r})"
            )
            raise AppLoadError(
                f"module {module_name!r} has no attribute {attr!r}{detail}"
            ) from None
    return target


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _import_module(module_name: str, app: str) -> Any:
    prefix = f"cannot import module {module_name!r} for app {app!r}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f"{prefix}: {_one_line(str(exc))}") from None
        raise AppLoadError(f"{prefix}: an import inside it failed: {_raised(exc)}") from exc
    except SyntaxError as exc:
        raise AppLoadError(
            f"{prefix}: SyntaxError in {exc.filename} line {exc.lineno}: {exc.msg}"
        ) from exc
    # A module that calls sys.exit() at import time is an app load failure too; letting
    # SystemExit through would turn it into an ordinary crash and a restart loop.
    except (Exception, SystemExit) as exc:
        raise AppLoadError(f"{prefix}: importing it raised {_raised(exc)}") from exc


def _raised(exc: BaseException) -> str:
    """`Type: message (in module 'x' at file:line)`, the place being the innermost frame."""
    where = _innermost_frame(exc.__traceback__)
    return f"{type(exc).__name__}: {_one_line(str(exc))}{where}"


def _innermost_frame(tb: TracebackType | None) -> str:
    # The import machinery's own frames ("<frozen importlib._bootstrap>") say nothing
    # useful; the last frame of real source is where the user's code failed.
    place = ""
    for frame, lineno in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if filename.startswith("<"):
            continue
        module = frame.f_globals.get("__name__", "?")
        place = f" (in module {module!r} at {filename}:{lineno})"
    return place


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _call_factory(target: Any, label: str) -> Any:
    if not callable(target):
        raise AppLoadError(f"factory {label!r} is not callable")
    try:
        built = target()
    except (Exception, SystemExit) as exc:
        raise AppLoadError(f"factory {label!r} raised {_raised(exc)}") from exc
    if not callable(built):
        raise AppLoadError(
            f"factory {label!r} returned a {type(built).__name__}, which is not callable"
        )
    return built


def _as_asgi3(target: Any, label: str) -> ASGIApp:
    if not callable(target):
        raise AppLoadError(f"{label!r} is not callable")
    if inspect.isclass(target):
        # A class whose instances are awaitable is constructed with (scope, receive,
        # send) and awaited: ASGI 3. Any other class is an ASGI 2 app.
        if hasattr(target, "__await__"):
            return cast(ASGIApp, target)
        return _ASGI2Adapter(cast(ASGI2App, target))
    positional = _positional_count(target)
    if positional == 0:
        raise AppLoadError(
            f"{label!r} takes no arguments; if it builds the app, load it as a factory"
        )
    if positional == 1 and not _is_coroutine_callable(target):
        return _ASGI2Adapter(target)
    return cast(ASGIApp, target)


def _positional_count(target: Any) -> int | None:
    """Positional parameters of a callable; None when unknowable or variadic."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _is_coroutine_callable(target: Any) -> bool:
    if inspect.iscoroutinefunction(target):
        return True
    return inspect.iscoroutinefunction(type(target).__call__)


def _describe(app: object) -> str:
    name = getattr(app, "__qualname__", None) or type(app).__qualname__
    module = getattr(app, "__module__", None) or type(app).__module__
    return f"{module}:{name}"


class _ASGI2Adapter:
    """ASGI 2 → ASGI 3: build the instance from the scope, then await it."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGI2App) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self._app(scope)
        await instance(receive, send)
