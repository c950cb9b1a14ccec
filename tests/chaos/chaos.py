"""Chaos under load: random signals, kills, leaks and blocked loops against a loaded master.

    python -m tests.chaos.chaos --seconds 120 --workers 3 --seed 7 [--results bench/RESULTS.md]

Starts serve (tests/apps/reliability_apps.py, WORKERS workers, a small worker_timeout and
a max_worker_memory that /leak crosses), runs keep-alive and new-connection load clients
(tests/load_client.py) on loopback, and for SECONDS draws seeded actions (actions.py): HUP,
TTIN, TTOU, SIGKILL of a random worker, /leak until a memory replacement, /block until the
heartbeat abort. Then it stops the load, reads the replacements by reason from /metrics,
stops serve with TERM and prints a summary. Failed load requests are judged by
attribution.py; the run fails (exit 1) on any unexpected failure or connection error, a
/block that got an answer or a blocked worker that lived on, a master log line that says
something went wrong, a master that did not stop cleanly, or master RSS growing more than
--master-growth-mib.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import sections
from tests.chaos.actions import KINDS, Chaos, ChaosRequests
from tests.chaos.attribution import DOOMED, KILLED, Verdicts, classify, deaths
from tests.conftest import ServeProcess
from tests.load_client import Plan, Request, load
from tests.log_follower import LogFollower
from tests.reliability_run import (
    restarts_by_reason,
    results_header,
    rss_mib,
    running_serve,
    shown_command,
    table,
)

WORKER_TIMEOUT_S = 3
MAX_WORKER_MEMORY = "160MiB"
# Seconds between two actions: a reload takes about one, so some overlap and some do not.
PAUSE_S = (0.2, 1.0)
# Load after the last action, so its effects land on a loaded fleet too.
AFTER_S = 3.0
# Master log lines that no chaos explains.
TROUBLE = r"did not stop in time|master loop failed|Traceback"
BLOCKED = r"app: worker (\d+) blocks its loop"
SMALL, WAIT = Request("/"), Request("/wait")


@dataclass(frozen=True)
class Options:
    seconds: float
    workers: int = 3
    seed: int = 0
    keep_alive_clients: int = 3
    new_connection_clients: int = 2
    master_growth_mib: float = 10.0
    log_dir: Path | None = None


@dataclass
class Report:
    options: Options
    actions: Counter[str]
    sent: int
    ok: int
    verdicts: Verdicts
    chaos: ChaosRequests
    restarts: dict[str, int]
    master_before_mib: float
    master_after_mib: float
    serve_exit: int
    trouble: list[str] = field(default_factory=list)

    @property
    def master_growth_mib(self) -> float:
        return self.master_after_mib - self.master_before_mib

    @property
    def problems(self) -> list[str]:
        found = []
        if self.verdicts.unexpected:
            found.append(f"{len(self.verdicts.unexpected)} unexpected failures")
        if self.verdicts.connection_errors:
            found.append(f"{len(self.verdicts.connection_errors)} connection errors")
        if self.chaos.block_answered:
            found.append(f"{self.chaos.block_answered} /block requests got an answer")
        if self.trouble:
            found.append(f"{len(self.trouble)} master log lines about trouble")
        if self.serve_exit != 0:
            found.append(f"serve exited with {self.serve_exit} after TERM")
        if self.master_growth_mib > self.options.master_growth_mib:
            found.append(
                f"master RSS grew {self.master_growth_mib:.1f} MiB "
                f"(bound {self.options.master_growth_mib:g})"
            )
        return found


def serve_config(options: Options) -> dict[str, Any]:
    return {
        "app": "reliability_apps:app",
        "bind": ["127.0.0.1:0"],
        "workers": options.workers,
        "worker_timeout": WORKER_TIMEOUT_S,
        "health_interval": 0.25,
        "max_worker_memory": MAX_WORKER_MEMORY,
        "graceful_timeout": 10,
        "boot_timeout": 30,
        "access_log": False,
        "metrics": {"bind": "127.0.0.1:0"},
    }


def mixed(close: bool) -> Plan:
    return lambda rng: (WAIT if rng.random() < 0.3 else SMALL, close)


def unleash(serve: ServeProcess, log: LogFollower, options: Options) -> Chaos:
    """Draw and run actions for options.seconds; return what was done."""
    rng = random.Random(options.seed)
    chaos = Chaos(serve, log, options.workers, rng)
    deadline = time.monotonic() + options.seconds
    while time.monotonic() < deadline:
        chaos.act(chaos.draw())
        if serve.proc.poll() is not None:
            raise RuntimeError(f"serve exited ({serve.proc.returncode}):\n{serve.log()}")
        time.sleep(rng.uniform(*PAUSE_S))
    chaos.finish()
    time.sleep(AFTER_S)
    return chaos


def run(options: Options) -> Report:
    plans = [mixed(False)] * options.keep_alive_clients
    plans += [mixed(True)] * options.new_connection_clients
    config = serve_config(options)
    with running_serve(config, options.log_dir) as serve, LogFollower(serve.log_path) as log:
        with load(serve.port, plans=plans, seed=options.seed) as traffic:
            before = rss_mib(serve.pid)
            chaos = unleash(serve, log, options)
            traffic.wait_for_more()
        after = rss_mib(serve.pid)
        restarts = restarts_by_reason(serve)
        serve_exit = serve.stop(60)
        log.wait_for("serve stopped", 0, 10)
        killed = [(t, int(m[1]), m[3] or f"exit {m[4]}") for t, m in log.matches(KILLED)]
        doomed = [(t, int(m[1] or m[2])) for t, m in log.matches(DOOMED)]
        trouble = [m.string for _, m in log.matches(TROUBLE)]
        blocked = {int(m[1]) for _, m in log.matches(BLOCKED)}
    dead = {pid for _, pid, _ in killed}
    trouble += [f"worker {pid} blocked its loop and lived on" for pid in blocked - dead]
    failures = traffic.failures
    return Report(
        options=options,
        actions=chaos.done,
        sent=traffic.ok + len(failures),
        ok=traffic.ok,
        verdicts=classify(failures, deaths(chaos.kills, killed, doomed)),
        chaos=chaos.requests,
        restarts=restarts,
        master_before_mib=before,
        master_after_mib=after,
        serve_exit=serve_exit,
        trouble=trouble,
    )


def summary(report: Report) -> str:
    o, v, c = report.options, report.verdicts, report.chaos
    actions = ", ".join(f"{kind} {report.actions[kind]}" for kind in KINDS)
    restarts = ", ".join(f"{reason} {count}" for reason, count in report.restarts.items())
    clients = f"{o.keep_alive_clients} keep-alive + {o.new_connection_clients} new-connection"
    rows = [
        ("seed", str(o.seed)),
        ("duration", f"{o.seconds:g} s of chaos, {o.workers} workers at start, {clients}"),
        ("actions", actions),
        ("load requests sent", f"{report.sent:,}"),
        ("ok", f"{report.ok:,}"),
        (
            "failed, expected (in flight on a killed worker)",
            f"{v.expected} ({len(v.expected_by_pid)} by pid, {len(v.expected_by_time)} by time)",
        ),
        ("failed, unexpected", str(len(v.unexpected))),
        ("connection errors", str(len(v.connection_errors))),
        (
            "chaos requests",
            f"/leak {c.leak_ok} ok, {c.leak_failed} failed, {c.leak_replaced} memory "
            f"replacements seen; /block {c.block_sent} sent, {c.block_answered} answered",
        ),
        ("worker replacements by reason", restarts),
        (
            "master RSS before / after",
            f"{report.master_before_mib:.1f} / {report.master_after_mib:.1f} MiB "
            f"({report.master_growth_mib:+.1f})",
        ),
        ("serve exit after TERM", str(report.serve_exit)),
        ("result", "; ".join(report.problems) or "pass"),
    ]
    return table(rows)


def details(report: Report) -> str:
    """The unexpected failures and trouble lines, for a failed run's output."""
    lines = [f"unexpected: {f}" for f in report.verdicts.unexpected[:20]]
    lines += [f"connection error: {f}" for f in report.verdicts.connection_errors[:20]]
    lines += [f"master: {line}" for line in report.trouble[:20]]
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--master-growth-mib", type=float, default=10.0)
    parser.add_argument("--log-dir", type=Path, default=None, help="keep serve's log here")
    parser.add_argument("--results", type=Path, default=None, help="update its Chaos section")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error(f"--workers: at least 2, got {args.workers}")
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    options = Options(
        args.seconds,
        args.workers,
        seed,
        master_growth_mib=args.master_growth_mib,
        log_dir=args.log_dir,
    )
    return options, args.results


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    options, results = parse(args)
    print(f"chaos: seed {options.seed}, {options.seconds:g} s", flush=True)
    report = run(options)
    text = summary(report)
    print(text)
    if report.problems:
        print(details(report))
    if results is not None:
        shown = ["--seed", str(options.seed), *args] if "--seed" not in args else args
        header = results_header(shown_command("tests.chaos.chaos", shown))
        sections.update(results, "Chaos", f"{header}\n{text}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
