"""Bind the listening sockets once, in the master, before any fork.

Rules: every address is bound and listening before the first worker exists, so all workers
accept on the same kernel sockets and a worker restart never closes a listener. Sockets are
left blocking: each worker switches its inherited copy to non-blocking for its own loop. A
bind failure raises BindError with one line naming the address; the caller decides the exit
code. A unix socket path is only ever unlinked when it holds a socket: a stale one (nobody
accepting) before binding, our own (same inode) at close.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from supervisor.config_schema import BindSpec, parse_bind


class BindError(Exception):
    """One address could not be bound; str() is the whole message for the operator."""


@dataclass(frozen=True, slots=True)
class Listener:
    sock: socket.socket
    # "http://127.0.0.1:8000", "http://[::1]:8000" or "unix:/run/app.sock" (real port).
    url: str
    # Set for unix sockets: the inode we created, so close only removes our own file.
    unix_path: str | None = None
    unix_inode: int = 0


def bind_listeners(binds: Iterable[str], backlog: int) -> list[Listener]:
    """Bind and listen on every address, or close what was bound and raise BindError."""
    listeners: list[Listener] = []
    try:
        for value in binds:
            listeners.append(bind_one(value, backlog))
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def bind_one(value: str, backlog: int) -> Listener:
    try:
        spec = parse_bind(value)
    except ValueError as exc:
        raise BindError(f"cannot bind {value}: {exc}") from None
    try:
        if spec.kind == "unix":
            return _bind_unix(spec.path, backlog)
        return _bind_tcp(spec, backlog)
    except OSError as exc:
        raise BindError(f"cannot bind {spec}: {exc.strerror or exc}") from None


def close_listeners(listeners: Iterable[Listener]) -> None:
    for listener in listeners:
        listener.sock.close()
        if listener.unix_path is not None:
            _unlink_own_socket(listener.unix_path, listener.unix_inode)


def _bind_tcp(spec: BindSpec, backlog: int) -> Listener:
    family, address = _resolve(spec)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # One socket per family: "[::]:80" must not also take the IPv4 port, which
            # would make an explicit "0.0.0.0:80" next to it fail.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return Listener(sock=sock, url=f"http://{shown}:{port}")


def _resolve(spec: BindSpec) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The family and address for bind(); host names take their first address."""
    infos = socket.getaddrinfo(
        spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def _bind_unix(path: str, backlog: int) -> Listener:
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        inode = os.stat(path).st_ino
    except BaseException:
        sock.close()
        raise
    return Listener(sock=sock, url=f"unix:{path}", unix_path=path, unix_inode=inode)


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"cannot bind unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        # Nobody accepts there: left behind by a process that died without cleaning up.
        os.unlink(path)
        return
    finally:
        probe.close()
    raise BindError(f"cannot bind unix:{path}: another process is listening on it")


def _unlink_own_socket(path: str, inode: int) -> None:
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
