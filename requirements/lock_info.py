"""Print where a test run's dependencies came from, so a red run can be traced to a version.

With a lock file: its name, its sha256 and the command that generated it, and whether the
running interpreter holds exactly the lock's pins. Without: the newest releases that
`make test-latest` resolved. Standard library only; exits non-zero when the venv no longer
matches its lock (a pin installed at another version, or a package the lock does not name),
which is what `pip freeze` inside .venv equal to the lock means.
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# The versions most likely to explain a failure: the parser, the loop and the TLS stack.
# pip comes with the venv, serve is the project itself (installed editable, from the tree).
NOT_LOCKED = frozenset({"pip", "serve"})
KEY_PACKAGES = ("uvloop", "httptools", "h2", "wsproto", "cryptography", "trustme", "httpx")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def pins(lock: Path) -> dict[str, str]:
    found = (PIN.match(line) for line in lock.read_text().splitlines())
    return {canonical(m.group(1)): m.group(2) for m in found if m}


def main(argv: list[str]) -> int:
    have = installed()
    print(f"python {platform.python_version()} ({sys.executable})")
    keys = ", ".join(f"{name} {have.get(name, '-')}" for name in KEY_PACKAGES)
    if not argv:
        print(f"dependencies: newest releases, not the lock; {keys}")
        return 0
    lock = Path(argv[0])
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    print(f"dependencies: {lock} (sha256 {digest}, {len(pins(lock))} pins); {keys}")
    pinned = pins(lock)
    wrong = {n: v for n, v in pinned.items() if n in have and have[n] != v}
    for name, version in sorted(wrong.items()):
        print(f"{lock}: {name}=={version} is pinned but {have[name]} is installed: make clean")
    extra = sorted(set(have) - set(pinned) - NOT_LOCKED)
    for name in extra:
        print(f"{lock}: {name} {have[name]} is installed but not in the lock: make clean")
    return 1 if wrong or extra else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
