"""Sections of bench/RESULTS.md that other runs than `make bench` write: chaos, soak and
preload memory.

Rules: a section is a level-2 heading and everything up to the next level-2 heading. A run
replaces its own section (or appends it) and leaves the rest of the file alone; bench/run.py
rewrites the file from scratch and carries these sections over with carry().
"""

from __future__ import annotations

from pathlib import Path

# Written by tests/chaos/chaos.py, tests/soak/soak.py and bench/preload_memory.py;
# bench/run.py keeps them.
KEPT_TITLES = ("Chaos", "Soak", "Preload memory")


def _split(text: str) -> list[tuple[str | None, str]]:
    """(title or None for what precedes the first heading, text) for each section."""
    sections: list[tuple[str | None, str]] = [(None, "")]
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            sections.append((line[3:].strip(), line))
        else:
            title, body = sections[-1]
            sections[-1] = (title, body + line)
    return sections


def replace_section(text: str, title: str, body: str) -> str:
    """`text` with the section `title` holding `body` (its heading is added here)."""
    section = f"## {title}\n\n{body.strip()}\n"
    parts = _split(text)
    if any(name == title for name, _ in parts):
        chunks = [section if name == title else chunk for name, chunk in parts]
        return _join(chunks)
    return _join([chunk for _, chunk in parts] + [section])


def _join(chunks: list[str]) -> str:
    """Sections separated by exactly one blank line."""
    kept = [chunk.strip("\n") for chunk in chunks if chunk.strip()]
    return "\n\n".join(kept) + "\n"


def section(text: str, title: str) -> str | None:
    """The body of the section `title` in `text`, without its heading; None if absent."""
    for name, chunk in _split(text):
        if name == title:
            return chunk.split("\n", 1)[1].strip() if "\n" in chunk else ""
    return None


def carry(old: str, new: str) -> str:
    """`new` with the KEPT_TITLES sections of `old` that `new` lacks appended."""
    for title in KEPT_TITLES:
        body = section(old, title)
        if body is not None and section(new, title) is None:
            new = replace_section(new, title, body)
    return new


def update(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.exists() else ""
    path.write_text(replace_section(text, title, body))
