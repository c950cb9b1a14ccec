"""Turn the raw samples of a bench run into medians, ratios, a markdown report and a chart.

Rules:
- Pure functions of the samples: nothing here runs a server, reads the clock or touches a
  file, except `chart`, which writes the PNG it is given.
- Every figure is the median over the interleaved runs; the spread (max - min) / median
  sits next to it, and a row whose spread exceeds STABLE_SPREAD_PCT is flagged "unstable".
- Ratios compare with uvicorn and with the floor at the same scenario, workers and
  concurrency, measured in the same run; the serve row is in bold. Over HTTP/2, where
  neither runs, they compare with hypercorn and granian instead (REFERENCES).
"""

from __future__ import annotations

import importlib
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import SCENARIOS
from bench.servers import APP

STABLE_SPREAD_PCT = 10.0
NOISY_PCT = 10.0
BASELINE = "uvicorn"
FLOOR = "floor"
OURS = "serve"
# Minimum serve / uvicorn requests/s per scenario (frameworks: issue 15; sync routes 1.0x).
TARGETS: dict[tuple[str, int], float] = {("plaintext", 1): 1.5, ("plaintext", 2): 1.3} | {
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
class Sample:
    """One wrk measurement of one server start."""

    server: str
    scenario: str
    workers: int
    concurrency: int
    rep: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    foreign_pct: float
    rps_per_cpu: float


@dataclass(frozen=True)
class StartSample:
    """Time from launching a server to its first 200 answer on `/`."""

    server: str
    workers: int
    ms: float
    protocol: str


@dataclass(frozen=True)
class Row:
    """The median of all samples of one (server, scenario, workers, concurrency) cell."""

    server: str
    scenario: str
    workers: int
    concurrency: int
    runs: int
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    start_ms: float
    foreign_pct: float
    rps_per_cpu: float
    cpu_spread_pct: float

    @property
    def spread_pct(self) -> float:
        return (self.rps_max - self.rps_min) / self.rps * 100 if self.rps else 0.0


Key = tuple[str, str, int, int]


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


def aggregate(samples: Iterable[Sample], starts: Iterable[StartSample]) -> dict[Key, Row]:
    cells: dict[Key, list[Sample]] = defaultdict(list)
    for s in samples:
        cells[(s.server, s.scenario, s.workers, s.concurrency)].append(s)
    start_ms: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for start in starts:
        start_ms[(start.server, start.protocol, start.workers)].append(start.ms)
    rows: dict[Key, Row] = {}
    for key, group in cells.items():
        rps = [s.rps for s in group]
        per_cpu = [s.rps_per_cpu for s in group]
        rows[key] = Row(
            *key,
            runs=len(group),
            rps=statistics.median(rps),
            rps_min=min(rps),
            rps_max=max(rps),
            p50_ms=statistics.median(s.p50_ms for s in group),
            p99_ms=statistics.median(s.p99_ms for s in group),
            errors=sum(s.errors for s in group),
            rss_mib=statistics.median(s.rss_mib for s in group),
            start_ms=statistics.median(
                start_ms[(key[0], SCENARIOS[key[1]].protocol, key[2])] or [0.0]
            ),
            foreign_pct=max(s.foreign_pct for s in group),
            rps_per_cpu=statistics.median(per_cpu),
            cpu_spread_pct=_spread(per_cpu),
        )
    return rows


def _spread(values: list[float]) -> float:
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle * 100 if middle else 0.0


def ratio(rows: dict[Key, Row], row: Row, other: str) -> float | None:
    ref = rows.get((other, row.scenario, row.workers, row.concurrency))
    return row.rps / ref.rps if ref is not None and ref.rps else None


def cpu_ratio(rows: dict[Key, Row], row: Row, other: str) -> float | None:
    """The same ratio in requests per server CPU-second: the cost of a request."""
    ref = rows.get((other, row.scenario, row.workers, row.concurrency))
    return row.rps_per_cpu / ref.rps_per_cpu if ref is not None and ref.rps_per_cpu else None


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def headline(rows: dict[Key, Row], scenarios: Sequence[str]) -> list[str]:
    """serve against uvicorn per scenario, with the target and where granian and the floor are."""
    lines: list[list[str]] = []
    for scenario in _of(scenarios, "h1"):
        for key in sorted(k for k in rows if k[0] == OURS and k[1] == scenario):
            ours = rows[key]
            base = rows.get((BASELINE, *key[1:]))
            target = TARGETS.get((scenario, ours.workers), DEFAULT_TARGET)
            vs_base = ratio(rows, ours, BASELINE)
            met = "-" if vs_base is None else _yes(vs_base >= target)
            p99 = "-" if base is None else f"{ours.p99_ms:.2f} / {base.p99_ms:.2f}"
            lines.append([
                scenario, str(ours.workers), str(ours.concurrency), f"{ours.rps:,.0f}",
                "-" if base is None else f"{base.rps:,.0f}", f"**{_x(vs_base)}**",
                f">= {target:g}x", met, _x(cpu_ratio(rows, ours, BASELINE)), p99,
                _x(ratio(rows, ours, "granian")), _x(ratio(rows, ours, FLOOR)),
            ])  # fmt: skip
    if not lines:
        return [f"No {OURS} measurements over HTTP/1.1 in this run."]
    header = [
        "scenario", "w", "c", "serve req/s", "uvicorn req/s", "serve / uvicorn", "target",
        "met", "same, per CPU-s", "p99 ms serve / uvicorn", "serve / granian", "serve / floor",
    ]  # fmt: skip
    return _table(header, lines)


def headline_h2(rows: dict[Key, Row], scenarios: Sequence[str]) -> list[str]:
    """serve against hypercorn and granian over HTTP/2; the issue sets no target here."""
    base, fast = REFERENCES["h2"]
    lines: list[list[str]] = []
    for scenario in _of(scenarios, "h2"):
        for key in sorted(k for k in rows if k[0] == OURS and k[1] == scenario):
            ours, ref = rows[key], rows.get((base, *key[1:]))
            lines.append([
                scenario, str(ours.workers), str(ours.concurrency), f"{ours.rps:,.0f}",
                "-" if ref is None else f"{ref.rps:,.0f}", f"**{_x(ratio(rows, ours, base))}**",
                _x(cpu_ratio(rows, ours, base)),
                "-" if ref is None else f"{ours.p99_ms:.2f} / {ref.p99_ms:.2f}",
                _x(ratio(rows, ours, fast)),
            ])  # fmt: skip
    if not lines:
        return [f"No {OURS} measurements over HTTP/2 in this run."]
    header = [
        "scenario", "w", "c", "serve req/s", f"{base} req/s", f"serve / {base}",
        "same, per CPU-s", f"p99 ms serve / {base}", f"serve / {fast}",
    ]  # fmt: skip
    return _table(header, lines)


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
            str(workers), f"{rss[0]:.1f} / {rss[1]:.1f}", _yes(rss[0] <= rss[1]),
            f"{start[0]:.0f} / {start[1]:.0f}", _yes(start[0] <= start[1]),
        ])  # fmt: skip
    if not lines:
        return []
    header = [
        "w", "max RSS/worker MiB serve / uvicorn", "<= uvicorn", "start ms serve / uvicorn",
        "<= uvicorn",
    ]  # fmt: skip
    return _table(header, lines)


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
                _x(ratio(rows, row, base)), _x(ratio(rows, row, second)),
                f"{row.rps_per_cpu:,.0f}", _x(cpu_ratio(rows, row, base)),
                f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", str(row.errors),
                f"{row.rss_mib:.1f}", f"{row.start_ms:.0f}", f"{row.foreign_pct:.0f}",
            ])  # fmt: skip
    header = [
        "server", "w", "c", "req/s", "min-max (spread)", f"x {base}", f"x {second}", "req/CPU-s",
        f"x {base} per CPU-s", "p50 ms", "p99 ms", "errors", "RSS/worker MiB", "start ms",
        "other load %",
    ]  # fmt: skip
    return _table(header, lines)


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


def chart(
    rows: dict[Key, Row], scenarios: Sequence[str], servers: Sequence[str], path: Path
) -> None:
    """One panel per scenario; bars per server for each (workers, concurrency), min-max whiskers."""
    # matplotlib lives only in the bench venv; loaded by name, this module type-checks and
    # imports (for the markdown report) anywhere.
    plt: Any = importlib.import_module("matplotlib.pyplot")
    plt.switch_backend("Agg")

    cols = min(3, len(scenarios))
    nrows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4 * nrows), squeeze=False)
    legend: dict[str, Any] = {}
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        configs = sorted({(k[2], k[3]) for k in rows if k[1] == scenario})
        # Only the servers measured here (HTTP/2 has fewer), each in its colour of every panel.
        shown = [(i, n) for i, n in enumerate(servers) if any(k[:2] == (n, scenario) for k in rows)]
        width = 0.8 / max(1, len(shown))
        for slot, (i, server) in enumerate(shown):
            cells = [rows.get((server, scenario, w, c)) for w, c in configs]
            xs = [j + (slot - (len(shown) - 1) / 2) * width for j in range(len(configs))]
            heights = [r.rps if r else 0.0 for r in cells]
            low = [r.rps - r.rps_min if r else 0.0 for r in cells]
            high = [r.rps_max - r.rps if r else 0.0 for r in cells]
            legend[server] = ax.bar(xs, heights, width, label=server, yerr=[low, high], capsize=2,
                                    color=f"C{i}", edgecolor="black" if server == OURS else None,
                                    linewidth=1.2)  # fmt: skip
        protocol = SCENARIOS[scenario].protocol
        ax.set_title(scenario if protocol == "h1" else f"{scenario} (HTTP/2, h2load)")
        ax.set_xticks(range(len(configs)), [f"w{w} c{c}" for w, c in configs])
        ax.set_ylabel("requests/s")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    names = [n for n in servers if n in legend]
    handles = [legend[n] for n in names]
    fig.legend(handles, names, loc="lower center", ncol=max(1, len(names)), frameon=False)
    fig.suptitle("requests/s, median of interleaved runs (whiskers: min-max)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def document(rows: dict[Key, Row], meta: Meta, chart_name: str) -> str:
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
    out += ["", f"![requests/s per server and scenario]({chart_name})", ""]
    h1, h2 = _of(scenarios, "h1"), _of(scenarios, "h2")
    if h1:
        out += ["## serve vs uvicorn", "", *headline(rows, scenarios), "", *resources(rows), ""]
        out += [stability(rows), ""]
    if h2:
        out += ["## serve vs hypercorn over HTTP/2", "", *headline_h2(rows, scenarios), ""]
        out += [] if h1 else [stability(rows), ""]
    out += ["## Servers", ""]
    out += _table(["server", "versions", "command (shown for 1 worker, port 8000)"],
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
