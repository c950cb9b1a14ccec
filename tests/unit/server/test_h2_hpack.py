"""The remembering HPACK encoder (server.h2_hpack) against hpack's own: byte for byte the
same blocks for any sequence of header lists and table size changes, decoding to the
fields given, while it does give remembered blocks."""

from __future__ import annotations

from hpack import Decoder, Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from serve.server.h2_hpack import MemoEncoder

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
