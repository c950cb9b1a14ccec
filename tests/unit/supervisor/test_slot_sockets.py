"""Per-slot SO_REUSEPORT sockets: real sockets on loopback, real kernel steering, and
which slots the master steers to."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from serve.supervisor.fleet import (
    Policy,
    SlotRecord,
    WorkerRecord,
    WorkerState,
    initial_state,
)
from serve.supervisor.slot_sockets import (
    SlotGroup,
    accepting_slots,
    attach_steering,
    detach_steering,
)
from serve.supervisor.sockets import BindError, bind_reuseport

CONNECTIONS = 64


@pytest.fixture
def group() -> Iterator[SlotGroup]:
    made = SlotGroup([bind_reuseport("127.0.0.1:0", 256, exclusive=True)])
    made.for_slot(2, 256)
    yield made
    made.close()


def accepted_by_slot(group: SlotGroup) -> list[int]:
    """Connect CONNECTIONS times; how many each slot's socket has queued."""
    port = group.listeners[0].sock.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(CONNECTIONS)]
    counts = []
    try:
        for listener in group.listeners:
            listener.sock.setblocking(False)
            count = 0
            while True:
                try:
                    conn, _ = listener.sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            counts.append(count)
    finally:
        for client in clients:
            client.close()
    return counts


def test_for_slot_binds_the_missing_slots_on_the_same_port(group: SlotGroup) -> None:
    ports = {listener.sock.getsockname()[1] for listener in group.listeners}
    assert len(group.listeners) == 3
    assert len(ports) == 1
    assert all(
        listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        for listener in group.listeners
    )


def test_the_kernel_spreads_connections_over_every_slot(group: SlotGroup) -> None:
    counts = accepted_by_slot(group)
    assert sum(counts) == CONNECTIONS
    assert min(counts) >= CONNECTIONS // 12


def test_steering_sends_every_connection_to_the_serving_slots(group: SlotGroup) -> None:
    attach_steering(group.listeners[0].sock, [0, 2])
    counts = accepted_by_slot(group)
    assert counts[1] == 0
    assert counts[0] > 0 and counts[2] > 0
    detach_steering(group.listeners[0].sock)
    assert accepted_by_slot(group)[1] > 0


def test_fit_steers_away_from_a_slot_without_a_serving_worker(group: SlotGroup) -> None:
    group.fit(3, serving={0, 1}, held={0, 1, 2})
    assert accepted_by_slot(group)[2] == 0
    group.fit(3, serving={0, 1, 2}, held={0, 1, 2})
    assert accepted_by_slot(group)[2] > 0


def test_fit_closes_top_slots_only_once_no_worker_holds_them(group: SlotGroup) -> None:
    group.fit(1, serving={0}, held={0, 2})
    assert len(group.listeners) == 3  # slot 2 is held, and slot 1 is below it
    group.fit(1, serving={0}, held={0})
    assert len(group.listeners) == 1
    assert accepted_by_slot(group) == [CONNECTIONS]


def test_an_exclusive_bind_refuses_an_address_held_elsewhere() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(BindError, match=f"cannot bind 127.0.0.1:{port}: Address already"):
            bind_reuseport(f"127.0.0.1:{port}", 16, exclusive=True)


def record(pid: int, slot: int, state: WorkerState, last_heartbeat: float) -> WorkerRecord:
    return WorkerRecord(pid, slot, 1, state, 0.0, last_heartbeat)


def test_accepting_slots_leave_out_a_late_loop_a_drain_and_a_backoff() -> None:
    # worker_timeout 4 s: a heartbeat a second, two missed make a loop late.
    state = initial_state(Policy(worker_timeout_s=4.0), 5)
    workers = [
        record(10, 0, WorkerState.READY, 99.0),
        record(11, 1, WorkerState.READY, 97.5),  # 2.5 s late
        record(12, 2, WorkerState.STARTING, 0.0),  # booting: keeps its share
        record(13, 3, WorkerState.DRAINING, 99.0),  # aborted, replacement not forked yet
    ]
    state = replace(
        state,
        workers={r.pid: r for r in workers},
        slots={
            **state.slots,
            0: SlotRecord(due=None),
            1: SlotRecord(due=None),
            2: SlotRecord(due=None),
            3: SlotRecord(failures=3, due=100.4),  # a crash loop's backoff
            4: SlotRecord(due=100.0),  # forked now
        },
    )
    assert accepting_slots(state, 100.0) == {0, 2, 4}
