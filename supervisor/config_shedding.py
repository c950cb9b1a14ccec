"""The `shedding:` mapping: overload shedding driven by how long requests wait.

Rules: a frozen dataclass of the config schema (supervisor.config_schema lists it in
NESTED); no IO. `shedding: true` is short for `shedding: {enabled: true}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.settings import SheddingSettings


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class SheddingSpec:
    """Answer new requests 503 with Retry-After while requests wait too long (CoDel-style)."""

    enabled: bool = field(default=False, metadata=_doc("shed load when requests wait too long"))
    target: float = field(
        default=0.05, metadata=_doc("seconds a request may wait before the worker takes it up")
    )
    interval: float = field(
        default=0.5,
        metadata=_doc("seconds the wait must stay over target before shedding starts"),
    )

    def settings(self) -> SheddingSettings | None:
        if not self.enabled:
            return None
        return SheddingSettings(self.target, self.interval)
