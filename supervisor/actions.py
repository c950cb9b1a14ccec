"""What state.step() asks the loop to do.

Rules: frozen slotted dataclasses named as imperatives, no behaviour. Only arbiter.py
executes them, in list order; executing a Spawn feeds WorkerSpawned or SpawnFailed back
into step() before any other event.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spawn:
    """Fork a worker for `slot` of `generation`."""

    slot: int
    generation: int


@dataclass(frozen=True, slots=True)
class SendSignal:
    pid: int
    sig: int


@dataclass(frozen=True, slots=True)
class Log:
    """One line for the master's log; `level` is a logging level number."""

    level: int
    message: str


@dataclass(frozen=True, slots=True)
class Halt:
    """Leave the loop; the master process exits with `code`."""

    code: int


Action = Spawn | SendSignal | Log | Halt
