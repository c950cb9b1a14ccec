"""Turn the medians of a bench run into the markdown report, bench/RESULTS.md.

Rules:
- Pure functions of the rows (bench/figures.py): nothing here runs a server, reads the
  clock or touches a file.
- Every figure is the median over the interleaved runs; the spread (max - min) / median
  sits next to it, and a row whose spread exceeds STABLE_SPREAD_PCT is flagged "unstable".
- Ratios compare with uvicorn and with the floor at the same scenario, workers and
  concurrency, measured in the same run; the serve row is in bold. Over HTTP/2, where
  neither runs, they compare with hypercorn and granian instead (REFERENCES).
- The report opens with issue 15's targets, each with its figure and verdict
  (bench/targets.py), then the per-scenario headline and detail tables.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench import targets
from bench.figures import BASELINE, FLOOR, OURS, Key, Row, cpu_ratio, ratio
from bench.load import SCENARIOS
from bench.markdown import table, times, yes
from bench.servers import APP
from bench.shares import Shares

STABLE_SPREAD_PCT = 10.0
NOISY_PCT = 10.0
# Minimum serve / uvicorn requests/s per scenario: plaintext and the frameworks as issue 15
# sets them (sync routes 1.0x), every other scenario 1.2x.
TARGETS: dict[tuple[str, int], float] = {("plaintext", 1): 2.0, ("plaintext", 2): 1.8} | {
    (f"{fw}{shape}", w): 1.0 if shape == "-sync" else 1.25
    for fw in ("fastapi", "starlette") for shape in ("", "-sync", "-mw", "-post100k") for w in (1,2)
}  # fmt: skip
DEFAULT_TARGET = 1.2
# The two servers each protocol's ratios compare with. HTTP/2: hypercorn is pure Python on the
# h2 library, the nearest peer to serve; granian (Rust) is the fast end, as the floor is for h1.
REFERENCES: dict[str, tuple[str, str]] = {
    "h1": (BASELINE, FLOOR),
    "h2": ("hypercorn", "granian"),
    "framework": (BASELINE, "granian"),
}


@dataclass(frozen=True)
class Meta:
    """Everything about the run that is not a measurement; shown at the top of RESULTS.md."""

    date: str
    machine: str
    python: str
    tools: str
    command: str
    method: str
    pinning: list[str]
    commands: list[tuple[str, str, str]]
    wrk_example: str
    h2load_example: str
    scenarios: list[tuple[str, str]]
    notes: dict[str, str]
    servers: list[str]
    failures: list[str]
    cut: str


def headline(rows: dict[Key, Row], scenarios: Sequence[str]) -> list[str]:
    """serve against uvicorn per scenario, with the target and where granian and the floor are."""
    lines: list[list[str]] = []
    for scenario in _of(scenarios, "h1"):
        for key in sorted(k for k in rows if k[0] == OURS and k[1] == scenario):
            ours = rows[key]
            base = rows.get((BASELINE, *key[1:]))
            target = TARGETS.get((scenario, ours.workers), DEFAULT_TARGET)
            vs_base = ratio(rows, ours, BASELINE)
            met = "-" if vs_base is None else yes(vs_base >= target)
            p99 = "-" if base is None else f"{ours.p99_ms:.2f} / {base.p99_ms:.2f}"
            lines.append([
                scenario, str(ours.workers), str(ours.concurrency), f"{ours.rps:,.0f}",
                "-" if base is None else f"{base.rps:,.0f}", f"**{times(vs_base)}**",
                f">= {target:g}x", met, times(cpu_ratio(rows, ours, BASELINE)), p99,
                times(ratio(rows, ours, "granian")), times(ratio(rows, ours, FLOOR)),
            ])  # fmt: skip
    if not lines:
        return [f"No {OURS} measurements over HTTP/1.1 in this run."]
    header = [
        "scenario", "w", "c", "serve req/s", "uvicorn req/s", "serve / uvicorn", "target",
        "met", "same, per CPU-s", "p99 ms serve / uvicorn", "serve / granian", "serve / floor",
    ]  # fmt: skip
    return table(header, lines)


def headline_h2(rows: dict[Key, Row], scenarios: Sequence[str]) -> list[str]:
    """serve against hypercorn and granian over HTTP/2; the issue sets no target here."""
    base, fast = REFERENCES["h2"]
    lines: list[list[str]] = []
    for scenario in _of(scenarios, "h2"):
        for key in sorted(k for k in rows if k[0] == OURS and k[1] == scenario):
            ours, ref = rows[key], rows.get((base, *key[1:]))
            lines.append([
                scenario, str(ours.workers), str(ours.concurrency), f"{ours.rps:,.0f}",
                "-" if ref is None else f"{ref.rps:,.0f}", f"**{times(ratio(rows, ours, base))}**",
                times(cpu_ratio(rows, ours, base)),
                "-" if ref is None else f"{ours.p99_ms:.2f} / {ref.p99_ms:.2f}",
                times(ratio(rows, ours, fast)),
            ])  # fmt: skip
    if not lines:
        return [f"No {OURS} measurements over HTTP/2 in this run."]
    header = [
        "scenario", "w", "c", "serve req/s", f"{base} req/s", f"serve / {base}",
        "same, per CPU-s", f"p99 ms serve / {base}", f"serve / {fast}",
    ]  # fmt: skip
    return table(header, lines)


def _raw(scenario: str) -> bool:
    return SCENARIOS[scenario].app == APP


def _of(scenarios: Iterable[str], protocol: str) -> list[str]:
    return [name for name in scenarios if SCENARIOS[name].protocol == protocol]


def resources(rows: dict[Key, Row]) -> list[str]:
    """RSS per worker and start-to-first-response, serve against uvicorn, per worker count."""
    lines: list[list[str]] = []
    # Over HTTP/1.1 only: uvicorn runs nothing else, and serve's HTTP/2 launch is another setup.
    h1 = {k: r for k, r in rows.items() if SCENARIOS[k[1]].protocol == "h1" and _raw(k[1])}
    for workers in sorted({k[2] for k in h1 if k[0] == OURS}):
        ours = [r for k, r in h1.items() if k[0] == OURS and k[2] == workers]
        base = [r for k, r in h1.items() if k[0] == BASELINE and k[2] == workers]
        if not ours or not base:
            continue
        rss = max(r.rss_mib for r in ours), max(r.rss_mib for r in base)
        start = (
            statistics.median(r.start_ms for r in ours),
            statistics.median(r.start_ms for r in base),
        )
        lines.append([
            str(workers), f"{rss[0]:.1f} / {rss[1]:.1f}", yes(rss[0] <= rss[1]),
            f"{start[0]:.0f} / {start[1]:.0f}", yes(start[0] <= start[1]),
        ])  # fmt: skip
    if not lines:
        return []
    header = [
        "w", "max RSS/worker MiB serve / uvicorn", "<= uvicorn", "start ms serve / uvicorn",
        "<= uvicorn",
    ]  # fmt: skip
    return table(header, lines)


def detail(rows: dict[Key, Row], scenario: str, servers: Sequence[str]) -> list[str]:
    # The floor runs only the raw app: a framework scenario compares with granian instead.
    base, second = REFERENCES[SCENARIOS[scenario].protocol if _raw(scenario) else "framework"]
    lines: list[list[str]] = []
    for workers, conc in sorted({(k[2], k[3]) for k in rows if k[1] == scenario}):
        for server in servers:
            row = rows.get((server, scenario, workers, conc))
            if row is None:
                continue
            flag = " unstable" if row.spread_pct > STABLE_SPREAD_PCT else ""
            name = f"**{server}**" if server == OURS else server
            lines.append([
                name, str(workers), str(conc), f"{row.rps:,.0f}",
                f"{row.rps_min:,.0f}-{row.rps_max:,.0f} ({row.spread_pct:.1f}%{flag})",
                times(ratio(rows, row, base)), times(ratio(rows, row, second)),
                f"{row.rps_per_cpu:,.0f}", times(cpu_ratio(rows, row, base)),
                f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", str(row.errors),
                f"{row.rss_mib:.1f}", f"{row.start_ms:.0f}", f"{row.foreign_pct:.0f}",
            ])  # fmt: skip
    header = [
        "server", "w", "c", "req/s", "min-max (spread)", f"x {base}", f"x {second}", "req/CPU-s",
        f"x {base} per CPU-s", "p50 ms", "p99 ms", "errors", "RSS/worker MiB", "start ms",
        "other load %",
    ]  # fmt: skip
    return table(header, lines)


def stability(rows: dict[Key, Row]) -> str:
    spreads = sorted((r.spread_pct for r in rows.values() if r.runs > 1), reverse=True)
    cpu_spreads = [r.cpu_spread_pct for r in rows.values() if r.runs > 1]
    if not spreads:
        return "Only one run per cell: no spread to report (use --runs 2 or more)."
    unstable = sum(s > STABLE_SPREAD_PCT for s in spreads)
    foreign = [r.foreign_pct for r in rows.values()]
    noisy = sum(f >= NOISY_PCT for f in foreign)
    return (
        f"Run-to-run spread of requests/s: median {statistics.median(spreads):.1f}%, "
        f"worst {spreads[0]:.1f}%; {unstable} of {len(spreads)} cells exceed "
        f"{STABLE_SPREAD_PCT:.0f}% (marked unstable). Spread of requests per CPU-second: "
        f"median {statistics.median(cpu_spreads):.1f}%, worst {max(cpu_spreads):.1f}%; "
        f"{sum(c > STABLE_SPREAD_PCT for c in cpu_spreads)} cells exceed "
        f"{STABLE_SPREAD_PCT:.0f}%. CPU used by other processes during "
        f'the runs ("other load", worst run of each cell): median '
        f"{statistics.median(foreign):.0f}%, worst {max(foreign):.0f}%; {noisy} cells saw "
        f"{NOISY_PCT:.0f}% or more."
    )


def document(rows: dict[Key, Row], meta: Meta, chart_name: str | None, shares: Shares) -> str:
    """RESULTS.md; `chart_name` is the PNG beside it, None when no chart was drawn."""
    scenarios = [name for name, _ in meta.scenarios]
    out = [
        "# Benchmark results",
        "",
        f"Generated by `bench/run.py` on {meta.date}; rerun with `make bench` "
        "(bench/README.md explains the method).",
        "",
        f"- Machine: {meta.machine}",
        f"- Python: {meta.python}; load: {meta.tools}",
        f"- Command: `{meta.command}`",
        f"- Method: {meta.method} Figures are medians; spread = (max - min) / median.",
        *[f"- Pinning, {line}" for line in meta.pinning],
    ]
    if meta.cut:
        out += ["", f"**Incomplete run: {meta.cut}.**"]
    out += ["", "## Issue targets", "", *targets.section(rows, shares), ""]
    if chart_name is not None:
        out += [f"![requests/s per server and scenario]({chart_name})", ""]
    h1, h2 = _of(scenarios, "h1"), _of(scenarios, "h2")
    if h1:
        out += ["## serve vs uvicorn", "", *headline(rows, scenarios), "", *resources(rows), ""]
        out += [stability(rows), ""]
    if h2:
        out += ["## serve vs hypercorn over HTTP/2", "", *headline_h2(rows, scenarios), ""]
        out += [] if h1 else [stability(rows), ""]
    out += ["## Servers", ""]
    out += table(["server", "versions", "command (shown for 1 worker, port 8000)"],
                  ([n, v, f"`{c}`"] for n, v, c in meta.commands))  # fmt: skip
    out += [""]
    out += [f"Load, e.g. the echo scenario: `{meta.wrk_example}`", ""] if meta.wrk_example else []
    if meta.h2load_example:
        out += [f"HTTP/2 load, the h2 scenario at c64: `{meta.h2load_example}`", ""]
    out += ["## Scenarios", ""]
    for name, meaning in meta.scenarios:
        out += [f"### {name}: {meaning}", ""]
        out += [meta.notes[name], ""] if name in meta.notes else []
        out += [*detail(rows, name, meta.servers), ""]
    if meta.failures:
        out += ["## Failures", "", *[f"- {line}" for line in meta.failures], ""]
    return "\n".join(out)
