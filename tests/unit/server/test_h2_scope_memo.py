"""The request memo of HTTP/2 (server.h2_scope.KNOWN_REQUESTS): a header list seen before
gives the request its full check gives, with fields of its own; a refused list is refused
every time; a large one is never kept."""

from __future__ import annotations

import pytest

from serve.server import h2_scope
from serve.server.errors import RequestRejected
from serve.server.events import RequestHead
from serve.server.h2_scope import Malformed, request_head
from serve.server.memo import AdaptiveMemo
from tests.unit.server.test_h2_scope import fields


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> AdaptiveMemo[object, object]:
    fresh: AdaptiveMemo[object, object] = AdaptiveMemo()
    monkeypatch.setattr(h2_scope, "KNOWN_REQUESTS", fresh)
    return fresh


def checked(head: list, has_body: bool) -> RequestHead:
    """What the full check gives: the same list with the memo paused."""
    memo = h2_scope.KNOWN_REQUESTS
    saved, memo.paused = memo.paused, 2**40
    try:
        return request_head(head, has_body)
    finally:
        memo.paused = saved


@pytest.mark.parametrize(
    "head",
    [
        fields(accept=b"*/*", host=b"example.com"),
        fields(b"/q?a=%C3%A9", b"POST", expect=b"100-continue", content_length=b"5"),
        [*fields(), (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")],
        fields(b"*", b"OPTIONS"),
    ],
)
def test_a_remembered_list_gives_what_the_full_check_gives(
    memo: AdaptiveMemo[object, object], head: list
) -> None:
    for has_body in (False, True, False, True):
        got = request_head(head, has_body)
        assert got == checked(head, has_body)
    assert len(memo.table) == 1
    # Each request owns its fields: an app that edits its scope's headers edits only its own.
    first, second = request_head(head, False), request_head(head, False)
    first.headers.append((b"x-added", b"1"))
    assert second.headers == checked(head, False).headers
    assert first.headers is not second.headers


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (fields(b"relative"), RequestRejected),
        (fields(authority=b"user@host"), RequestRejected),
        (fields(host=b"other"), Malformed),
        (fields(x=b"a\r\nb"), Malformed),
    ],
)
def test_a_refused_list_is_refused_every_time(
    memo: AdaptiveMemo[object, object], head: list, error: type[Exception]
) -> None:
    for _ in range(3):
        with pytest.raises(error):
            request_head(head, False)
    assert not memo.table


def test_a_large_list_is_never_kept(memo: AdaptiveMemo[object, object]) -> None:
    small, large = fields(cookie=b"a" * 900), fields(cookie=b"a" * 1100)
    assert request_head(large, False) == checked(large, False)
    assert request_head(small, False) == checked(small, False)
    assert list(memo.table) == [tuple(small)]
