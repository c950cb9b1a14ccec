"""HPACK encoding of the header blocks one HTTP/2 connection sends, remembering the blocks
that left the dynamic table as they found it.

Rules: a drop-in for hpack's Encoder (server.h2_connection installs one per connection) that
returns, byte for byte, what hpack's own encoding would (tests/unit/server/test_h2_hpack.py
checks it against a plain Encoder). Why it pays: a server sends the same response head again
and again (same status, fields, Content-Length and, within a second, Date), and once its
fields are in the dynamic table their encoding (some 7% of a small request's cost) is a
pure function of the table. So a block that neither added to the table nor carried a table
size update is remembered with the table's state, and given again while that state holds:
the table changes only by an insertion (which puts a new entry first) or an eviction (which
shortens it, as a resize does), so its first entry (held here, so never freed and reused)
and its length name it. A block that did insert is not remembered even so: the table may
come back to the state it found (emptied by an entry too large for it), where giving the
block without inserting again would leave the peer's table and ours apart. Serve hands h2
plain 2-tuples only (server.h2_scope), so equal fields encode equally (hpack's never-indexed
tuples, which compare equal to plain ones, never reach it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Encoder

# Heads remembered per connection: a few per route; cleared, not evicted one by one.
_MEMO_SIZE = 32

_Block = tuple[bytes, object, int]


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
        known = self._memo.get(key) if plain else None
        if known is not None and known[1] is first and known[2] == length:
            return known[0]
        block = super().encode(key, huffman)
        if plain and len(entries) == length and (entries[0] if entries else None) is first:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = (block, first, length)
        return block
