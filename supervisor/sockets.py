"""Bind the listening sockets once, in the master, before any fork, or adopt inherited ones.

Rules: every address is bound and listening before the first worker exists, so all workers
accept on the same kernel sockets and a worker restart never closes a listener. Sockets are
left blocking: each worker switches its inherited copy to non-blocking for its own loop. A
bind failure raises BindError with one line naming the address; the caller decides the exit
code. A unix socket path is only ever unlinked when it holds a socket: a stale one (nobody
accepting) before binding, our own (same inode) at close.

Inherited sockets: `fd://N` adopts descriptor N from the parent process. The systemd
protocol (sd_listen_fds(3)) passes LISTEN_FDS sockets from descriptor 3 on, for the process
named by LISTEN_PID; the same protocol hands our sockets to a re-executed master (USR2).
Sockets systemd passed are never unlinked by us: systemd owns them and keeps them across
restarts. Sockets we hand over carry the name "serve" in LISTEN_FDNAMES, so the new
master knows it owns their paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NoReturn

from serve.supervisor.config_bind import BindSpec, parse_bind

logger = logging.getLogger("serve.master")

# sd_listen_fds(3): passed descriptors start right after stdin, stdout and stderr.
LISTEN_FDS_START = 3
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
# LISTEN_FDNAMES entries marking a socket one serve master handed to the next: a shared
# one, or one of an address's per-slot sockets (alone on its address, it looks shared).
_OWN_NAME = "serve"
_SLOT_NAME = "serve-slot"


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
    # One of an address's per-slot sockets (slot_sockets.py).
    slot: bool = False


def bind_listeners(
    binds: Iterable[str],
    backlog: int,
    *,
    socket_mode: int | None = None,
    reuse_port: bool = False,
) -> list[Listener]:
    """Bind and listen on every address, or close what was bound and raise BindError."""
    listeners: list[Listener] = []
    try:
        for value in binds:
            listeners.append(
                bind_one(value, backlog, socket_mode=socket_mode, reuse_port=reuse_port)
            )
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def bind_one(
    value: str, backlog: int, *, socket_mode: int | None = None, reuse_port: bool = False
) -> Listener:
    try:
        spec = parse_bind(value)
    except ValueError as exc:
        raise BindError(f"cannot bind {value}: {exc}") from None
    try:
        if spec.kind == "fd":
            return adopt_fd(spec.fd, backlog)
        if spec.kind == "unix":
            return _bind_unix(spec.path, backlog, socket_mode)
        return _bind_tcp(spec, backlog, reuse_port)
    except OSError as exc:
        raise BindError(f"cannot bind {spec}: {exc.strerror or exc}") from None


def adopt_fd(fd: int, backlog: int, *, owned: bool = False, slot: bool = False) -> Listener:
    """A Listener for inherited descriptor `fd`; listen() on it if the parent did not.

    `owned` marks a unix socket whose file we remove at close (one serve handed us), `slot`
    a per-slot socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"cannot use fd://{fd}: {exc.strerror or exc}") from None
    try:
        if sock.type != socket.SOCK_STREAM:
            raise BindError(f"cannot use fd://{fd}: not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.listen(backlog)
        url = _url(sock)
        path = url.removeprefix("unix:") if sock.family == socket.AF_UNIX else ""
        # Unnamed and abstract sockets ("@name") have no file to remove.
        if owned and path and not path.startswith("@"):
            return Listener(sock, url, unix_path=path, unix_inode=os.stat(path).st_ino)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot use fd://{fd}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return Listener(sock=sock, url=url, slot=slot)


def inherited_from_systemd(environ: Mapping[str, str]) -> list[Listener] | None:
    """The sockets passed by LISTEN_FDS for this process, or None when there are none.

    Removes LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES from os.environ, so neither workers nor
    their children mistake the sockets for theirs. Raises BindError for a bad descriptor.
    """
    if environ.get("LISTEN_PID", "").strip() != str(os.getpid()):
        return None
    count_text = environ.get("LISTEN_FDS", "").strip()
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    for var in _LISTEN_VARS:
        os.environ.pop(var, None)
    if not count_text.isdigit():
        logger.warning("ignoring LISTEN_FDS=%r: expected a number of sockets", count_text)
        return None
    if int(count_text) == 0:
        return None
    listeners: list[Listener] = []
    try:
        for index in range(int(count_text)):
            name = names[index] if index < len(names) else ""
            # The manager's sockets listen already; the backlog only serves one that does not.
            listeners.append(
                adopt_fd(
                    LISTEN_FDS_START + index,
                    socket.SOMAXCONN,
                    owned=name in (_OWN_NAME, _SLOT_NAME),
                    slot=name == _SLOT_NAME,
                )
            )
    except BaseException:
        close_listeners(listeners, unlink=False)
        raise
    return listeners


def listener_fds_env(listeners: Sequence[Listener], pid: int) -> dict[str, str]:
    """LISTEN_* variables that hand `listeners` (moved to fds 3, 4, ...) to process `pid`."""
    return {
        "LISTEN_PID": str(pid),
        "LISTEN_FDS": str(len(listeners)),
        "LISTEN_FDNAMES": ":".join(_SLOT_NAME if one.slot else _OWN_NAME for one in listeners),
    }


def exec_with_listeners(
    argv: Sequence[str],
    env: Mapping[str, str],
    listeners: Sequence[Listener],
    extra: Sequence[Listener] = (),
) -> NoReturn:
    """In a freshly forked child: put the listeners on fds 3, 4, ... and exec `argv`.

    The new program finds them with inherited_from_systemd(). The `extra` sockets follow
    on the next descriptors, outside LISTEN_FDS (the caller tells the new program where, as
    upgrade.py does for the metrics listener). Never returns; raises OSError if the exec
    fails.
    """
    every = [*listeners, *extra]
    first_free = LISTEN_FDS_START + len(every)
    # Move every socket above the target range first: a listener may already sit on a
    # number another one must take.
    moved = [
        fcntl.fcntl(listener.sock.fileno(), fcntl.F_DUPFD_CLOEXEC, first_free) for listener in every
    ]
    for index, fd in enumerate(moved):
        os.dup2(fd, LISTEN_FDS_START + index, inheritable=True)
    os.execve(argv[0], list(argv), {**env, **listener_fds_env(listeners, os.getpid())})


def close_listeners(listeners: Iterable[Listener], *, unlink: bool = True) -> None:
    """Close every socket; with `unlink`, remove the unix socket files we created.

    A master that handed its sockets to a new one (USR2) passes unlink=False: the files
    now belong to the new master.
    """
    for listener in listeners:
        listener.sock.close()
        if unlink and listener.unix_path is not None:
            _unlink_own_socket(listener.unix_path, listener.unix_inode)


def _url(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = address.decode(errors="replace") if isinstance(address, bytes) else str(address)
        # An abstract socket's name starts with NUL; show it as "@name" like ss(8) does.
        return "unix:" + ("@" + path[1:] if path.startswith("\0") else path)
    host, port = address[:2]
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return f"http://{shown}:{port}"


def _bind_tcp(spec: BindSpec, backlog: int, reuse_port: bool = False) -> Listener:
    family, address = _resolve(spec)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Lets another process (a second server during a blue-green switch) bind too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # One socket per family: "[::]:80" must not also take the IPv4 port, which
            # would make an explicit "0.0.0.0:80" next to it fail.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(sock=sock, url=_url(sock))


def bind_reuseport(value: str, backlog: int, *, exclusive: bool) -> Listener:
    """The first of a TCP bind's per-slot sockets (slot_sockets.py), SO_REUSEPORT set.

    With `exclusive`, an address some other socket holds already is refused, as a plain
    bind refuses it: a second server started by mistake must not take half the traffic.
    Raises BindError.
    """
    spec = parse_bind(value)
    try:
        if exclusive and spec.port != 0:
            _probe_free(spec)
        return replace(_bind_tcp(spec, backlog, reuse_port=True), slot=True)
    except OSError as exc:
        raise BindError(f"cannot bind {spec}: {exc.strerror or exc}") from None


def bind_alike(first: Listener, backlog: int) -> Listener:
    """Another SO_REUSEPORT socket on the address and port `first` got. Raises BindError."""
    family = first.sock.family
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(first.sock.getsockname())
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {first.url}: {exc.strerror or exc}") from None
    return Listener(sock=sock, url=first.url, slot=True)


def _probe_free(spec: BindSpec) -> None:
    """Raise OSError if a socket holds the address: bound and closed at once, never
    listening, as only a socket without SO_REUSEPORT sees the others."""
    family, address = _resolve(spec)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(address)


def _resolve(spec: BindSpec) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The family and address for bind(); host names take their first address."""
    infos = socket.getaddrinfo(
        spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def _bind_unix(path: str, backlog: int, socket_mode: int | None = None) -> Listener:
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if socket_mode is not None:
            # Before listen(): no client can connect while the mode is still the umask's.
            os.chmod(path, socket_mode)
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
