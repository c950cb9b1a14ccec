"""The markdown pieces every table of bench/RESULTS.md is made of."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def times(value: float | None) -> str:
    """A ratio as "1.57x"; "-" when there is nothing to compare with."""
    return "-" if value is None else f"{value:.2f}x"


def yes(ok: bool) -> str:
    """A verdict; a miss stands out in bold."""
    return "yes" if ok else "**no**"


def table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out
