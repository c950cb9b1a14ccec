"""The remembering HPACK encoder and decoder (server.h2_hpack) against hpack's own: byte for
byte the same blocks, and the same fields and table, for any sequence of header lists and
table size changes, while they do give remembered results."""

from __future__ import annotations

import pytest
from hpack import (
    Decoder,
    Encoder,
    HPACKError,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from serve.server.h2_hpack import MemoDecoder, MemoEncoder

Fields = list[tuple[bytes, bytes]]

# Few names and values, so that heads repeat, hit the table and evict from it.
_FIELD = st.tuples(
    st.sampled_from([b":status", b"content-type", b"content-length", b"date", b"x-long"]),
    st.sampled_from([b"200", b"404", b"text/plain", b"13", b"0", b"Sun, 06 Dec", b"v" * 300]),
)
_STEP = st.one_of(
    st.lists(_FIELD, min_size=1, max_size=6),
    st.sampled_from([0, 256, 512, 4096]),  # the peer's SETTINGS_HEADER_TABLE_SIZE
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=40))
def test_the_same_bytes_as_hpacks_encoder(steps: list[Fields | int]) -> None:
    memo, plain = MemoEncoder(), Encoder()
    for step in steps:
        if isinstance(step, int):
            memo.header_table_size = plain.header_table_size = step
        else:
            assert memo.encode(step) == plain.encode(step)


def test_a_repeated_head_is_given_from_memory() -> None:
    memo, plain, decoder = MemoEncoder(), Encoder(), Decoder()
    head = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
    blocks = [memo.encode(head) for _ in range(3)]
    assert blocks == [plain.encode(head) for _ in range(3)]
    assert all(decoder.decode(block, raw=True) == head for block in blocks)
    # The first inserts the fields; the second finds them and is remembered; the third is it.
    assert blocks[2] is blocks[1] is not blocks[0]
    # A resize (the peer's SETTINGS) changes the table: encoded afresh, with its update.
    memo.header_table_size = plain.header_table_size = 0
    resized = memo.encode(head)
    assert resized == plain.encode(head) != blocks[1]


def test_a_block_that_inserted_is_not_given_again_when_the_table_empties_back() -> None:
    memo, plain, decoder = MemoEncoder(), Encoder(), Decoder()
    memo.header_table_size = plain.header_table_size = 256
    head = [(b"x-a", b"1")]
    # The size update goes out first (a static-table field inserts nothing); the head is
    # inserted into the empty table; a field too large for the table empties it; and the
    # head must be inserted again, then found.
    steps = [[(b":status", b"200")], head, [(b"x-long", b"v" * 300)], head, head]
    for step in steps:
        block = memo.encode(step)
        assert block == plain.encode(step)
        assert decoder.decode(block, raw=True) == step


def _table(decoder: Decoder) -> tuple[list[tuple[bytes, bytes]], int]:
    table = decoder.header_table
    return list(table.dynamic_entries), table.maxsize


def _outcome(decoder: Decoder, block: bytes) -> object:
    try:
        return decoder.decode(block, raw=True)
    except HPACKError as exc:
        return type(exc)


# What a client's encoder can send: indexed, with or without indexing, never indexed.
_SENT_FIELD = st.one_of(
    _FIELD,
    st.tuples(st.sampled_from([b"x-token", b"authorization"]), st.sampled_from([b"a", b"b"])),
)


def _decode_alike(steps: list[Fields | int]) -> MemoDecoder:
    """One client encoder feeds both decoders; each list is sent twice in a row, the second
    time mostly as names of table entries. Returns the remembering decoder."""
    client, memo, plain = Encoder(), MemoDecoder(), Decoder()
    for step in steps:
        if isinstance(step, int):
            # The size it has already: hpack's encoder would then skip or repeat an update,
            # and its blocks name entries the decoders never saw (its quirk, not theirs).
            if step != client.header_table_size:
                client.header_table_size = step
            continue
        for _ in range(2):
            block = client.encode(step)
            # Should a block still name entries the decoders never saw, both refuse it alike.
            outcome = _outcome(memo, block)
            assert outcome == _outcome(plain, block)
            assert outcome == step or isinstance(outcome, type)
            assert _table(memo) == _table(plain)
    return memo


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.lists(_SENT_FIELD, min_size=1, max_size=6), _STEP), max_size=40))
def test_the_same_fields_and_table_as_hpacks_decoder(steps: list[Fields | int]) -> None:
    _decode_alike(steps)


# A field too large for a table of size 0 leaves it empty, so its block is remembered; once
# the table has grown, the same bytes insert it, and a remembered answer would not.
_GROWN_TABLE = [0, [(b":status", b"200")], [(b"content-type", b"200")], 256,
                [(b":status", b"200")], [(b"content-type", b"200")]]  # fmt: skip


def test_a_block_remembered_at_one_table_size_is_decoded_again_at_another() -> None:
    assert _table(_decode_alike(_GROWN_TABLE)) == ([(b"content-type", b"200")], 256)


def test_a_block_remembered_at_one_table_size_is_encoded_again_at_another() -> None:
    memo, plain, decoder = MemoEncoder(), Encoder(), Decoder()
    for step in _GROWN_TABLE:
        if isinstance(step, int):
            memo.header_table_size = plain.header_table_size = step
            continue
        for _ in range(2):
            block = memo.encode(step)
            assert block == plain.encode(step)
            assert decoder.decode(block, raw=True) == step
    assert _table(decoder) == ([(b"content-type", b"200")], 256)


def test_a_repeated_block_is_given_from_memory() -> None:
    client, memo = Encoder(), MemoDecoder()
    head = [(b":method", b"GET"), (b":path", b"/items/42"), (b"user-agent", b"h2load")]
    blocks = [client.encode(head) for _ in range(3)]
    decoded = [memo.decode(block, raw=True) for block in blocks]
    assert decoded == [head] * 3
    # The first inserts the fields; the second only names them and is remembered.
    assert blocks[1] == blocks[2] and decoded[2] is decoded[1] is not decoded[0]


@pytest.mark.parametrize(
    ("limit", "value", "error"),
    [
        # Our SETTINGS lowered the list size after the block was remembered.
        ("max_header_list_size", 100, OversizedHeaderListError),
        # We acknowledged a smaller SETTINGS_HEADER_TABLE_SIZE; the client never shrank its.
        ("max_allowed_table_size", 64, InvalidTableSizeError),
    ],
)
def test_a_remembered_block_still_meets_the_limits_in_force(
    limit: str, value: int, error: type[HPACKError]
) -> None:
    client, memo = Encoder(), MemoDecoder()
    head = [(b":method", b"GET"), (b"x-long", b"v" * 200)]
    memo.decode(client.encode(head), raw=True)
    block = client.encode(head)
    assert memo.decode(block, raw=True) is memo.decode(block, raw=True)
    setattr(memo, limit, value)
    with pytest.raises(error):
        memo.decode(block, raw=True)


def test_a_large_block_is_decoded_every_time_not_remembered() -> None:
    # Too large for the client's table, the field leaves it empty, as an indexed one would:
    # only its size keeps the block out of the memo.
    client, memo = Encoder(), MemoDecoder()
    head = [(b":method", b"GET"), (b"x-big", b"v" * 5000)]
    block = client.encode(head)
    decoded = [memo.decode(block, raw=True) for _ in range(3)]
    assert decoded == [head] * 3
    assert decoded[2] is not decoded[1]
    assert memo.header_table.dynamic_entries == client.header_table.dynamic_entries


def test_a_large_head_is_encoded_every_time_not_remembered() -> None:
    memo, plain = MemoEncoder(), Encoder()
    head = [(b":status", b"200"), (b"x-big", b"v" * 5000)]
    blocks = [memo.encode(head) for _ in range(3)]
    assert blocks == [plain.encode(head) for _ in range(3)]
    assert blocks[2] is not blocks[1]
