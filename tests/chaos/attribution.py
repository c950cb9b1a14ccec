"""Which failed requests the chaos explains: pure functions over the master's log lines.

A failure is expected only when a worker it may have been talking to died a hard death
(SIGKILL from the driver, SIGABRT after a blocked loop, any signal or non-zero exit) while
the request was in flight:
- on a reused connection the client knows the pid that answered its previous request: that
  worker must have died, and the failure must fall between the first sign of its trouble
  and the master logging its death (with SLACK_S either side);
- on a new connection the pid is unknown: the failure must fall inside some hard death's
  window, and the request must have been sent before that death.
Every other failure, and every connection that could not be opened (the master holds the
listening socket for the whole run), is unexpected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tests.load_client import Failure

SLACK_S = 1.0
# Master lines that end a worker the hard way.
KILLED = r"worker (\d+) (killed by (SIG\w+)|exited with code ([1-9]\d*))"
# Lines that come before such an end: the app blocking its loop, the master seeing it.
DOOMED = r"(?:app: worker (\d+) blocks its loop|worker (\d+) sent no heartbeat)"


@dataclass(frozen=True)
class Death:
    pid: int
    # The first sign of trouble (the driver's kill, a blocked loop) and the logged death.
    doomed_at: float
    dead_at: float
    cause: str


def deaths(
    kills: dict[int, float],
    killed: Iterable[tuple[float, int, str]],
    doomed: Iterable[tuple[float, int]],
) -> list[Death]:
    """Hard deaths from the driver's kills (pid -> time), the master's death lines
    (time, pid, cause) and the lines that announced them (time, pid)."""
    first_sign: dict[int, float] = dict(kills)
    for at, pid in doomed:
        first_sign[pid] = min(at, first_sign.get(pid, at))
    return [Death(pid, min(first_sign.get(pid, at), at), at, cause) for at, pid, cause in killed]


def explains(death: Death, failure: Failure) -> bool:
    if not death.doomed_at - SLACK_S <= failure.failed <= death.dead_at + SLACK_S:
        return False
    if failure.last_pid:
        return failure.last_pid == death.pid
    return failure.started <= death.dead_at + SLACK_S


@dataclass(frozen=True)
class Verdicts:
    expected_by_pid: list[Failure]
    expected_by_time: list[Failure]
    unexpected: list[Failure]
    connection_errors: list[Failure]

    @property
    def expected(self) -> int:
        return len(self.expected_by_pid) + len(self.expected_by_time)


def classify(failures: Iterable[Failure], hard_deaths: list[Death]) -> Verdicts:
    verdicts = Verdicts([], [], [], [])
    for failure in failures:
        if failure.connect:
            verdicts.connection_errors.append(failure)
        elif not any(explains(death, failure) for death in hard_deaths):
            verdicts.unexpected.append(failure)
        elif failure.last_pid:
            verdicts.expected_by_pid.append(failure)
        else:
            verdicts.expected_by_time.append(failure)
    return verdicts
