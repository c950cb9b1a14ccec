"""accept_balance: one SO_REUSEPORT socket per worker slot, held by the master.

Shares are statistical (the kernel hashes each connection), so the bounds are loose: each
worker of two takes at least an eighth of 64 connections opened in one burst, which one
shared socket does not give (the first worker to wake takes most of the burst, all of it
now and then).
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ServeProcess, StartServe, wait_until, write_config
from tests.load_client import Request, ResponseReader, fixed, load
from tests.system.test_systemd import first_request, socket_activated

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"
# Keep-alive clients and clients that open a connection per request, side by side.
MIXED = [fixed(Request()), fixed(Request(), close=True)] * 3


def listening_inodes(pid: int, port: int) -> set[int]:
    """Inodes of the TCP sockets listening on `port` that process `pid` holds."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                listening.add(int(fields[9]))
    return _socket_inodes(pid) & listening


def _socket_inodes(pid: int) -> set[int]:
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held


def pids_of_a_burst(port: int, connections: int) -> Counter[int]:
    """Start `connections` connects at once (not one by one), then send one request on
    each: who served them."""
    socks = []
    try:
        for _ in range(connections):
            sock = socket.socket()
            socks.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        for sock in socks:
            sock.settimeout(15)
            sock.sendall(Request().encode(close=False))
        return Counter(ResponseReader(sock).read().pid for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def workers_ready(serve: ServeProcess, count: int) -> list[int]:
    wait_until(lambda: len(serve.worker_pids()) == count)
    return serve.worker_pids()


def test_two_workers_share_bursts_of_64_connections(start_serve: StartServe) -> None:
    serve = start_serve(APP, "--workers", "2", "--no-access-log")
    workers = serve.worker_pids()
    for _ in range(3):
        counts = pids_of_a_burst(serve.port, 64)
        assert set(counts) == set(workers)
        assert min(counts.values()) >= 64 // 8


@pytest.mark.parametrize("preload", [(), ("--preload",)], ids=["fork", "preload"])
def test_each_worker_holds_only_its_own_socket_and_the_master_holds_all(
    start_serve: StartServe, preload: tuple[str, ...]
) -> None:
    serve = start_serve(APP, "--workers", "3", "--no-access-log", *preload)
    wait_until(lambda: len(serve.worker_pids()) == 3 + len(preload))
    master = listening_inodes(serve.pid, serve.port)
    # A preload template holds none of them: each worker's comes with its fork request.
    own = [listening_inodes(pid, serve.port) for pid in serve.worker_pids()]
    assert len(master) == 3
    assert sorted(len(inodes) for inodes in own) == [0] * len(preload) + [1, 1, 1]
    assert set().union(*own) == master


def test_ttin_binds_a_socket_for_the_new_slot_and_ttou_closes_it_without_a_failure(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2", "--no-access-log")
    with load(serve.port, plans=MIXED) as traffic:
        serve.signal(signal.SIGTTIN)
        serve.wait_log("SIGTTIN: scaling up to 3 workers")
        workers = workers_ready(serve, 3)
        wait_until(lambda: set(workers) <= traffic.pids)
        assert len(listening_inodes(serve.pid, serve.port)) == 3
        for count in (2, 1):
            serve.signal(signal.SIGTTOU)
            serve.wait_log(f"Closing http://127.0.0.1:{serve.port} \\(slot {count}\\)")
            workers_ready(serve, count)
            traffic.wait_for_more(200)
    assert traffic.failures == []
    assert len(listening_inodes(serve.pid, serve.port)) == 1


def test_a_reload_to_fewer_workers_closes_their_sockets_without_a_failure(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = tmp_path / "serve.yaml"
    write_config(config, app=APP, bind="127.0.0.1:0", workers=4, access_log=False)
    serve = start_serve(config=config)
    with load(serve.port, plans=MIXED) as traffic:
        write_config(config, app=APP, bind="127.0.0.1:0", workers=2, access_log=False)
        serve.signal(signal.SIGHUP)
        serve.wait_log("generation 2 ready")
        serve.wait_log(f"Closing http://127.0.0.1:{serve.port} \\(slot 2\\)")
        traffic.wait_for_more(200)
    assert traffic.failures == []
    assert len(listening_inodes(serve.pid, serve.port)) == 2


def test_a_killed_worker_loses_no_queued_connection_and_its_successor_serves(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2", "--no-access-log")
    with load(serve.port, plans=[fixed(Request(), close=True)] * 4) as traffic:
        victim = serve.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        serve.wait_log(f"worker {victim} killed by SIGKILL")
        wait_until(lambda: len(serve.worker_pids()) == 2 and victim not in serve.worker_pids())
        successor = (set(serve.worker_pids()) - {victim}).pop()
        wait_until(lambda: successor in traffic.pids)
        traffic.wait_for_more(100)
    # Each client sent one request at a time: only one it had in flight could be lost,
    # and a connection-per-request client has none held by a worker between requests.
    assert len(traffic.failures) <= len(traffic.clients)
    assert all(failure.last_pid == 0 for failure in traffic.failures)


def test_shared_keeps_one_socket_for_every_worker(start_serve: StartServe, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2, accept_balance="shared"
    )
    serve = start_serve(config=config)
    master = listening_inodes(serve.pid, serve.port)
    assert len(master) == 1
    assert all(listening_inodes(pid, serve.port) == master for pid in serve.worker_pids())


@pytest.mark.parametrize("bind", [("--bind", "fd://3"), ()], ids=["fd-3", "listen-fds"])
def test_an_inherited_socket_stays_shared(tmp_path: Path, bind: tuple[str, ...]) -> None:
    serve, port = socket_activated(tmp_path, "--workers", "2", *bind)
    try:
        first_request(serve, port)
        serve.wait_ready()
        master = listening_inodes(serve.pid, port)
        assert len(master) == 1
        assert all(listening_inodes(pid, port) == master for pid in serve.worker_pids())
    finally:
        serve.kill_group()


def test_a_unix_socket_stays_shared(start_serve: StartServe, tmp_path: Path) -> None:
    path = tmp_path / "serve.sock"
    serve = start_serve(APP, "--workers", "2", "--bind", f"unix:{path}", bind=False, wait=False)
    serve.wait_log("serve ready")
    held = [unix_listeners(pid, path) for pid in [serve.pid, *serve.worker_pids()]]
    assert len(held[0]) == 1
    assert all(inodes == held[0] for inodes in held)


def unix_listeners(pid: int, path: Path) -> set[int]:
    """Inodes of the unix sockets listening at `path` that process `pid` holds."""
    listening = {
        int(fields[6])
        for fields in (line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:])
        if len(fields) > 7 and fields[7] == str(path) and fields[5] == "01"
    }
    return listening & _socket_inodes(pid)


def upgraded(serve: ServeProcess) -> int:
    """USR2: the new master's pid, once the old one (`serve`) has exited cleanly."""
    serve.signal(signal.SIGUSR2)
    log = serve.wait_log(r"upgrade: new master (\d+) started")
    new_master = int(re.findall(r"upgrade: new master (\d+) started", log)[0])
    assert serve.wait_exit(timeout=60) == 0
    return new_master


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_usr2_hands_every_slots_socket_to_the_new_master(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2, access_log=False
    )
    serve = start_serve(config=config)
    before = listening_inodes(serve.pid, serve.port)
    with load(serve.port, plans=MIXED) as traffic:
        new_master = upgraded(serve)
        workers = children_of(new_master)
        wait_until(lambda: set(workers) <= traffic.pids)
    try:
        assert traffic.failures == []
        assert listening_inodes(new_master, serve.port) == before
        assert sorted(len(listening_inodes(pid, serve.port)) for pid in workers) == [1, 1]
    finally:
        os.kill(new_master, signal.SIGTERM)


def test_a_single_slots_socket_handed_over_by_usr2_stays_a_slot_socket(
    start_serve: StartServe, tmp_path: Path
) -> None:
    # One socket alone on its address looks like a shared one; the name it is handed over
    # with says it is slot 0's, so a TTIN in the new master binds slot 1 its own.
    config = write_config(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=1, access_log=False
    )
    serve = start_serve(config=config)
    new_master = upgraded(serve)
    try:
        wait_until(lambda: len(children_of(new_master)) == 1)
        os.kill(new_master, signal.SIGTTIN)
        wait_until(lambda: len(children_of(new_master)) == 2)
        workers = children_of(new_master)
        wait_until(lambda: len(listening_inodes(new_master, serve.port)) == 2)
        held = [listening_inodes(pid, serve.port) for pid in workers]
        assert [len(inodes) for inodes in held] == [1, 1]
        assert held[0] != held[1]
    finally:
        os.kill(new_master, signal.SIGTERM)


def test_a_reload_that_changes_accept_balance_says_it_applies_to_new_addresses(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = tmp_path / "serve.yaml"
    write_config(config, app=APP, bind="127.0.0.1:0", workers=2)
    serve = start_serve(config=config)
    write_config(config, app=APP, bind="127.0.0.1:0", workers=2, accept_balance="shared")
    serve.signal(signal.SIGHUP)
    serve.wait_log("accept_balance changed: addresses bound from now on use it")
    assert len(listening_inodes(serve.pid, serve.port)) == 2


def test_connections_made_while_the_second_worker_boots_still_reach_it(
    start_serve: StartServe, tmp_path: Path
) -> None:
    # The first worker answers at once; the second one's lifespan startup waits for a file.
    gate = tmp_path / "gate"
    serve = start_serve(
        "balance_apps:app",
        "--workers",
        "2",
        "--no-access-log",
        env={"BOOT_GATE": str(gate)},
        wait=False,
    )
    log = serve.wait_log("worker \\d+ ready")
    port = int(re.findall(r"Listening on http://127.0.0.1:(\d+)", log)[0])
    socks = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(64)]
    try:
        gate.touch()
        serve.wait_log("serve ready")
        for sock in socks:
            sock.sendall(Request().encode(close=False))
        counts = Counter(ResponseReader(sock).read().pid for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    assert len(counts) == 2
    assert min(counts.values()) >= 64 // 8


def test_a_stopped_workers_slot_gets_no_new_connections_after_two_heartbeats(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2, worker_timeout=60
    )
    serve = start_serve(config=config)
    stopped, *_ = serve.worker_pids()
    os.kill(stopped, signal.SIGSTOP)
    try:
        serve.wait_log(f"New connections on http://127.0.0.1:{serve.port} go to slots . only")
        counts = pids_of_a_burst(serve.port, 16)
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert stopped not in counts
    assert sum(counts.values()) == 16
    serve.wait_log(f"New connections on http://127.0.0.1:{serve.port} go to every slot again")
