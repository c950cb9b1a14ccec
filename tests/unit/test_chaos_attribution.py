"""How the chaos driver judges failed requests against the deaths it caused (pure)."""

from __future__ import annotations

import re

from tests.chaos.attribution import DOOMED, KILLED, SLACK_S, Death, classify, deaths
from tests.load_client import Failure

KILL = Death(pid=100, doomed_at=50.0, dead_at=50.1, cause="SIGKILL")


def test_a_failure_on_the_killed_workers_connection_during_its_death_is_expected() -> None:
    failure = Failure("reset", last_pid=100, started=49.9, failed=50.1)
    verdicts = classify([failure], [KILL])
    assert verdicts.expected_by_pid == [failure]
    assert verdicts.unexpected == []


def test_a_failure_on_another_workers_connection_is_unexpected() -> None:
    failure = Failure("reset", last_pid=101, started=49.9, failed=50.1)
    assert classify([failure], [KILL]).unexpected == [failure]


def test_a_failure_long_after_the_death_is_unexpected_even_on_that_worker() -> None:
    failure = Failure("reset", last_pid=100, started=60.0, failed=60.0 + SLACK_S)
    assert classify([failure], [KILL]).unexpected == [failure]


def test_a_new_connection_failure_is_judged_by_time_only() -> None:
    during = Failure("eof", last_pid=0, started=49.0, failed=50.2)
    sent_after = Failure("eof", last_pid=0, started=52.0, failed=50.2 + SLACK_S / 2)
    verdicts = classify([during, sent_after], [KILL])
    assert verdicts.expected_by_time == [during]
    assert verdicts.unexpected == [sent_after]


def test_a_refused_connection_is_never_explained() -> None:
    refused = Failure("refused", last_pid=0, started=50.0, failed=50.0, connect=True)
    verdicts = classify([refused], [KILL])
    assert verdicts.connection_errors == [refused]
    assert verdicts.expected == 0


def test_the_first_sign_of_trouble_opens_the_window() -> None:
    # The app blocked its loop at 40; the master logged the SIGABRT death at 43.
    [death] = deaths({}, [(43.0, 7, "SIGABRT")], [(40.0, 7), (42.9, 7)])
    assert death == Death(7, 40.0, 43.0, "SIGABRT")
    held = Failure("reset", last_pid=7, started=40.5, failed=43.0)
    assert classify([held], [death]).expected_by_pid == [held]


def test_the_patterns_match_the_master_and_app_lines() -> None:
    line = "2026-11-25 16:34:36 [32090] WARNING serve.master: worker 32102 killed by SIGKILL"
    match = re.search(KILLED, line)
    assert match is not None
    assert (match[1], match[3]) == ("32102", "SIGKILL")
    exited = re.search(KILLED, "INFO serve.master: worker 9 exited with code 1")
    assert exited is not None
    assert exited[4] == "1"
    assert re.search(KILLED, "INFO serve.master: worker 9 exited with code 0") is None
    blocked = re.search(DOOMED, "app: worker 31 blocks its loop")
    assert blocked is not None
    assert blocked[1] == "31"
