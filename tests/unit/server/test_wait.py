"""deadline.Wait, the sweep's measure of how long a connection has waited in one situation;
and connection_info, the facts every request of a connection shares."""

from __future__ import annotations

import asyncio

from serve.server.connection_info import ConnectionInfo, inet_address
from serve.server.deadline import Wait


def test_a_wait_starts_at_the_first_sweep_that_sees_its_mark() -> None:
    wait = Wait()
    assert wait.waited((0, "idle"), 100.0) is None
    assert wait.waited((0, "idle"), 101.0) == 1.0
    assert wait.waited((0, "idle"), 105.5) == 5.5


def test_a_new_mark_or_a_restart_begins_a_new_wait() -> None:
    wait = Wait()
    wait.waited((0, "idle"), 100.0)
    # A request came and went between two sweeps: the mark says so.
    assert wait.waited((1, "idle"), 103.0) is None
    assert wait.waited((1, "idle"), 104.0) == 1.0
    wait.restart()
    assert wait.waited((1, "idle"), 110.0) is None


def transport(**extra: object) -> asyncio.BaseTransport:
    # asyncio's base transport answers get_extra_info from the mapping it is given.
    return asyncio.BaseTransport(extra)


def test_connection_facts_of_an_inet_and_a_unix_socket() -> None:
    inet = ConnectionInfo.of(
        transport(sockname=("10.0.0.1", 80), peername=("10.0.0.2", 5000, 0, 0)), None
    )
    assert (inet.server, inet.client, inet.scheme, inet.tls, inet.trusted) == (
        ("10.0.0.1", 80), ("10.0.0.2", 5000), "http", None, False,
    )  # fmt: skip
    unix = ConnectionInfo.of(transport(sockname="/run/serve.sock", peername=""), None)
    # ASGI names a unix socket's server by its path, and its client as unknown.
    assert (unix.server, unix.client) == (("/run/serve.sock", 0), None)
    assert inet_address(("::1", 8000, 0, 0)) == ("::1", 8000)
