"""The chaos driver's actions on a running master, one at a time from one thread.

Each action acts through the outside interfaces only (signals to the master, SIGKILL to a
worker, HTTP requests to the app) and waits for the master's acknowledgement where the next
decision depends on it: TTIN and TTOU wait for the master's line, so the worker count the
driver keeps is the master's (both are ignored while a reload runs). TTOU never takes the
fleet below FLOOR workers: drawn at the floor, it becomes a TTIN.

The /leak and /block requests are the chaos's own and are counted apart from the load.
/leak sends LEAK_MIB at a time on one connection until the master logs that the worker
that answered is over max_worker_memory (at most LEAK_REQUESTS requests). /block runs in
its own thread, since its answer never comes: the worker dies with the request.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.conftest import ServeProcess
from tests.load_client import SOCKET_TIMEOUT_S, Request, ResponseReader
from tests.log_follower import LogFollower

KINDS = ("hup", "ttin", "ttou", "kill9", "leak", "block")
FLOOR = 2
LEAK_MIB = 32
LEAK_REQUESTS = 8
ACK_TIMEOUT_S = 10.0
_SCALED = r"SIGTT(IN|OU): (scaling (up|down) to (\d+) workers|ignored while \w+|keeping the last)"


@dataclass
class ChaosRequests:
    leak_ok: int = 0
    leak_failed: int = 0
    # Workers the master replaced for memory after a /leak action.
    leak_replaced: int = 0
    block_sent: int = 0
    # A /block answer means the worker survived a blocked loop: never expected.
    block_answered: int = 0


@dataclass
class Chaos:
    serve: ServeProcess
    log: LogFollower
    desired: int
    rng: random.Random
    done: Counter[str] = field(default_factory=Counter)
    # pid -> time.monotonic() of the driver's SIGKILL.
    kills: dict[int, float] = field(default_factory=dict)
    requests: ChaosRequests = field(default_factory=ChaosRequests)
    _blocks: list[threading.Thread] = field(default_factory=list)
    _deck: list[str] = field(default_factory=list)

    def draw(self) -> str:
        """The next action: every kind once per shuffled round, so a short run sees them all."""
        if not self._deck:
            self._deck = list(KINDS)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def act(self, kind: str) -> None:
        if kind == "ttou" and self.desired <= FLOOR:
            kind = "ttin"
        getattr(self, f"_{kind}")()
        self.done[kind] += 1

    def _hup(self) -> None:
        self.serve.signal(signal.SIGHUP)

    def _ttin(self) -> None:
        self._scale(signal.SIGTTIN)

    def _ttou(self) -> None:
        self._scale(signal.SIGTTOU)

    def _scale(self, sig: int) -> None:
        since = self.log.mark()
        self.serve.signal(sig)
        seen = self.log.wait_for(_SCALED, since, ACK_TIMEOUT_S)
        if seen is None:
            raise RuntimeError(f"the master did not acknowledge {signal.Signals(sig).name}")
        count = seen[1].group(4)
        if count is not None:
            self.desired = int(count)

    def _kill9(self) -> None:
        pids = self.serve.worker_pids()
        if not pids:
            return
        victim = self.rng.choice(pids)
        self.kills[victim] = time.monotonic()
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            del self.kills[victim]

    def _leak(self) -> None:
        since = self.log.mark()
        request = Request(f"/leak?mib={LEAK_MIB}").encode(close=False)
        try:
            with socket.create_connection(("127.0.0.1", self.serve.port), 10) as sock:
                reader = ResponseReader(sock)
                for _ in range(LEAK_REQUESTS):
                    sock.sendall(request)
                    answer = reader.read()
                    self.requests.leak_ok += 1
                    over = rf"worker {answer.pid} uses [\d.]+ MiB of memory"
                    if self.log.wait_for(over, since, 0.6) is not None:
                        self.requests.leak_replaced += 1
                        return
                    if answer.closes:
                        return
        except (OSError, ValueError):
            self.requests.leak_failed += 1

    def _block(self) -> None:
        self.requests.block_sent += 1
        thread = threading.Thread(target=self._send_block, daemon=True)
        thread.start()
        self._blocks.append(thread)

    def _send_block(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.serve.port), 10) as sock:
                sock.settimeout(SOCKET_TIMEOUT_S)
                sock.sendall(Request("/block").encode(close=True))
                ResponseReader(sock).read()
        except (OSError, ValueError):
            return
        self.requests.block_answered += 1

    def finish(self) -> None:
        """Wait for the /block requests: each ends when its worker dies."""
        for thread in self._blocks:
            thread.join(SOCKET_TIMEOUT_S + 5)
