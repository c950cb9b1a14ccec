"""accept_balance: reuseport: one SO_REUSEPORT listening socket per worker slot.

Why: with one shared socket every worker's loop drains the accept queue on each wake-up,
so the first worker to wake takes a whole burst of connections, and keep-alive keeps them
there. With a socket per slot the kernel hashes each new connection to one socket, so each
worker gets its share.

Rules:
- The master binds and holds every slot's socket for its whole life: a worker forked for
  slot k gets slot k's socket only, and when it exits (crash, reload, retirement) the
  socket stays open, so what queued on it meanwhile waits for the slot's next worker
  instead of being reset.
- The kernel keeps a port's reuseport sockets in an array, in listen() order, and closing
  one moves the last into its place. Sockets are bound in slot order and only ever closed
  from the top (the highest slot first), so index k in the kernel's array is slot k.
- Steering: while a slot has no worker that accepts or boots (waiting out a crash loop's
  backoff, its worker's loop blocked for two heartbeats, retired by TTOU or a smaller
  reload: accepting_slots), a classic BPF program on the group hashes new
  connections only to the other slots; it is detached when every slot has one again, and
  the kernel's own hash decides. What queued on a slot before stays there for its worker.
  Closing a listening socket resets the connections queued on it (the kernel's
  tcp_migrate_req is off by default), so a slot above the worker count is closed only once
  no worker holds it any more, its worker having accepted what was queued when it drained.
- The arbiter calls fit() after each step, with accepting_slots(): a pure query of the
  master's state, like fleet.py's.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import struct
from collections.abc import Collection, Iterable, Sequence

from serve.supervisor.fleet import (
    SERVING_STATES,
    SupervisorState,
    WorkerState,
    heartbeat_interval_s,
    occupant,
)
from serve.supervisor.sockets import Listener, bind_alike, close_listeners

logger = logging.getLogger("serve.master")

# <asm-generic/socket.h>; Python's socket module does not name them.
SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68
# <linux/filter.h>: loads relative to the network header, instructions as numbers.
_SKF_NET_OFF = -0x100000
_LD_H_ABS, _ALU_MUL_K, _ALU_RSH_K, _ALU_MOD_K = 0x28, 0x24, 0x74, 0x94
_JEQ_K, _RET_K, _RET_A = 0x15, 0x06, 0x16
# The TCP source port sits right after an IP header without options.
_SOURCE_PORT_OFFSET: dict[int, int] = {socket.AF_INET: 20, socket.AF_INET6: 40}
# A worker this many heartbeats late has a loop that accepts nothing meanwhile.
LATE_HEARTBEATS = 2
# Knuth's multiplicative hash: Linux hands out ephemeral ports in steps of two, so the
# port itself modulo the slot count would send one client's connections to one slot.
_GOLDEN = 2654435761


def steering_program(family: socket.AddressFamily, serving: Sequence[int]) -> bytes:
    """cBPF that sends a new connection to one of the `serving` socket indexes, by a hash
    of its source port (an index out of range would fall back to the kernel's hash)."""
    offset = (_SKF_NET_OFF + _SOURCE_PORT_OFFSET[family]) & 0xFFFFFFFF
    code = [
        (_LD_H_ABS, 0, 0, offset),
        (_ALU_MUL_K, 0, 0, _GOLDEN),
        (_ALU_RSH_K, 0, 0, 16),
        (_ALU_MOD_K, 0, 0, len(serving)),
    ]
    for position, index in enumerate(serving):
        # A == position: return the socket index, else try the next position.
        code += [(_JEQ_K, 0, 1, position), (_RET_K, 0, 0, index)]
    code.append((_RET_A, 0, 0, 0))
    return b"".join(struct.pack("HBBI", *instruction) for instruction in code)


def attach_steering(sock: socket.socket, serving: Sequence[int]) -> None:
    """Steer the reuseport group of `sock` to `serving`. Raises OSError."""
    program = steering_program(sock.family, serving)
    buffer = ctypes.create_string_buffer(program)
    # struct sock_fprog: the kernel copies the instructions during the call.
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def detach_steering(sock: socket.socket) -> None:
    """Back to the kernel's hash over every socket of the group. Raises OSError."""
    # ENOENT: no program was attached.
    with contextlib.suppress(FileNotFoundError):
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)


def accepting_slots(state: SupervisorState, now: float) -> set[int]:
    """The slots with a worker that accepts, or soon will: one forked or booting, or one
    serving whose last heartbeat is recent (a blocked or stopped loop accepts nothing).
    New connections are steered to these (supervisor/slot_sockets.py)."""
    late_s = LATE_HEARTBEATS * heartbeat_interval_s(state.policy.worker_timeout_s)
    accepting = {
        record.slot
        for record in state.workers.values()
        if record.state is WorkerState.STARTING
        or (record.state in SERVING_STATES and now - record.last_heartbeat <= late_s)
    }
    for number, slot in state.slots.items():
        # Its worker is being forked (not one waiting out a crash loop's backoff).
        if (slot.due is None or slot.due <= now) and occupant(state, number) is None:
            accepting.add(number)
    return accepting


class SlotGroup:
    """The per-slot sockets of one TCP bind; index k is slot k's socket."""

    def __init__(self, listeners: Iterable[Listener]) -> None:
        self._listeners = list(listeners)
        # The slots new connections are steered to; None: the kernel's hash over all.
        self._steered: tuple[int, ...] | None = None

    @property
    def listeners(self) -> list[Listener]:
        return list(self._listeners)

    def for_slot(self, slot: int, backlog: int) -> socket.socket:
        """Slot `slot`'s socket, bound now (with the ones below it) if it is new.

        Raises BindError."""
        while len(self._listeners) <= slot:
            self._listeners.append(bind_alike(self._listeners[0], backlog))
        return self._listeners[slot].sock

    def others(self, slot: int | None) -> list[socket.socket]:
        """Every socket but `slot`'s (all of them for None)."""
        return [item.sock for index, item in enumerate(self._listeners) if index != slot]

    def fit(self, desired: int, serving: Collection[int], held: Collection[int]) -> None:
        """Close the top slots beyond `desired` that no worker holds, and steer new
        connections to the `serving` slots."""
        while len(self._listeners) > max(desired, 1) and len(self._listeners) - 1 not in held:
            listener = self._listeners.pop()
            logger.info("Closing %s (slot %d)", listener.url, len(self._listeners))
            close_listeners([listener])
        self._steer(tuple(sorted(s for s in serving if s < len(self._listeners))))

    def close(self, *, unlink: bool = True) -> None:
        close_listeners(self._listeners, unlink=unlink)
        self._listeners.clear()

    def _steer(self, serving: tuple[int, ...]) -> None:
        everything = tuple(range(len(self._listeners)))
        wanted = None if serving in ((), everything) else serving
        if wanted == self._steered:
            return
        first, url = self._listeners[0].sock, self._listeners[0].url
        try:
            if wanted is None:
                detach_steering(first)
                logger.info("New connections on %s go to every slot again", url)
            else:
                attach_steering(first, wanted)
                shown = ", ".join(str(slot) for slot in wanted)
                logger.info("New connections on %s go to slots %s only", url, shown)
        except OSError as exc:
            # Without steering a slot with no worker still gets its share, which waits for
            # the slot's next worker: slower, not lost.
            logger.warning("cannot steer connections on %s: %s", self._listeners[0].url, exc)
        self._steered = wanted
