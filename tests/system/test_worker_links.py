"""The master's links to its workers, without the loop: real forks of real workers.

WorkerLinks forks each worker with a channel, reads what the worker sends on it (also
after the worker was reaped: its last heartbeat waits in the socket), and makes every
child close the master's own descriptors, so no worker holds another worker's channel.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from serve.server.channel import WorkerHeartbeat, WorkerMessage, WorkerReady
from serve.supervisor.actions import Spawn
from serve.supervisor.config_schema import Config
from serve.supervisor.events import Event, WorkerSpawned
from serve.supervisor.resources import Resources
from serve.supervisor.worker_links import WorkerLinks
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.system


@dataclass
class Master:
    """What the loop would hold: the links, the selector they register in, the sockets."""

    links: WorkerLinks
    selector: selectors.PollSelector
    resources: Resources


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> Iterator[Master]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    config = Config(
        app="tests.apps.supervisor_apps:app",
        app_dir=str(ROOT),
        bind=("127.0.0.1:0",),
        access_log=False,
    )
    resources = Resources(config)
    selector = selectors.PollSelector()
    delivered: list[Event] = []
    links = WorkerLinks(resources, selector, lambda: None, delivered.append)
    try:
        yield Master(links, selector, resources)
    finally:
        links.close_all()
        selector.close()
        resources.close()


def spawn(links: WorkerLinks, slot: int) -> int:
    spawned = links.spawn(Spawn(slot, 1))
    assert isinstance(spawned, WorkerSpawned)
    return spawned.pid


def wait_ready(links: WorkerLinks, pid: int) -> list[WorkerMessage]:
    seen: list[WorkerMessage] = []

    def ready() -> bool:
        seen.extend(links.read(pid))
        return any(isinstance(message, WorkerReady) for message in seen)

    wait_until(ready, timeout=30)
    return seen


def stop(pid: int) -> int:
    os.kill(pid, signal.SIGTERM)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(int(target.removeprefix("socket:[").removesuffix("]")))
    return inodes


def test_a_worker_reports_ready_on_its_channel_and_its_last_heartbeat_outlives_it(
    master: Master,
) -> None:
    worker_links = master.links
    pid = spawn(worker_links, 0)
    wait_ready(worker_links, pid)
    assert stop(pid) == 0
    # Reaped already: the datagrams it sent before exiting are still there to read.
    assert any(isinstance(message, WorkerHeartbeat) for message in worker_links.read(pid))
    worker_links.close(pid)
    assert list(worker_links.read(pid)) == []


def test_no_worker_holds_the_master_end_of_another_workers_channel(master: Master) -> None:
    worker_links = master.links
    first = spawn(worker_links, 0)
    wait_ready(worker_links, first)
    second = spawn(worker_links, 1)
    try:
        wait_ready(worker_links, second)
        ends = {key.data: key.fileobj for key in master.selector.get_map().values()}
        first_end = ends[first]
        assert isinstance(first_end, socket.socket)
        held = socket_inodes(second)
        assert os.fstat(first_end.fileno()).st_ino not in held
        # Its slot's listener is the one socket a worker must share with the master; the
        # other slot's it must not hold (accept_balance: reuseport).
        own, other = (item.sock for item in master.resources.sockets.listeners[1::-1])
        assert os.fstat(own.fileno()).st_ino in held
        assert os.fstat(other.fileno()).st_ino not in held
    finally:
        assert stop(second) == 0
        assert stop(first) == 0
