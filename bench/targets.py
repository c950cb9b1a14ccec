"""Issue 15's targets, each stated with what this run measured and whether it is met.

Rules:
- Pure: a function of the rows (bench/figures.py) and the worker shares (bench/shares.py).
- A target is judged on the cells the issue names; where it names none (the FastAPI
  routes, p99, memory), on every cell of this run where serve and the peer both have a
  figure, and the worst of them is shown with how many cells meet it.
- A target none of whose cells were measured (a quick run, a peer not installed, a server
  that failed) says "not measured", never "met".
- The access-log and HTTP/2 baselines are requests/s, the figure the issue states; each
  also gives the per-CPU-second figure, the steadier one on a busy machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.figures import BASELINE, OURS, Key, Row, cpu_ratio, ratio
from bench.load import SCENARIOS
from bench.markdown import table, yes
from bench.shares import SHARE_WORKERS, Shares

LOG_COST_MAX = 0.15
LOG_VS_UVICORN = 2.5
TWO_WORKERS_VS_UVICORN = 1.8
SHARE_RANGE = (0.40, 0.60)
FASTAPI_VS_UVICORN = 1.25
FASTAPI_VS_GRANIAN = 1.1
SYNC_VS_UVICORN = 1.0
# serve's HTTP/2 figure when issue 15 was filed (bench/RESULTS.md then: h2, w1, c64).
H2_BEFORE_RPS = 4000.0
H2_VS_BEFORE = 2.0
H2_VS_HYPERCORN = 3.4
PLAINTEXT_VS_UVICORN = 2.0
FASTAPI_ASYNC = ("fastapi", "fastapi-mw", "fastapi-post100k")
# Each access-log variant and the server it is compared with, both with their default log.
LOGGED_PAIRS = (("serve-log", "uvicorn-log"), ("serve-log-json", "uvicorn-log"))


@dataclass(frozen=True)
class Verdict:
    target: str
    cells: str
    figure: str
    met: bool | None  # None: not measured in this run


Rows = dict[Key, Row]


def _label(row: Row) -> str:
    return f"{row.scenario} w{row.workers} c{row.concurrency}"


def _cell(rows: Rows, server: str, scenario: str, workers: int, conc: int) -> Row | None:
    return rows.get((server, scenario, workers, conc))


def log_cost(rows: Rows, variant: str, kind: str) -> Verdict:
    """An access-log variant's cost against serve with the log off, plaintext w1 c64."""
    target = f"access log on ({kind}) costs <= {LOG_COST_MAX:.0%} of serve's log-off req/s"
    logged, off = _cell(rows, variant, "plaintext", 1, 64), _cell(rows, OURS, "plaintext", 1, 64)
    if logged is None or off is None or not off.rps:
        return Verdict(target, "plaintext w1 c64", _lacking((variant, logged), (OURS, off)), None)
    cost = 1 - logged.rps / off.rps
    per_cpu = 1 - logged.rps_per_cpu / off.rps_per_cpu if off.rps_per_cpu else 0.0
    figure = f"{cost:.1%} ({logged.rps:,.0f} vs {off.rps:,.0f} req/s); per CPU-s {per_cpu:.1%}"
    return Verdict(target, "plaintext w1 c64", figure, cost <= LOG_COST_MAX)


def _lacking(*cells: tuple[str, Row | None]) -> str:
    """What a target misses: the servers without a figure for its cell."""
    return "no figure of " + " and ".join(name for name, row in cells if row is None or not row.rps)


def pair_ratio(
    target: str, pair: tuple[str, str], cell: tuple[str, int, int], rows: Rows, at_least: float
) -> Verdict:
    """`ours` / `peer` requests/s at one cell, against a minimum."""
    ours, peer = pair
    scenario, workers, conc = cell
    where = f"{scenario} w{workers} c{conc}"
    row, ref = _cell(rows, ours, *cell), _cell(rows, peer, *cell)
    if row is None or ref is None or not ref.rps:
        return Verdict(target, where, _lacking((ours, row), (peer, ref)), None)
    value = row.rps / ref.rps
    per_cpu = cpu_ratio(rows, row, peer)
    extra = "" if per_cpu is None else f"; per CPU-s {per_cpu:.2f}x"
    figure = f"{value:.2f}x ({row.rps:,.0f} vs {ref.rps:,.0f} req/s{extra})"
    return Verdict(target, where, figure, value >= at_least)


def worst(
    target: str,
    cells: str,
    found: Sequence[tuple[str, float, str]],
    limit: float,
    *,
    at_most: bool = False,
) -> Verdict:
    """The worst of (label, value, detail) against `limit` (a minimum, or a maximum)."""
    if not found:
        return Verdict(target, cells, "no cell with both figures", None)
    ok: Callable[[float], bool] = (lambda v: v <= limit) if at_most else (lambda v: v >= limit)
    label, value, detail = (max if at_most else min)(found, key=lambda item: item[1])
    meeting = sum(ok(v) for _, v, _ in found)
    figure = f"worst {value:.2f}x ({label}{detail}); {meeting} of {len(found)} cells met"
    return Verdict(target, cells, figure, meeting == len(found))


def versus(
    rows: Rows, scenarios: Sequence[str], peer: str, *, w1_only: bool = False
) -> list[tuple[str, float, str]]:
    """serve / `peer` requests/s in every cell of `scenarios` where both were measured
    (with `w1_only`, those of one worker at c64 and c256)."""
    found = []
    for key, row in sorted(rows.items()):
        if w1_only and (key[2] != 1 or key[3] not in (64, 256)):
            continue
        if key[0] == OURS and key[1] in scenarios:
            value = ratio(rows, row, peer)
            if value is not None:
                found.append((_label(row), value, ""))
    return found


def p99_ratios(rows: Rows) -> list[tuple[str, float, str]]:
    """serve's p99 over its peer's in every cell both ran, the log variants included."""
    found = []
    for ours, peer in ((OURS, BASELINE), *LOGGED_PAIRS):
        for key, row in sorted(rows.items()):
            ref = rows.get((peer, *key[1:]))
            if key[0] == ours and ref is not None and ref.p99_ms > 0:
                label = _label(row) if ours == OURS else f"{ours}, {_label(row)}"
                detail = f": {row.p99_ms:.2f} vs {ref.p99_ms:.2f} ms"
                found.append((label, row.p99_ms / ref.p99_ms, detail))
    return found


def rss_ratios(rows: Rows) -> list[tuple[str, float, str]]:
    """serve's largest worker RSS over uvicorn's, per worker count and app; it is read
    after each run, so the largest is what the bench left."""
    largest: dict[tuple[str, int, str], float] = {}
    for (server, scenario, workers, _), row in rows.items():
        if server in (OURS, BASELINE):
            key = (server, workers, SCENARIOS[scenario].app.rpartition(":")[2])
            largest[key] = max(largest.get(key, 0.0), row.rss_mib)
    found = []
    for (server, workers, app), ours in sorted(largest.items()):
        base = largest.get((BASELINE, workers, app))
        if server == OURS and base:
            detail = f": {ours:.1f} vs {base:.1f} MiB"
            found.append((f"w{workers} {app}", ours / base, detail))
    return found


def share_verdicts(shares: Shares, concurrencies: Sequence[int]) -> list[Verdict]:
    low, high = SHARE_RANGE
    target = f"each worker's share of requests within {low:.0%}-{high:.0%}"
    verdicts = []
    for conc in concurrencies:
        where = f"plaintext w{SHARE_WORKERS} c{conc}"
        found = shares.by_concurrency.get(conc)
        if found is None:
            verdicts.append(Verdict(target, where, shares.missing, None))
            continue
        figure = " / ".join(f"{share:.0%}" for share in found)
        verdicts.append(Verdict(target, where, figure, all(low <= s <= high for s in found)))
    return verdicts


def h2_verdicts(rows: Rows) -> list[Verdict]:
    where = "h2 w1 c64"
    target = f"HTTP/2 h2c >= {H2_VS_BEFORE:g}x serve's {H2_BEFORE_RPS:,.0f} req/s of issue 15"
    row = _cell(rows, OURS, "h2", 1, 64)
    if row is None:
        before = Verdict(target, where, f"no figure of {OURS}", None)
    else:
        value = row.rps / H2_BEFORE_RPS
        figure = f"{value:.2f}x ({row.rps:,.0f} req/s; an absolute figure: machine-bound)"
        before = Verdict(target, where, figure, value >= H2_VS_BEFORE)
    vs_hypercorn = f"HTTP/2 h2c >= {H2_VS_HYPERCORN:g}x hypercorn"
    pair = (OURS, "hypercorn")
    return [before, pair_ratio(vs_hypercorn, pair, ("h2", 1, 64), rows, H2_VS_HYPERCORN)]


def verdicts(rows: Rows, shares: Shares) -> list[Verdict]:
    """Every target of issue 15, in the order the issue lists them."""
    serve_uvicorn, logged = (OURS, BASELINE), ("serve-log", "uvicorn-log")
    two = f"2 workers: serve >= {TWO_WORKERS_VS_UVICORN:g}x uvicorn"
    async_routes = ", ".join(FASTAPI_ASYNC)
    return [
        log_cost(rows, "serve-log", "text"),
        log_cost(rows, "serve-log-json", "JSON"),
        pair_ratio(f"serve with its default log >= {LOG_VS_UVICORN:g}x uvicorn with its",
                   logged, ("plaintext", 1, 64), rows, LOG_VS_UVICORN),
        pair_ratio(two, serve_uvicorn, ("plaintext", 2, 64), rows, TWO_WORKERS_VS_UVICORN),
        pair_ratio(two, serve_uvicorn, ("plaintext", 2, 256), rows, TWO_WORKERS_VS_UVICORN),
        *share_verdicts(shares, (64, 256)),
        worst(f"FastAPI async routes >= {FASTAPI_VS_UVICORN:g}x uvicorn", async_routes,
              versus(rows, FASTAPI_ASYNC, BASELINE), FASTAPI_VS_UVICORN),
        worst(f"FastAPI async routes >= {FASTAPI_VS_GRANIAN:g}x granian", async_routes,
              versus(rows, FASTAPI_ASYNC, "granian"), FASTAPI_VS_GRANIAN),
        worst("FastAPI sync route >= uvicorn", "fastapi-sync",
              versus(rows, ["fastapi-sync"], BASELINE), SYNC_VS_UVICORN),
        *h2_verdicts(rows),
        pair_ratio(f"plaintext, log off: serve >= {PLAINTEXT_VS_UVICORN:g}x uvicorn",
                   serve_uvicorn, ("plaintext", 1, 64), rows, PLAINTEXT_VS_UVICORN),
        worst("plaintext, log off: serve never below granian", "plaintext w1 c64, c256",
              versus(rows, ["plaintext"], "granian", w1_only=True), 1.0),
        worst("no p99 above uvicorn's", "every cell both ran", p99_ratios(rows), 1.0,
              at_most=True),
        worst("worker RSS after the bench <= uvicorn's", "each worker count and app",
              rss_ratios(rows), 1.0, at_most=True),
    ]  # fmt: skip


def section(rows: Rows, shares: Shares) -> list[str]:
    """The "Issue targets" table of RESULTS.md."""
    lines = [
        [v.target, v.cells, v.figure, "not measured" if v.met is None else yes(v.met)]
        for v in verdicts(rows, shares)
    ]
    return table(["target (issue 15)", "measured on", "this run", "met"], lines)
