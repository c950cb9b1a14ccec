"""What RESULTS.md says about a run besides its figures: date, machine, versions, the
exact commands of the servers and the load, the method and the pinning.

Rules: read-only (versions are read, never installed); paths are shown relative to the
repository, so RESULTS.md names no machine's layout.
"""

from __future__ import annotations

import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench import machine
from bench.load import SCENARIOS, h2load_command, wrk_command
from bench.machine import pinning
from bench.options import LOAD_TOOLS, ROOT, Options
from bench.report import REFERENCES, Meta
from bench.servers import SERVERS, speakers

THREADS = {
    "h1": "1 wrk thread with `--latency`",
    "h2": "1 h2load thread with `--log-file` for latencies",
}


def _relative(arg: str) -> str:
    path = Path(arg)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else arg


def describe(
    o: Options, argv: list[str], *, servers: dict[str, list[str]], failures: list[str], cut: str
) -> Meta:
    """The report's account of a run; `servers` lists, per protocol run ("h1", "h2"), the
    servers that ran the raw app over it."""
    protocols = list(servers)
    pins = {w: pinning(w) for w in o.workers}
    tools, wrk_example, h2load_example = _load(protocols, o, pins[o.workers[0]].wrk_cpus)
    load = " or ".join(LOAD_TOOLS[p] for p in protocols)
    threads = " or ".join(THREADS[p] for p in protocols)
    return Meta(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine.describe(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        tools=", ".join(tools),
        command=shlex.join([_relative(sys.executable), "-m", "bench.run", *argv]),
        method=(
            f"{o.runs} interleaved run{'' if o.runs == 1 else 's'} per cell; each run is {load}"
            f" for {o.duration}s"
            + (f" after a {o.warmup}s warm-up per scenario and server, " if o.warmup else ", ")
            + f"{threads}; a run during which other processes used "
            f"{machine.QUIET_PCT:.0f}% of the CPUs or more is redone up to {o.retry_noisy} "
            "time(s) and the quieter attempt kept."
        ),
        pinning=[
            f"workers={w}: servers on CPU {p.server_cpus}, {load} on CPU {p.wrk_cpus}"
            for w, p in pins.items()
        ],
        commands=_commands(servers),
        wrk_example=wrk_example,
        h2load_example=h2load_example,
        scenarios=[(n, SCENARIOS[n].meaning) for n in o.scenarios],
        notes={"h2": _h2_note()} if "h2" in protocols else {},
        servers=list(o.servers),
        failures=failures,
        cut=cut,
    )


def _commands(servers: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(label, versions, command line) of each server, shown for 1 worker on port 8000."""
    commands = []
    for protocol, names in servers.items():
        for name in names:
            spec = SERVERS[name]
            launcher = spec.command(protocol)
            assert launcher is not None  # only the servers that have one are listed
            shown = launcher(1, 8000)
            shown[0] = Path(shown[0]).name
            versions = ", ".join(f"{p} {machine.version(p)}" for p in spec.packages)
            label = name if protocol == "h1" else f"{name} (h2c)"
            commands.append((label, versions, shlex.join(shown)))
    return commands


def _load(protocols: list[str], o: Options, cpus: str) -> tuple[list[str], str, str]:
    """The load tools' versions, and an example command line of each."""
    wrk_example = h2load_example = ""
    tools = []
    if "h1" in protocols:
        wrk_example = shlex.join(
            _relative(a) for a in wrk_command(8000, SCENARIOS["echo64k"], 64, o.duration, cpus)
        )
        tools.append(machine.tool_version(["wrk", "--version"]))
    if "h2" in protocols:
        h2 = SCENARIOS["h2"]
        h2load_example = shlex.join(
            h2load_command(8000, h2, 64, o.duration, cpus, log=Path("latency.tsv"))
        )
        tools.append(machine.tool_version(["h2load", "--version"]))
    tools += [f"{p} {machine.version(p)}" for p in ("uvloop", "httptools")]
    return tools, wrk_example, h2load_example


def _h2_note() -> str:
    speaking = speakers("h2")
    silent = [n for n in SERVERS if n not in speaking]
    base, fast = REFERENCES["h2"]
    return (
        f"Every server that speaks HTTP/2 ({_and(speaking)}) runs it over cleartext with prior "
        "knowledge (h2c): each accepts that on a plain TCP port, so no TLS is set up or "
        "measured; their commands are the `(h2c)` rows of the Servers table. "
        f"{_and(silent)} speak no HTTP/2 and are not run here. Ratios are against {base} "
        f"(pure Python on the h2 library, as serve is) and {fast} (Rust)."
    )


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
