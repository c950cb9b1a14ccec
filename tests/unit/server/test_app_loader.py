"""load_app: real modules written to a temporary app_dir and imported for real."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve.server.app_loader import load_app
from serve.server.errors import AppLoadError
from serve.server.types import ASGIApp, Message


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for throwaway modules; sys.path and sys.modules are restored after."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    yield tmp_path
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        del sys.modules[name]


def write(directory: Path, relative: str, source: str) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


ASGI3_SOURCE = """
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})
"""


def call(app: ASGIApp, path: str = "/hello") -> list[Message]:
    """Run one fake HTTP request through `app` on a real event loop; return what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app({"type": "http", "path": path}, receive, send)

    asyncio.run(main())
    return sent


def load_error(app: str, app_dir: Path, factory: bool = False) -> str:
    with pytest.raises(AppLoadError) as info:
        load_app(app, factory=factory, app_dir=str(app_dir))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_loads_module_attr_and_inserts_app_dir(app_dir: Path) -> None:
    name = unique("plain")
    write(app_dir, f"{name}.py", ASGI3_SOURCE)
    app = load_app(f"{name}:app", factory=False, app_dir=str(app_dir))
    assert sys.path[0] == str(app_dir)
    assert app is sys.modules[name].app
    assert call(app)[1]["body"] == b"/hello"


def test_relative_app_dir_is_made_absolute(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("rel")
    write(app_dir / "src", f"{name}.py", ASGI3_SOURCE)
    monkeypatch.chdir(app_dir)
    load_app(f"{name}:app", factory=False, app_dir="src")
    assert sys.path[0] == os.path.join(os.getcwd(), "src")


def test_package_module_and_dotted_attribute(app_dir: Path) -> None:
    pkg = unique("pkg")
    write(app_dir, f"{pkg}/__init__.py", "")
    write(
        app_dir,
        f"{pkg}/web.py",
        """
        class Holder:
            async def app(self, scope, receive, send):
                await send({"type": "http.response.start", "status": 204, "headers": []})

        holder = Holder()
        """,
    )
    app = load_app(f"{pkg}.web:holder.app", factory=False, app_dir=str(app_dir))
    assert call(app) == [{"type": "http.response.start", "status": 204, "headers": []}]


@pytest.mark.parametrize("bad", ["foo", "foo:", ":app", "a b:app", "mod:app:x", "mod:.app"])
def test_bad_app_string(app_dir: Path, bad: str) -> None:
    assert load_error(bad, app_dir) == f"app string {bad!r} must be in the form 'module:attr'"


def test_module_itself_missing(app_dir: Path) -> None:
    name = unique("nowhere")
    message = load_error(f"{name}.mod:app", app_dir)
    assert message == (
        f"cannot import module '{name}.mod' for app '{name}.mod:app': No module named '{name}'"
    )


def test_submodule_of_existing_package_missing(app_dir: Path) -> None:
    pkg = unique("pkg")
    write(app_dir, f"{pkg}/__init__.py", "")
    message = load_error(f"{pkg}.absent:app", app_dir)
    assert message.endswith(f"No module named '{pkg}.absent'")


def test_import_inside_the_module_fails(app_dir: Path) -> None:
    name = unique("nested")
    missing = unique("dependency")
    write(app_dir, f"{name}.py", f"import os\nimport {missing}\napp = None\n")
    message = load_error(f"{name}:app", app_dir)
    assert message.startswith(
        f"cannot import module {name!r} for app '{name}:app': an import inside it failed: "
        f"ModuleNotFoundError: No module named {missing!r}"
    )
    assert f"in module {name!r} at {app_dir / (name + '.py')}:2" in message


def test_exception_raised_by_module_body(app_dir: Path) -> None:
    name = unique("boom")
    write(app_dir, f"{name}.py", "raise RuntimeError('no DATABASE_URL\\nset it')\n")
    message = load_error(f"{name}:app", app_dir)
    assert "importing it raised RuntimeError: no DATABASE_URL | set it" in message
    assert f"{name}.py:1" in message


def test_sys_exit_at_import_is_a_load_error(app_dir: Path) -> None:
    name = unique("exits")
    write(app_dir, f"{name}.py", "import sys\nsys.exit(1)\n")
    assert "importing it raised SystemExit: 1" in load_error(f"{name}:app", app_dir)


def test_syntax_error_names_file_and_line(app_dir: Path) -> None:
    name = unique("broken")
    write(app_dir, f"{name}.py", "x = 1\ndef app(:\n    pass\n")
    message = load_error(f"{name}:app", app_dir)
    assert message.startswith(
        f"cannot import module {name!r} for app '{name}:app': SyntaxError in "
    )
    assert f"{app_dir / (name + '.py')} line 2" in message


def test_attribute_missing(app_dir: Path) -> None:
    name = unique("noattr")
    write(app_dir, f"{name}.py", "other = 1\n")
    assert load_error(f"{name}:app", app_dir) == f"module {name!r} has no attribute 'app'"


def test_dotted_attribute_missing_names_the_part(app_dir: Path) -> None:
    name = unique("noattr")
    write(app_dir, f"{name}.py", "class obj:\n    pass\n")
    assert load_error(f"{name}:obj.app", app_dir) == (
        f"module {name!r} has no attribute 'obj.app' ('obj' has no 'app')"
    )


def test_not_callable(app_dir: Path) -> None:
    name = unique("notcallable")
    write(app_dir, f"{name}.py", "app = 42\n")
    assert load_error(f"{name}:app", app_dir) == f"'{name}:app' is not callable"


def test_zero_argument_callable_hints_at_factory(app_dir: Path) -> None:
    name = unique("factorylike")
    write(app_dir, f"{name}.py", "def make():\n    return None\n")
    assert "load it as a factory" in load_error(f"{name}:make", app_dir)


def test_factory_is_called(app_dir: Path) -> None:
    name = unique("factory")
    write(
        app_dir,
        f"{name}.py",
        ASGI3_SOURCE
        + """
    calls = []
    def make():
        calls.append(1)
        return app
    """,
    )
    app = load_app(f"{name}:make", factory=True, app_dir=str(app_dir))
    module = sys.modules[name]
    assert app is module.app
    assert module.calls == [1]


def test_factory_raising(app_dir: Path) -> None:
    name = unique("factory")
    write(app_dir, f"{name}.py", "def make():\n    raise ValueError('missing setting')\n")
    message = load_error(f"{name}:make", app_dir, factory=True)
    assert message.startswith(f"factory '{name}:make' raised ValueError: missing setting")


def test_factory_returning_non_callable(app_dir: Path) -> None:
    name = unique("factory")
    write(app_dir, f"{name}.py", "def make():\n    return 7\n")
    assert load_error(f"{name}:make", app_dir, factory=True) == (
        f"factory '{name}:make' returned a int, which is not callable"
    )


def test_asgi2_class_is_wrapped_and_runs(app_dir: Path) -> None:
    name = unique("asgi2")
    write(
        app_dir,
        f"{name}.py",
        """
        class App:
            def __init__(self, scope):
                self.scope = scope

            async def __call__(self, receive, send):
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": self.scope["path"].encode()})
        """,
    )
    app = load_app(f"{name}:App", factory=False, app_dir=str(app_dir))
    assert app is not sys.modules[name].App
    assert [m["type"] for m in call(app, "/two")] == ["http.response.start", "http.response.body"]
    assert call(app, "/two")[1]["body"] == b"/two"


def test_asgi2_function_is_wrapped_and_runs() -> None:
    # Typed Any: an ASGI 2 callable is exactly what the ASGIApp type does not describe.
    def asgi2(scope: Any) -> Any:
        async def instance(receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 201, "headers": []})

        return instance

    loaded: Any = asgi2
    app = load_app(loaded, factory=False, app_dir=".")
    assert app is not loaded
    assert call(app)[0]["status"] == 201


class Asgi3Object:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 203, "headers": []})


@pytest.mark.parametrize("app", [Asgi3Object(), asgi3_function], ids=["object", "function"])
def test_asgi3_objects_pass_through_unchanged(app: ASGIApp) -> None:
    assert load_app(app, factory=False, app_dir=".") is app


def test_object_factory_and_checks_apply_to_non_strings() -> None:
    def make() -> ASGIApp:
        return asgi3_function

    def make_broken() -> ASGIApp:
        raise KeyError("x")

    # Typed Any: a factory object is not an ASGIApp, yet programmatic start may pass one.
    factory: Any = make
    broken: Any = make_broken
    number: Any = 42
    assert load_app(factory, factory=True, app_dir=".") is asgi3_function
    with pytest.raises(AppLoadError, match=r"^factory '.*make_broken' raised KeyError: 'x'"):
        load_app(broken, factory=True, app_dir=".")
    with pytest.raises(AppLoadError, match=r"is not callable$"):
        load_app(number, factory=False, app_dir=".")
