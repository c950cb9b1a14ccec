"""What state.step() asks the loop to do.

Rules: frozen slotted dataclasses named as imperatives, no behaviour. Only arbiter.py
executes them (through the executors it names), in list order. An action whose outcome
step() must know (Spawn, LoadGeneration, ProbeHealth, StartUpgrade) makes the loop feed the
resulting event back into step() before any other event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Spawn:
    """Fork a worker for `slot` of `generation`."""

    slot: int
    generation: int


@dataclass(frozen=True, slots=True)
class StartTemplate:
    """Fork the template that imports `generation`'s app (preload); answered by
    TemplateStarted or TemplateStartFailed."""

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


@dataclass(frozen=True, slots=True)
class LoadGeneration:
    """Re-read the config and bind its new sockets for `generation`.

    Answered by GenerationLoaded or GenerationFailed.
    """

    generation: int


@dataclass(frozen=True, slots=True)
class CommitGeneration:
    """`generation` serves alone now: close the sockets only older generations used."""

    generation: int


@dataclass(frozen=True, slots=True)
class DropGeneration:
    """`generation` failed to boot: close the sockets only it used, forget its config."""

    generation: int


@dataclass(frozen=True, slots=True)
class ProbeHealth:
    """Measure these workers' memory; answered by HealthSampled."""

    pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReopenLogs:
    """Reopen the master's log file (logrotate moved it)."""


@dataclass(frozen=True, slots=True)
class StartUpgrade:
    """USR2: execute a new master on the same sockets; answered by UpgradeStarted/Failed."""


@dataclass(frozen=True, slots=True)
class AbandonUpgrade:
    """The new master died before taking over: take the pidfile back."""


@dataclass(frozen=True, slots=True)
class StopListening:
    """Close the master's listening sockets (unix socket files stay until exit)."""


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell the service manager (sd_notify) about a state change; `text` is for STATUS."""

    kind: Literal["ready", "reloading", "stopping", "mainpid"]
    text: str = ""


Action = (
    Spawn
    | StartTemplate
    | SendSignal
    | Log
    | Halt
    | LoadGeneration
    | CommitGeneration
    | DropGeneration
    | ProbeHealth
    | ReopenLogs
    | StartUpgrade
    | AbandonUpgrade
    | StopListening
    | Notify
)
