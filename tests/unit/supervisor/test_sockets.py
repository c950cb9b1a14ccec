"""Binding listeners: real sockets on loopback and in a temporary directory."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.supervisor.sockets import (
    BindError,
    Listener,
    adopt_fd,
    bind_listeners,
    bind_one,
    close_listeners,
    inherited_from_systemd,
    listener_fds_env,
)
from tests.conftest import ROOT


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


def test_socket_mode_applies_to_unix_sockets(tmp_path: Path, listeners: list[Listener]) -> None:
    private = tmp_path / "private.sock"
    shared = tmp_path / "shared.sock"
    listeners += bind_listeners([f"unix:{private}"], backlog=16, socket_mode=0o600)
    listeners += bind_listeners([f"unix:{shared}"], backlog=16, socket_mode=0o666)
    assert stat.S_IMODE(private.lstat().st_mode) == 0o600
    assert stat.S_IMODE(shared.lstat().st_mode) == 0o666


def test_reuse_port_sets_so_reuseport(listeners: list[Listener]) -> None:
    listeners.append(bind_one("127.0.0.1:0", backlog=16, reuse_port=True))
    listeners.append(bind_one("127.0.0.1:0", backlog=16))
    assert listeners[0].sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    assert listeners[1].sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    # The point of it: a second socket may bind the same port.
    port = listeners[0].sock.getsockname()[1]
    listeners.append(bind_one(f"127.0.0.1:{port}", backlog=16, reuse_port=True))


def run_child(source: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source), *map(str, pass_fds)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        pass_fds=pass_fds,
        stdout=subprocess.PIPE,
        text=True,
    )


SERVE_ONE = """
    import json, os, sys
    from serve.supervisor.sockets import close_listeners, {how}
    listeners = {call}
    print(json.dumps([[l.url, l.sock.fileno(), l.unix_path] for l in listeners]), flush=True)
    conn, _ = listeners[0].sock.accept()
    conn.sendall(str(os.getpid()).encode())
    conn.close()
    close_listeners(listeners)
"""


def test_fd_bind_adopts_an_inherited_socket() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    child = run_child(
        SERVE_ONE.format(how="bind_listeners", call='bind_listeners([f"fd://{sys.argv[1]}"], 16)'),
        pass_fds=(server.fileno(),),
    )
    # Only the child holds the socket now.
    server.close()
    assert child.stdout is not None
    [[url, _, unix_path]] = json.loads(child.stdout.readline())
    assert (url, unix_path) == (f"http://127.0.0.1:{port}", None)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        assert client.recv(100) == str(child.pid).encode()
    assert child.wait(10) == 0
    child.stdout.close()


def test_fd_bind_listens_on_a_bound_socket() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        listener = adopt_fd(os.dup(bound.fileno()), backlog=16)
        try:
            assert listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            assert listener.url == f"http://127.0.0.1:{bound.getsockname()[1]}"
        finally:
            close_listeners([listener])


def test_fd_bind_errors() -> None:
    free = os.open(os.devnull, os.O_RDONLY)
    os.close(free)
    with pytest.raises(BindError) as info:
        bind_one(f"fd://{free}", backlog=16)
    assert str(info.value) == f"cannot use fd://{free}: Bad file descriptor"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(BindError) as info:
        bind_one(f"fd://{os.dup(udp.fileno())}", backlog=16)
    assert str(info.value).endswith(": not a stream socket")


def test_abstract_unix_socket_url() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(b"\0serve-test-abstract-" + str(os.getpid()).encode())
        listener = adopt_fd(os.dup(sock.fileno()), backlog=4)
        close_listeners([listener])
    assert listener.url == f"unix:@serve-test-abstract-{os.getpid()}"
    assert listener.unix_path is None


def test_listen_fds_handover_to_an_exec_ed_program(tmp_path: Path) -> None:
    """exec_with_listeners -> inherited_from_systemd: the USR2 path, end to end."""
    path = tmp_path / "app.sock"
    inner = SERVE_ONE.format(
        how="inherited_from_systemd",
        call="inherited_from_systemd(dict(os.environ))\n"
        "    assert not any(k.startswith('LISTEN_') for k in os.environ)",
    )
    child = run_child(
        f"""
        import os, sys
        from serve.supervisor.sockets import bind_listeners, exec_with_listeners
        # Occupy fds 3 and 4 first, so the sockets must move down into them.
        spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(2)]
        listeners = bind_listeners(["127.0.0.1:0", "unix:{path}"], 16)
        for fd in spare:
            os.close(fd)
        exec_with_listeners([sys.executable, "-c", {textwrap.dedent(inner)!r}], os.environ,
                            listeners)
        """
    )
    assert child.stdout is not None
    (tcp_url, tcp_fd, _), (unix_url, unix_fd, unix_path) = json.loads(child.stdout.readline())
    assert (tcp_fd, unix_fd) == (3, 4)
    assert unix_url == f"unix:{path}"
    # Handed over by serve ("serve" in LISTEN_FDNAMES): the new master owns the file.
    assert unix_path == str(path)
    port = int(tcp_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        assert client.recv(100) == str(child.pid).encode()
    assert child.wait(10) == 0
    child.stdout.close()
    assert not path.exists()


def test_listen_fds_for_another_pid_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert inherited_from_systemd(os.environ) is None
    assert os.environ["LISTEN_FDS"] == "1"
    assert inherited_from_systemd({}) is None


def test_listener_fds_env(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0", "127.0.0.1:0"], backlog=4)
    assert listener_fds_env(listeners, 42) == {
        "LISTEN_PID": "42",
        "LISTEN_FDS": "2",
        "LISTEN_FDNAMES": "serve:serve",
    }
