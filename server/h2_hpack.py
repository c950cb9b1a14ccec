"""HPACK coding of the header blocks of one HTTP/2 connection, remembering the blocks that
left the dynamic table as they found it: the blocks it sends (MemoEncoder) and the blocks
it receives (MemoDecoder).

Rules: a drop-in for hpack's Encoder (server.h2_connection installs one per connection) that
returns, byte for byte, what hpack's own encoding would (tests/unit/server/test_h2_hpack.py
checks it against a plain Encoder). Why it pays: a server sends the same response head again
and again (same status, fields, Content-Length and, within a second, Date), and once its
fields are in the dynamic table their encoding (some 7% of a small request's cost) is a
pure function of the table. So a block that neither added to the table nor carried a table
size update is remembered with the table's state, and given again while that state holds:
the table changes only by an insertion (which puts a new entry first) or an eviction (which
shortens it, as a resize does), so its first entry (held here, so never freed and reused),
its length and its maximum size name it. The size is part of the name because an empty
table stays empty when a block inserts an entry too large for it: that block is
remembered, and must not be given again once the table has grown to hold the entry, or
the peer's table would gain it and ours not. Serve hands h2
plain 2-tuples only (server.h2_scope), so equal fields encode equally (hpack's never-indexed
tuples, which compare equal to plain ones, never reach it).

The same holds inbound: a client sends the same request block again and again (once its
fields are indexed, the block names table entries only), and decoding it is a pure
function of the bytes and the table's state when it neither inserted, evicted nor carried
a size update, so MemoDecoder gives the list it decoded before (h2 copies it into its
event; nothing mutates it). A hit still honours the limits in force now: a list over
max_header_list_size, or a table over max_allowed_table_size, is decoded again and refused
the way hpack refuses it.

Either way only blocks and header lists of at most 4 KiB are remembered: a memo lives as
long as its connection, and larger ones are a client's (or an echoing app's) to choose.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple

# Heads remembered per connection: a few per route; cleared, not evicted one by one.
_MEMO_SIZE = 32
# A header list larger than this, as hpack counts it (32 + name + value per field), or a
# block longer, is encoded or decoded every time: a client's 64 KiB blocks would otherwise
# stay in memory 32 at a time on each of its connections.
_MEMO_BYTES = 4096

# (the block, the table's first entry, length and maximum size)
_Block = tuple[bytes, object, int, int]
# (the fields, the table's first entry, length and maximum size, the list's size as hpack
# counts it)
_Fields = tuple[list[HeaderTuple], object, int, int, int]
# The first octet of a dynamic table size update (RFC 7541 section 6.3): 001xxxxx.
_SIZE_UPDATE_MASK, _SIZE_UPDATE = 0xE0, 0x20


class MemoEncoder(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[Any, ...], _Block] = {}

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        key = tuple(headers)
        table = self.header_table
        entries = table.dynamic_entries
        first = entries[0] if entries else None
        length = len(entries)
        plain = huffman and not self.table_size_changes
        maxsize = table.maxsize
        known = self._memo.get(key) if plain else None
        if known is not None and known[1] is first and known[2] == length and known[3] == maxsize:
            return known[0]
        block = super().encode(key, huffman)
        if (
            plain
            and len(entries) == length
            and (entries[0] if entries else None) is first
            and len(block) <= _MEMO_BYTES
            and _list_size(key) <= _MEMO_BYTES
        ):
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = (block, first, length, maxsize)
        return block


class MemoDecoder(Decoder):
    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[bytes, _Fields] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        table = self.header_table
        entries = table.dynamic_entries
        first = entries[0] if entries else None
        length = len(entries)
        maxsize = table.maxsize
        plain = raw and type(data) is bytes
        known = self._memo.get(data) if plain else None
        if (
            known is not None
            and known[1] is first
            and known[2] == length
            and known[3] == maxsize
            and known[4] <= self.max_header_list_size
            and maxsize <= self.max_allowed_table_size
        ):
            return known[0]
        fields = list(super().decode(data, raw))
        if (
            plain
            and data
            and data[0] & _SIZE_UPDATE_MASK != _SIZE_UPDATE
            and len(entries) == length
            and (entries[0] if entries else None) is first
            and len(data) <= _MEMO_BYTES
        ):
            size = _list_size(fields)
            if size <= _MEMO_BYTES:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[data] = (fields, first, length, maxsize, size)
        return fields


def _list_size(fields: Iterable[Any]) -> int:
    """A header list's size as HPACK counts it (RFC 7541 section 4.1)."""
    return sum(32 + len(name) + len(value) for name, value in fields)
