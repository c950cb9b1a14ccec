"""preload: a template per generation imports the app and forks the workers, which share
its memory; the master never imports the app, a HUP brings new code, crashes respawn."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import APPS_DIR, ServeProcess, StartServe, wait_until, write_config

pytestmark = pytest.mark.system

APP = "preload_apps:app"
MIB = 1024 * 1024


def templates(serve: ServeProcess) -> list[int]:
    """Pids of the templates that imported the app, oldest first."""
    return [int(pid) for pid in re.findall(r"template (\d+) imported the app", serve.log())]


def workers(serve: ServeProcess) -> list[int]:
    """The master's children that are not templates."""
    return sorted(set(serve.worker_pids()) - set(templates(serve)))


def answer(serve: ServeProcess, path: str = "/") -> tuple[int, str]:
    response = httpx.get(serve.url + path, headers={"connection": "close"}, timeout=10)
    assert response.status_code == 200
    pid, version, _ = response.text.split()
    return int(pid), version


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def imported_in(serve: ServeProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"app: preload_apps imported in (\d+)", serve.log())]


def collect_in_every_worker(serve: ServeProcess, count: int) -> None:
    """GET /gc until each worker ran a full collection (new connections spread over them)."""
    served: set[int] = set()
    wait_until(lambda: served.add(answer(serve, "/gc")[0]) or len(served) >= count)


def memory_per_worker(serve: ServeProcess) -> tuple[float, float]:
    """Mean USS and PSS of the workers in MiB."""
    infos = [psutil.Process(pid).memory_full_info() for pid in workers(serve)]
    return (
        sum(info.uss for info in infos) / len(infos) / MIB,
        sum(info.pss for info in infos) / len(infos) / MIB,
    )


def test_preloaded_workers_share_the_imported_app_even_after_a_full_collection(
    start_serve: StartServe,
) -> None:
    figures = {}
    for flags in ((), ("--preload",)):
        serve = start_serve(APP, "--workers", "2", "--no-access-log", *flags)
        wait_until(lambda s=serve: len(workers(s)) == 2)
        collect_in_every_worker(serve, 2)
        figures[bool(flags)] = memory_per_worker(serve)
        assert serve.stop() == 0
    (uss_off, pss_off), (uss_on, pss_on) = figures[False], figures[True]
    # TABLE alone is some 45 MiB in every worker that imported it itself.
    assert uss_off > 30, figures
    assert uss_on < uss_off / 4, figures
    assert pss_on < pss_off * 0.75, figures


def test_the_template_imports_the_app_and_forks_workers_that_are_the_masters_children(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2", "--preload")
    [template] = templates(serve)
    assert imported_in(serve) == [template]
    assert serve.pid not in imported_in(serve)
    pids = wait_until(lambda: len(workers(serve)) == 2 and workers(serve))
    for pid in pids:
        assert psutil.Process(pid).ppid() == serve.pid
    assert psutil.Process(template).ppid() == serve.pid
    assert {answer(serve)[0] for _ in range(10)} <= set(pids)


def test_a_killed_worker_is_forked_again_by_the_same_template(start_serve: StartServe) -> None:
    serve = start_serve(APP, "--workers", "2", "--preload")
    [template] = templates(serve)
    pids = wait_until(lambda: len(workers(serve)) == 2 and workers(serve))
    os.kill(pids[0], signal.SIGKILL)
    serve.wait_log(f"worker {pids[0]} killed by SIGKILL")
    fresh = wait_until(lambda: (p := workers(serve)) and pids[0] not in p and len(p) == 2 and p)
    [new] = set(fresh) - set(pids)
    serve.wait_log(f"worker {new} ready")
    assert psutil.Process(new).ppid() == serve.pid
    # Forked from the template, not imported again.
    assert imported_in(serve) == [template]
    assert templates(serve) == [template]
    os.kill(pids[1], signal.SIGKILL)
    wait_until(lambda: pids[1] not in workers(serve) and len(workers(serve)) == 2)
    assert {answer(serve)[0] for _ in range(10)} <= set(workers(serve))


def test_a_hup_serves_new_code_from_a_new_template_and_retires_the_old_one(
    start_serve: StartServe, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "preload_live.py"
    source = (APPS_DIR / "preload_apps.py").read_text()
    module.write_text(source)
    config = write_config(
        tmp_path / "serve.yaml",
        app="preload_live:app",
        app_dir=str(code),
        bind="127.0.0.1:0",
        workers=2,
        preload=True,
    )
    serve = start_serve(config=config, env={"PYTHONDONTWRITEBYTECODE": "1"})
    [old_template] = templates(serve)
    old_workers = wait_until(lambda: len(workers(serve)) == 2 and workers(serve))
    assert answer(serve)[1] == "one"
    module.write_text(
        source.replace('"PRELOAD_APP_VERSION", "one"', '"PRELOAD_APP_VERSION", "two"')
    )
    serve.signal(signal.SIGHUP)
    serve.wait_log("generation 2 ready; retiring the previous workers", timeout=30)
    [_, new_template] = templates(serve)
    serve.wait_log(f"template {old_template} \\(gen 1\\) stopped")
    wait_until(lambda: all(is_gone(pid) for pid in [old_template, *old_workers]))
    assert {answer(serve)[1] for _ in range(6)} == {"two"}
    assert imported_in(serve) == [old_template, new_template]
    assert serve.pid not in imported_in(serve)
    # A HUP while the app no longer imports: the new template fails, generation 2 serves on.
    module.write_text(source + "\nraise RuntimeError('broken on purpose')\n")
    serve.signal(signal.SIGHUP)
    log = serve.wait_log("generation 3 failed to boot; generation 2 keeps serving", timeout=30)
    assert "cannot load the app: cannot import module 'preload_live'" in log
    assert "broken on purpose" in log
    assert {answer(serve)[1] for _ in range(6)} == {"two"}
    assert not is_gone(new_template)


def test_an_app_that_cannot_be_imported_stops_the_first_start_with_exit_code_4(
    start_serve: StartServe,
) -> None:
    serve = start_serve("master_broken_app:app", "--workers", "2", "--preload", wait=False)
    assert serve.wait_exit() == 4
    log = serve.log()
    assert "template" in log and "cannot load the app: cannot import module" in log
    assert "the app cannot be loaded (exit code 4): cannot import module" in log
    assert "worker" not in log.replace("workers", "")


def test_workers_forked_by_a_template_stop_when_the_master_is_killed(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2", "--preload", "--graceful-timeout", "5")
    [template] = templates(serve)
    pids = wait_until(lambda: len(workers(serve)) == 2 and workers(serve))
    # Armed in each worker once the master adopted it (not lost with the middle process).
    death_signals: dict[int, str] = {}

    def ask_each_worker() -> bool:
        pid, death_signal = answer(serve, "/pdeathsig")
        death_signals[pid] = death_signal
        return set(death_signals) == set(pids)

    wait_until(ask_each_worker)
    assert set(death_signals.values()) == {str(int(signal.SIGTERM))}
    serve.signal(signal.SIGKILL)
    serve.wait_exit()
    # The workers armed their death signal once they were the master's children.
    wait_until(lambda: all(is_gone(pid) for pid in [template, *pids]), timeout=20)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
@pytest.mark.parametrize("preload", [False, True], ids=["fork", "preload"])
def test_workers_that_switched_user_still_stop_with_a_killed_master(
    start_serve: StartServe, tmp_path: Path, preload: bool
) -> None:
    # The kernel clears the death signal when a process changes its credentials.
    config = write_config(
        tmp_path / "serve.yaml",
        app=APP,
        bind="127.0.0.1:0",
        workers=1,
        user="nobody",
        preload=preload,
    )
    serve = start_serve(config=config)
    [worker] = wait_until(lambda: len(workers(serve)) == 1 and workers(serve))
    assert psutil.Process(worker).uids().real != 0
    assert answer(serve, "/pdeathsig") == (worker, str(int(signal.SIGTERM)))
    children = serve.worker_pids()
    serve.signal(signal.SIGKILL)
    serve.wait_exit()
    # The template too: it holds the listening sockets, which must not outlive the master.
    wait_until(lambda: all(is_gone(pid) for pid in children), timeout=20)
