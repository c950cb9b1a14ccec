"""bench/targets.py and bench/shares.py: issue 15's targets, each with its figure and verdict
at the top of RESULTS.md; what bench/balance.py answers, or why it did not."""

from __future__ import annotations

import dataclasses

import pytest

from bench.figures import Key, Row
from bench.options import parse_options
from bench.report import Meta, document
from bench.run import Bench
from bench.shares import Shares, measure, normalised
from bench.targets import Verdict, verdicts

W1, W2 = 1, 2


def row(server: str, scenario: str, workers: int, conc: int, rps: float, **more: float) -> Row:
    figures = {"p99_ms": 5.0, "rss_mib": 30.0, "rps_per_cpu": rps} | more
    return Row(
        server, scenario, workers, conc, runs=3, rps=rps, rps_min=rps, rps_max=rps, p50_ms=1.0,
        p99_ms=figures["p99_ms"], errors=0, rss_mib=figures["rss_mib"], start_ms=100.0,
        foreign_pct=0.0, rps_per_cpu=figures["rps_per_cpu"], cpu_spread_pct=0.0,
    )  # fmt: skip


def a_run_meeting_every_target() -> dict[Key, Row]:
    rows = [
        row("serve", "plaintext", W1, 64, 50_000),
        row("serve-log", "plaintext", W1, 64, 45_000),
        row("serve-log-json", "plaintext", W1, 64, 43_000),
        row("uvicorn-log", "plaintext", W1, 64, 15_000, p99_ms=9.0),
        row("uvicorn", "plaintext", W1, 64, 24_000),
        row("granian", "plaintext", W1, 64, 45_000),
        row("serve", "plaintext", W1, 256, 48_000),
        row("granian", "plaintext", W1, 256, 47_000),
        row("serve", "plaintext", W2, 64, 60_000),
        row("uvicorn", "plaintext", W2, 64, 30_000),
        row("serve", "plaintext", W2, 256, 58_000),
        row("uvicorn", "plaintext", W2, 256, 28_000),
        row("serve", "h2", W1, 64, 9_000),
        row("hypercorn", "h2", W1, 64, 2_000),
    ]
    for scenario, serve_rps in (("fastapi", 6_000), ("fastapi-mw", 5_000), ("fastapi-sync", 3_000)):
        rows += [
            row("serve", scenario, W1, 64, serve_rps, rss_mib=50.0),
            row("uvicorn", scenario, W1, 64, serve_rps / 1.3, rss_mib=55.0),
            row("granian", scenario, W1, 64, serve_rps / 1.2),
        ]
    return {(r.server, r.scenario, r.workers, r.concurrency): r for r in rows}


MET_SHARES = Shares({64: (0.48, 0.52), 256: (0.55, 0.45)}, "")


def by_target(found: list[Verdict]) -> dict[tuple[str, str], Verdict]:
    return {(v.target, v.cells): v for v in found}


def test_a_run_meeting_every_target_says_so_for_each() -> None:
    found = verdicts(a_run_meeting_every_target(), MET_SHARES)
    assert len(found) == 16
    assert [v for v in found if v.met is not True] == []
    cost = by_target(found)[
        ("access log on (JSON) costs <= 15% of serve's log-off req/s", "plaintext w1 c64")
    ]
    assert cost.figure.startswith("14.0% (43,000 vs 50,000 req/s)")


def replaced(rows: dict[Key, Row], key: Key, **changes: float) -> dict[Key, Row]:
    return rows | {key: dataclasses.replace(rows[key], **changes)}


@pytest.mark.parametrize(
    ("key", "changes", "target"),
    [
        (("serve-log-json", "plaintext", W1, 64), {"rps": 42_000}, "access log on (JSON)"),
        (("serve", "plaintext", W2, 256), {"rps": 50_000}, "2 workers: serve >= 1.8x uvicorn"),
        (("serve", "fastapi-mw", W1, 64), {"rps": 4_700}, "FastAPI async routes >= 1.25x uvicorn"),
        (("serve", "fastapi-sync", W1, 64), {"rps": 2_000}, "FastAPI sync route >= uvicorn"),
        (("serve", "h2", W1, 64), {"rps": 7_900}, "HTTP/2 h2c >= 2x serve's 4,000 req/s"),
        (("granian", "plaintext", W1, 256), {"rps": 48_100}, "plaintext, log off: serve never"),
        (("serve", "fastapi", W1, 64), {"p99_ms": 5.1}, "no p99 above uvicorn's"),
        (("serve", "fastapi", W1, 64), {"rss_mib": 56.0}, "worker RSS after the bench"),
    ],
)
def test_one_cell_missing_its_target_fails_that_target_alone(
    key: Key, changes: dict[str, float], target: str
) -> None:
    found = verdicts(replaced(a_run_meeting_every_target(), key, **changes), MET_SHARES)
    missed = [v for v in found if v.met is not True]
    assert len(missed) == 1
    assert missed[0].target.startswith(target)
    assert missed[0].met is False


def test_the_worst_cell_is_named_with_how_many_cells_meet_the_target() -> None:
    rows = replaced(a_run_meeting_every_target(), ("serve", "fastapi", W1, 64), p99_ms=7.5)
    p99 = by_target(verdicts(rows, MET_SHARES))[("no p99 above uvicorn's", "every cell both ran")]
    assert p99.figure == "worst 1.50x (fastapi w1 c64: 7.50 vs 5.00 ms); 7 of 8 cells met"


def test_a_target_whose_cells_were_not_measured_is_not_met_but_not_measured() -> None:
    rows = a_run_meeting_every_target()
    rows = {k: r for k, r in rows.items() if k[0] not in ("uvicorn-log", "hypercorn", "granian")}
    found = by_target(verdicts(rows, Shares()))
    logged = found[("serve with its default log >= 2.5x uvicorn with its", "plaintext w1 c64")]
    assert (logged.met, logged.figure) == (None, "no figure of uvicorn-log")
    assert found[("HTTP/2 h2c >= 3.4x hypercorn", "h2 w1 c64")].met is None
    granian = found[
        ("FastAPI async routes >= 1.1x granian", "fastapi, fastapi-mw, fastapi-post100k")
    ]
    assert (granian.met, granian.figure) == (None, "no cell with both figures")
    assert found[("plaintext, log off: serve >= 2x uvicorn", "plaintext w1 c64")].met is True


@pytest.mark.parametrize(
    ("shares", "met"),
    [((0.4, 0.6), True), ((0.39, 0.61), False), ((0.2, 0.8), False)],
)
def test_each_workers_share_is_judged_against_40_to_60_percent(
    shares: tuple[float, float], met: bool
) -> None:
    found = verdicts(a_run_meeting_every_target(), Shares({64: shares, 256: (0.5, 0.5)}, ""))
    share = by_target(found)[("each worker's share of requests within 40%-60%", "plaintext w2 c64")]
    assert share.met is met
    assert share.figure == " / ".join(f"{s:.0%}" for s in shares)


def test_without_a_balance_module_the_shares_are_not_measured_and_say_why() -> None:
    shares = measure([64, 256], 1.0, module="bench.no_such_balance")
    assert shares.by_concurrency == {}
    assert shares.missing == "bench.no_such_balance is not in this tree"
    found = by_target(verdicts(a_run_meeting_every_target(), shares))
    share = found[("each worker's share of requests within 40%-60%", "plaintext w2 c256")]
    assert (share.met, share.figure) == (None, "bench.no_such_balance is not in this tree")


def test_a_module_without_measure_shares_is_named() -> None:
    shares = measure([64], 1.0, module="bench.figures")
    assert shares.missing == "bench.figures has no measure_shares()"


def test_request_counts_or_fractions_become_shares_summing_to_one() -> None:
    assert normalised([300, 100]) == (0.75, 0.25)
    assert normalised([0.5, 0.5]) == (0.5, 0.5)
    assert normalised([0, 0]) == ()


def test_the_targets_table_opens_the_report() -> None:
    meta = Meta(
        date="2026-12-06 12:00 UTC", machine="m", python="p", tools="t", command="c",
        method="m.", pinning=[], commands=[], wrk_example="", h2load_example="",
        scenarios=[("plaintext", "GET /"), ("fastapi", "GET /items"), ("h2", "GET / over h2")],
        notes={}, servers=["serve"], failures=[], cut="",
    )  # fmt: skip
    text = document(a_run_meeting_every_target(), meta, None, MET_SHARES)
    assert text.index("## Issue targets") < text.index("## serve vs uvicorn")
    table = text.split("## Issue targets")[1].split("## ")[0]
    assert table.count("| yes |") == 16
    assert "results.png" not in text


def test_smoke_and_quick_presets_and_an_explicit_option_wins() -> None:
    smoke = parse_options(["--smoke"])
    assert smoke.servers == ("serve", "serve-log", "serve-log-json", "floor")
    assert smoke.scenarios == ("plaintext", "fastapi", "h2")
    assert (smoke.workers, smoke.concurrency, smoke.runs, smoke.duration, smoke.warmup) == (
        (1,), (64,), 1, 1, 0,
    )  # fmt: skip
    assert parse_options(["--smoke", "--workers", "1,2"]).workers == (1, 2)
    quick = parse_options(["--quick"])
    assert (quick.concurrency, quick.runs, quick.duration) == ((64,), 2, 1)
    assert len(quick.scenarios) > 3
    full = parse_options([])
    assert (full.workers, full.concurrency, full.runs, full.duration) == ((1, 2), (64, 256), 3, 2)
    with pytest.raises(SystemExit):
        parse_options(["--smoke", "--quick"])


def test_the_default_time_limit_covers_a_default_full_run() -> None:
    # A `make bench` cut short by its own limit writes a report with cells missing.
    bench = Bench(parse_options([]))
    try:
        assert bench.estimate_s() / 60 < bench.o.max_minutes
    finally:
        bench.logs.rmdir()
