"""The supervisor under continuous load: reloads, crashes, retirements and upgrades.

The load comes from keep-alive clients that never retry (tests/load_client.py has their
rules): a request that gets no complete 200 is a failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ServeProcess, StartServe, wait_until, write_config
from tests.load_client import load, served_by_fresh_connection

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"


def roll(serve: ServeProcess, generation: int) -> None:
    serve.signal(signal.SIGHUP)
    serve.wait_log(f"generation {generation} ready; retiring the previous workers", timeout=30)


def test_ten_sighups_under_keep_alive_load_fail_no_request(start_serve: StartServe) -> None:
    serve = start_serve(APP, "--workers", "2", "--no-access-log")
    first = set(serve.worker_pids())
    with load(serve.port) as traffic:
        for generation in range(2, 12):
            roll(serve, generation)
            traffic.wait_for_more()
    assert traffic.failures == []
    current = set(serve.worker_pids())
    assert current.isdisjoint(first)
    # Requests were served by many generations of workers, and connections were renewed
    # when draining workers answered with `Connection: close`.
    assert len(traffic.pids) >= 11
    assert sum(client.connections for client in traffic.clients) > len(traffic.clients)
    log = serve.wait_log("exited with code 0", count=20)
    assert "WARNING" not in log


def test_ten_sighups_under_wrk_fail_no_request(start_serve: StartServe) -> None:
    serve = start_serve(APP, "--workers", "2", "--no-access-log")
    wrk = subprocess.Popen(
        ["wrk", "-t2", "-c16", "-d120s", "--timeout", "10s", serve.url + "/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for generation in range(2, 12):
            roll(serve, generation)
    finally:
        # wrk prints its summary on SIGINT.
        wrk.send_signal(signal.SIGINT)
        output, _ = wrk.communicate(timeout=30)
    match = re.search(r"(\d+) requests in", output)
    assert match, output
    assert int(match.group(1)) > 1000, output
    assert "Socket errors" not in output, output
    assert "Non-2xx" not in output, output


def test_a_killed_worker_under_load_fails_only_the_requests_it_held(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2", "--no-access-log")
    with load(serve.port, clients=6) as traffic:
        victim = min(traffic.pids)
        [survivor] = set(serve.worker_pids()) - {victim}
        os.kill(victim, signal.SIGKILL)
        serve.wait_log(f"worker {victim} killed by SIGKILL")
        [new] = wait_until(lambda: (p := set(serve.worker_pids()) - {victim, survivor}) and p)
        serve.wait_log(f"worker {new} ready")
        traffic.wait_for_more()
        # The kernel hands each new connection to whichever worker accepts first.
        wait_until(lambda: served_by_fresh_connection(serve.port) == new)
    # Each client had one request at most on the victim; none elsewhere failed.
    assert len(traffic.failures) <= len(traffic.clients)
    assert all(f.last_pid in (victim, 0) for f in traffic.failures), traffic.failures
    assert traffic.ok > 0


def test_max_requests_rotates_workers_without_failing_a_request(start_serve: StartServe) -> None:
    serve = start_serve(APP, "--workers", "2", "--max-requests", "50", "--no-access-log")
    first = set(serve.worker_pids())
    with load(serve.port, clients=2, limit=250) as traffic:
        wait_until(lambda: traffic.ok + len(traffic.failures) >= 500, timeout=60)
    assert traffic.ok == 500
    assert traffic.failures == []
    log = serve.wait_log(r"served \d+ requests \(max_requests 50\); starting its replacement")
    serve.wait_log(r"worker \d+ replaces worker \d+")
    rotated = wait_until(lambda: set(serve.worker_pids()) - first)
    assert rotated
    assert "WARNING" not in log


def test_a_leaking_worker_is_replaced_and_no_request_fails(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "leak.yaml",
        app=APP,
        bind="127.0.0.1:0",
        workers=1,
        max_worker_memory="96MiB",
        health_interval=0.2,
    )
    serve = start_serve(config=config)
    [leaker] = serve.worker_pids()
    pattern = rf"worker {leaker} uses [\d.]+ MiB of memory \(max_worker_memory 96.0 MiB\)"
    # 12 x 8 MiB on top of the app's own memory is over the limit whatever the baseline.
    with load(serve.port, clients=1, path="/leak", limit=12, warmup=12) as leaking:
        pass
    serve.wait_log(pattern, timeout=30)
    with load(serve.port, clients=2) as traffic:
        serve.wait_log(f"worker {leaker} exited with code 0", timeout=30)
        [new] = serve.worker_pids()
        wait_until(lambda: new in traffic.pids)
    assert leaking.failures == []
    assert traffic.failures == []
    assert new != leaker


def test_usr2_upgrades_to_a_new_master_without_failing_a_request(
    start_serve: StartServe, tmp_path: Path
) -> None:
    pidfile = tmp_path / "serve.pid"
    config = write_config(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2, pidfile=str(pidfile)
    )
    serve = start_serve(config=config)
    old_workers = set(serve.worker_pids())
    with load(serve.port) as traffic:
        serve.signal(signal.SIGUSR2)
        log = serve.wait_log(r"upgrade: new master (\d+) started")
        new_master = int(re.findall(r"upgrade: new master (\d+) started", log)[0])
        assert serve.wait_exit(timeout=60) == 0
        serve.wait_log("upgrade: this master takes over; stopping the old master")
        traffic.wait_for_more()
    assert traffic.failures == []
    assert new_master != serve.pid
    assert int(pidfile.read_text()) == new_master
    assert not Path(str(pidfile) + ".oldbin").exists()
    new_workers = {
        int(p) for p in Path(f"/proc/{new_master}/task/{new_master}/children").read_text().split()
    }
    assert len(new_workers) == 2
    assert new_workers.isdisjoint(old_workers)
    assert traffic.pids & new_workers
    os.kill(new_master, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{new_master}").exists() or _zombie(new_master))
    assert not pidfile.exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
