"""Property tests of the HTTP/1.1 framing layer (RFC 9112) on generated and hostile bytes.

Valid requests built by h1_model must give exactly their model's events, however the bytes
are split and under any limits (or a limit's status, when one is exceeded). Mutated
requests, token soups and random bytes must keep the invariants of h1_checks, and give the
same events whether fed whole or in pieces.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.events import BodyChunk, Event, ParseFailed
from server.settings import Limits
from tests.fuzz.h1_checks import normalized, run
from tests.fuzz.h1_model import (
    LIMITS,
    Request,
    cuts_for,
    expected_events,
    mutated,
    pipelines,
    requests,
    token_soup,
)
from tests.fuzz.profiles import FUZZ


def split_invariant(data: bytes, cuts: list[int], limits: Limits) -> list[Event]:
    """Check the invariants fed whole and fed in pieces; both must give the same events."""
    whole = run(data, [], limits)
    assert normalized(run(data, cuts, limits)) == normalized(whole)
    return whole


def is_prefix(got: list[object], want: list[object]) -> bool:
    """got is want cut short, possibly inside the last body chunk it reached."""
    if len(got) > len(want):
        return False
    if got and isinstance(got[-1], BodyChunk):
        last = want[len(got) - 1]
        return (
            got[:-1] == want[: len(got) - 1]
            and isinstance(last, BodyChunk)
            and last.data.startswith(got[-1].data)
        )
    return got == want[: len(got)]


@FUZZ
@given(st.data(), pipelines)
def test_valid_pipelines_give_the_model_events(
    data: st.DataObject, pipeline: list[Request]
) -> None:
    wire = b"".join(request.wire() for request in pipeline)
    cuts = data.draw(cuts_for(wire))
    want = normalized(expected_events(pipeline))
    assert normalized(run(wire, cuts, Limits())) == want


@FUZZ
@given(st.data(), pipelines, LIMITS)
def test_limits_refuse_exactly_the_requests_over_them(
    data: st.DataObject, pipeline: list[Request], limits: Limits
) -> None:
    wire = b"".join(request.wire() for request in pipeline)
    got = normalized(split_invariant(wire, data.draw(cuts_for(wire)), limits))
    served: list[Request] = []
    for request in pipeline:
        served.append(request)
        if request.over(limits) or not request.keep_alive:
            break
    statuses = served[-1].over(limits)
    want = normalized(expected_events(served))
    if not statuses:
        assert got == want
        return
    assert got[-1] in [("ParseFailed", status) for status in statuses], (got[-1], statuses)
    assert is_prefix(got[:-1], want), (got, want)


@FUZZ
@given(st.data(), pipelines.map(lambda rs: b"".join(r.wire() for r in rs)), LIMITS)
def test_mutated_requests_keep_the_invariants(
    data: st.DataObject, wire: bytes, limits: Limits
) -> None:
    bent = data.draw(mutated(wire))
    split_invariant(bent, data.draw(cuts_for(bent)), limits)


@FUZZ
@given(st.data(), token_soup, LIMITS)
def test_token_soup_keeps_the_invariants(data: st.DataObject, soup: bytes, limits: Limits) -> None:
    split_invariant(soup, data.draw(cuts_for(soup)), limits)


@FUZZ
@given(st.data(), st.binary(max_size=300), LIMITS)
def test_random_bytes_keep_the_invariants(data: st.DataObject, raw: bytes, limits: Limits) -> None:
    events = split_invariant(raw, data.draw(cuts_for(raw)), limits)
    # Random bytes are almost never a request, yet each input gets an answer or waits.
    assert all(not isinstance(event, ParseFailed) for event in events[:-1])


@FUZZ
@given(st.data(), requests(version="1.1").filter(lambda request: request.chunked is not None))
def test_mutated_chunked_bodies_keep_the_invariants(data: st.DataObject, request: Request) -> None:
    # The body scanner reads chunk-size lines (grammar, sizes, limits) and the trailer
    # section's size, llhttp the chunk data's CRLF and the trailers' syntax: whichever
    # sees a fault first must not depend on the reads.
    # The limits let the head through and bite on the body and the trailers.
    head, chunked = request.head(), request.chunked or b""
    limits = Limits(
        max_header_size=data.draw(st.integers(len(head), len(head) + 64)),
        max_body_size=data.draw(st.none() | st.integers(0, 48)),
    )
    bent = head + data.draw(mutated(chunked))
    split_invariant(bent, data.draw(cuts_for(bent)), limits)
