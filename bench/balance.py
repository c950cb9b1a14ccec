"""How two workers share the load: `python -m bench.balance` (issue 15, item 2).

Rules:
- Each server runs bench.app:app with 2 workers under wrk (plaintext, keep-alive, one
  thread) at c64 and c256, in interleaved rounds: server A, server B, ... then the next
  round in reverse order (ABBA), so a change in the machine's load hits all of them alike.
- A worker's share is its part of the bytes the workers wrote over the run (wchar in
  /proc/PID/io): every response is the same size, so that is its part of the requests,
  whatever the server (CPU time is not: on a saturated machine every runnable worker gets
  its slice, busy or not). CPU-us per request is the workers' utime + stime over wrk's
  request count. The connections each worker holds are counted once, in the middle of the
  run: that is where a shared socket's imbalance starts (the first worker to wake takes a
  burst, and keep-alive keeps it).
- The target: each worker's share within 40-60%.
- `--tree LABEL=PATH` adds serve as checked out at PATH (run as `python -m serve` from
  there), to compare two versions of serve in the same rounds.
- The rows go to bench/balance.json (or --out), which `make bench` leaves next to
  results.json for the report; rows() reads them back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench.load import SCENARIOS, LoadResult, run_wrk, wrk_command
from bench.options import ROOT
from bench.servers import APP, SERVERS, RunningServer, ServerSpec

SHARE_RANGE = (0.40, 0.60)
OUT = ROOT / "bench" / "balance.json"
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class BalanceRow:
    server: str
    concurrency: int
    round: int
    rps: float
    errors: int
    # Each worker's part of the responses (bytes written), largest first.
    shares: tuple[float, ...]
    # Established connections each worker held in the middle of the run, most first.
    connections: tuple[int, ...]
    cpu_us_per_request: float

    @property
    def balanced(self) -> bool:
        return all(SHARE_RANGE[0] <= share <= SHARE_RANGE[1] for share in self.shares)


def _serve_at(label: str, tree: Path) -> tuple[ServerSpec, Path]:
    def argv(workers: int, port: int) -> list[str]:
        return [
            sys.executable, "-m", "serve", APP, "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    return ServerSpec(f"serve@{label}", ("serve",), argv), tree


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _established(proc: psutil.Process) -> int:
    return sum(c.status == psutil.CONN_ESTABLISHED for c in proc.net_connections(kind="tcp"))


def measure(spec: ServerSpec, cwd: Path, concurrency: int, duration_s: int, rnd: int) -> BalanceRow:
    """One run of `spec` with 2 workers under wrk at `concurrency`."""
    cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    with tempfile.TemporaryFile() as log:
        server = RunningServer(spec, 2, cpus, cwd, log, protocol="h1")
        try:
            server.wait_ready()
            server.wait_workers()
            workers = server.worker_processes()
            before = [_cpu_s(proc.pid) for proc in workers]
            wrote = [_written(proc.pid) for proc in workers]
            command = wrk_command(
                server.port, SCENARIOS["plaintext"], concurrency, duration_s, cpus
            )
            results: list[LoadResult] = []
            run = threading.Thread(target=lambda: results.append(run_wrk(command, duration_s)))
            run.start()
            time.sleep(duration_s / 2)
            held = [_established(proc) for proc in workers]
            run.join()
            spent = [_cpu_s(proc.pid) - start for proc, start in zip(workers, before, strict=True)]
            wrote = [_written(proc.pid) - start for proc, start in zip(workers, wrote, strict=True)]
        finally:
            server.stop()
    (result,) = results
    total = sum(wrote) or 1
    return BalanceRow(
        spec.name,
        concurrency,
        rnd,
        result.rps,
        result.errors,
        tuple(sorted((count / total for count in wrote), reverse=True)),
        tuple(sorted(held, reverse=True)),
        sum(spent) * 1e6 / max(result.requests, 1),
    )


def measure_shares(workers: int, concurrency: int, duration_s: float) -> tuple[float, ...]:
    """What `make bench`'s targets table asks (bench/shares.py): serve's workers' shares in
    one run at `concurrency`, largest first."""
    if workers != 2:
        raise ValueError(f"bench.balance runs 2 workers, not {workers}")
    row = measure(SERVERS["serve"], ROOT, concurrency, max(1, round(duration_s)), 0)
    return row.shares


def run(
    servers: list[tuple[ServerSpec, Path]],
    concurrencies: tuple[int, ...] = (64, 256),
    rounds: int = 3,
    duration_s: int = 8,
) -> list[BalanceRow]:
    rows = []
    for rnd in range(rounds):
        for concurrency in concurrencies:
            # Every other round in reverse: no server always runs right after another.
            for spec, cwd in servers if rnd % 2 == 0 else servers[::-1]:
                row = measure(spec, cwd, concurrency, duration_s, rnd)
                print(_line(row), flush=True)
                rows.append(row)
    return rows


def ratios(rows: list[BalanceRow], server: str, base: str, concurrency: int) -> list[float]:
    """req/s of `server` over `base`'s in each round both ran at `concurrency`."""
    by_round = {(r.server, r.round): r.rps for r in rows if r.concurrency == concurrency}
    rounds = sorted({r.round for r in rows})
    return [
        by_round[server, n] / by_round[base, n]
        for n in rounds
        if (server, n) in by_round and by_round.get((base, n))
    ]


def summary(rows: list[BalanceRow], base: str) -> list[str]:
    """Per concurrency and server: median ratio to `base` (and its range over the rounds),
    median largest share, rounds within SHARE_RANGE, median CPU-us per request."""
    lines = []
    for concurrency, server in sorted({(row.concurrency, row.server) for row in rows}):
        mine = [row for row in rows if (row.concurrency, row.server) == (concurrency, server)]
        found = ratios(rows, server, base, concurrency)
        ratio = (
            f"{statistics.median(found):.2f}x {base} ({min(found):.2f}-{max(found):.2f})"
            if found
            else "-"
        )
        top = statistics.median(row.shares[0] for row in mine)
        cpu = statistics.median(row.cpu_us_per_request for row in mine)
        lines.append(
            f"c{concurrency:<4} {server:<12} {ratio:<28} largest share {top:5.1%}, "
            f"balanced {sum(r.balanced for r in mine)}/{len(mine)}, {cpu:5.1f} CPU-us/req"
        )
    return lines


def rows(path: Path = OUT) -> list[BalanceRow]:
    """The rows the last run wrote."""
    return [
        BalanceRow(
            **{**item, "shares": tuple(item["shares"]), "connections": tuple(item["connections"])}
        )
        for item in json.loads(path.read_text())
    ]


def _line(row: BalanceRow) -> str:
    shares = "/".join(f"{share:.0%}" for share in row.shares)
    held = "/".join(str(count) for count in row.connections)
    return (
        f"round {row.round} c{row.concurrency} {row.server}: {row.rps:.0f} req/s, "
        f"shares {shares}, connections {held}, {row.cpu_us_per_request:.1f} CPU-us/req"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.balance", description=__doc__)
    parser.add_argument("--servers", default="serve,uvicorn", help="names from bench.servers")
    parser.add_argument("--tree", action="append", default=[], help="LABEL=PATH of a serve")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="64,256", help="wrk -c values")
    parser.add_argument("--duration", type=int, default=8, help="seconds per run")
    parser.add_argument("--base", default="uvicorn", help="the server ratios are taken to")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    chosen = [(SERVERS[name], ROOT) for name in args.servers.split(",") if name]
    for item in args.tree:
        label, _, path = item.partition("=")
        chosen.append(_serve_at(label, Path(path).resolve()))
    concurrencies = tuple(int(value) for value in args.concurrency.split(","))
    found = run(chosen, concurrencies, rounds=args.rounds, duration_s=args.duration)
    args.out.write_text(json.dumps([asdict(row) for row in found], indent=1) + "\n")
    print("\n".join(summary(found, args.base)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
