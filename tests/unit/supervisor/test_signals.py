"""The master's signal handlers record, wake the loop, lose nothing and clean up after."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable, Iterator

import pytest

from serve.supervisor.signals import HANDLED_SIGNALS, SignalCatcher


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_signal_is_queued_once_and_wakes_the_loop() -> None:
    with SignalCatcher() as catcher:
        assert not readable(catcher.wakeup_fd)
        signal.raise_signal(signal.SIGUSR1)
        assert readable(catcher.wakeup_fd)
        assert catcher.pending()
        assert catcher.drain() == [signal.SIGUSR1]
        assert not readable(catcher.wakeup_fd)
        assert not catcher.pending()
        assert catcher.drain() == []


def test_repeated_signals_are_all_kept_in_order() -> None:
    with SignalCatcher() as catcher:
        for _ in range(20):
            signal.raise_signal(signal.SIGTTIN)
        signal.raise_signal(signal.SIGTERM)
        assert catcher.drain() == [signal.SIGTTIN] * 20 + [signal.SIGTERM]


def test_original_handlers_and_wakeup_fd_are_restored() -> None:
    originals = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd)
    try:
        with pytest.raises(RuntimeError), SignalCatcher() as catcher:
            assert signal.getsignal(signal.SIGTERM) != originals[signal.SIGTERM]
            pipe = catcher.fds
            raise RuntimeError("the loop failed")
        assert {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS} == originals
        assert signal.set_wakeup_fd(previous) == write_fd
        for fd in pipe:
            with pytest.raises(OSError):
                os.fstat(fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)


@pytest.fixture
def python_defaults() -> Iterator[None]:
    """Python's own start-up dispositions, whatever this run inherited: a shell starting
    the suite in the background without job control ignores SIGINT and SIGQUIT, which
    workers keep ignored (see the nohup test below)."""
    saved = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _python_default(signum))
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _python_default(signum: signal.Signals) -> object:
    return signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL


def reset_child_passes(catcher: SignalCatcher, check: Callable[[], bool]) -> bool:
    """Fork; in the child, reset as a worker does and exit with whether `check` holds."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            catcher.reset_in_child()
            code = 0 if check() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _all_default() -> bool:
    defaults = all(
        signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler)
        for signum in HANDLED_SIGNALS
    )
    return defaults and signal.set_wakeup_fd(-1) == -1


@pytest.mark.usefixtures("python_defaults")
def test_a_forked_worker_gets_default_handlers_and_no_wakeup_fd() -> None:
    with SignalCatcher() as catcher:
        assert reset_child_passes(catcher, _all_default)
        # The child closing its copies leaves the master's pipe working.
        signal.raise_signal(signal.SIGUSR2)
        assert readable(catcher.wakeup_fd)
        assert signal.SIGUSR2 in catcher.drain()


@pytest.mark.usefixtures("python_defaults")
def test_a_forked_worker_gets_defaults_even_where_the_embedding_program_had_handlers() -> None:
    # serve.run() called from a program that handles SIGTERM and SIGHUP itself: its workers
    # must not run that program's handlers (they would never drain on TERM).
    def program_handler(signum: int, frame: object) -> None:
        del signum, frame

    signal.signal(signal.SIGTERM, program_handler)
    signal.signal(signal.SIGHUP, program_handler)
    with SignalCatcher() as catcher:
        assert reset_child_passes(catcher, _all_default)
    assert signal.getsignal(signal.SIGTERM) is program_handler


@pytest.mark.usefixtures("python_defaults")
def test_a_signal_ignored_before_the_master_started_stays_ignored_in_its_workers() -> None:
    # `nohup serve ...`: the terminal's hang-up must not kill the workers either.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def hup_ignored_term_default() -> bool:
        ignored = signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        return ignored and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    with SignalCatcher() as catcher:
        assert reset_child_passes(catcher, hup_ignored_term_default)
