"""Binding listeners: real sockets on loopback and in a temporary directory."""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.sockets import BindError, Listener, bind_listeners, bind_one, close_listeners


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    bound: list[Listener] = []
    yield bound
    close_listeners(bound)


def connect_and_accept(listener: Listener, family: int, address: tuple[str, int] | str) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(address)
        conn, _ = listener.sock.accept()
        conn.close()


def test_tcp_ipv4_ephemeral_port_reports_the_real_port(listeners: list[Listener]) -> None:
    listener = bind_one("127.0.0.1:0", backlog=16)
    listeners.append(listener)
    host, port = listener.sock.getsockname()
    assert host == "127.0.0.1"
    assert port != 0
    assert listener.url == f"http://127.0.0.1:{port}"
    assert listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    connect_and_accept(listener, socket.AF_INET, ("127.0.0.1", port))


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine cannot bind ::1")
def test_tcp_ipv6_is_v6_only(listeners: list[Listener]) -> None:
    listener = bind_one("[::1]:0", backlog=16)
    listeners.append(listener)
    port = listener.sock.getsockname()[1]
    assert listener.url == f"http://[::1]:{port}"
    assert listener.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    connect_and_accept(listener, socket.AF_INET6, ("::1", port))


def test_unix_socket_is_bound_and_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "serve.sock"
    [listener] = bind_listeners([f"unix:{path}"], backlog=16)
    try:
        assert listener.url == f"unix:{path}"
        assert stat.S_ISSOCK(path.lstat().st_mode)
        connect_and_accept(listener, socket.AF_UNIX, str(path))
    finally:
        close_listeners([listener])
    assert not path.exists()


def test_a_stale_unix_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    # bind(2) on an existing path fails with EADDRINUSE, so success means it was replaced.
    [listener] = bind_listeners([f"unix:{path}"], backlog=16)
    try:
        connect_and_accept(listener, socket.AF_UNIX, str(path))
    finally:
        close_listeners([listener])


def test_a_live_unix_socket_is_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(1)
        with pytest.raises(BindError, match="another process is listening"):
            bind_one(f"unix:{path}", backlog=16)
        assert path.exists()


def test_a_regular_file_at_the_unix_path_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(BindError) as info:
        bind_one(f"unix:{path}", backlog=16)
    assert str(info.value) == f"cannot bind unix:{path}: the path exists and is not a socket"
    assert path.read_text() == "precious"


def test_a_unix_socket_replaced_by_someone_else_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "moved.sock"
    [listener] = bind_listeners([f"unix:{path}"], backlog=16)
    os.unlink(path)
    path.write_text("another file now")
    close_listeners([listener])
    assert path.read_text() == "another file now"


def test_address_in_use_names_the_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(BindError) as info:
            bind_one(f"127.0.0.1:{port}", backlog=16)
    assert str(info.value) == f"cannot bind 127.0.0.1:{port}: {os.strerror(errno.EADDRINUSE)}"


def test_a_failure_closes_what_was_already_bound(tmp_path: Path) -> None:
    path = tmp_path / "first.sock"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BindError):
        bind_listeners([f"unix:{path}", f"unix:{blocker}"], backlog=16)
    assert not path.exists()


def test_a_malformed_address_is_a_bind_error() -> None:
    with pytest.raises(BindError, match=r"^cannot bind 127\.0\.0\.1: "):
        bind_one("127.0.0.1", backlog=16)
