"""Coverage-guided fuzz target for the HTTP/1.1 framing layer (atheris, i.e. libFuzzer).

Rules: the invariants are h1_checks', the same the hypothesis properties use; any failed
check is an AssertionError, which libFuzzer reports as a crash and saves as an artifact.
Run it through `make -f fuzz.mk fuzz` (bounded by FUZZ_SECONDS); replay one artifact with
`python -m tests.fuzz.atheris_h1 FILE`.

Input layout: byte 0 picks the limits (low two bits) and how many split points (the rest);
byte 1 seeds where they fall; the remaining bytes are what the client sent. The payload
stays raw so libFuzzer's dictionary and mutations act on HTTP bytes directly.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]  # installed in the fuzz venv only

with atheris.instrument_imports(include=["server"]):
    from serve.server.settings import Limits
    from tests.fuzz.h1_checks import normalized, run

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "requests"
LIMITS = (
    Limits(),
    Limits(max_request_line=64, max_header_size=256, max_headers=4, max_body_size=16),
    Limits(max_request_line=32, max_header_size=48, max_headers=2, max_body_size=None),
    Limits(max_request_line=256, max_header_size=1024, max_headers=16, max_body_size=0),
)


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    limits = LIMITS[data[0] & 3]
    payload = data[2:]
    count = min(data[0] >> 2, len(payload) - 1)
    cuts = sorted(random.Random(data[1]).sample(range(1, len(payload)), count))
    whole = run(payload, [], limits)
    split = run(payload, cuts, limits)
    assert normalized(split) == normalized(whole), (cuts, whole, split)


def write_seeds(directory: Path) -> None:
    """One seed per corpus request, fed whole and with a few split points."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("valid", "invalid"):
        for entry in json.loads((CORPUS / f"{name}.json").read_text("utf-8")):
            request = str(entry["request"]).encode("latin-1")
            (directory / f"{name}-{entry['id']}").write_bytes(b"\x10\x07" + request)


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
