"""Certificates and SIGHUP: a rotated certificate is served by the new generation with no
failed request, a broken one fails the reload while the old certificate keeps being
served (whether the master or the new workers find it broken), and a bad certificate at
start is a config error (exit 2)."""

from __future__ import annotations

import contextlib
import signal
import ssl
import threading
from pathlib import Path
from types import TracebackType

import pytest
import trustme

from tests.conftest import APPS_DIR, StartServe, launch, wait_until, write_config
from tests.tls_certs import CertFiles, client_context, https_get, server_leaf, write_leaf

pytestmark = pytest.mark.system

APP = "tls_apps:app"
# An upper bound on the requests of one loop, should a test never tell it to stop.
MAX_REQUESTS = 20_000
# Clients at once: with several, some connection is always in its handshake somewhere.
CLIENTS = 4


class RequestLoop:
    """GETs on fresh TLS connections from a thread, each outcome recorded in order."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.served: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, context), daemon=True)

    def _run(self, port: int, context: ssl.SSLContext) -> None:
        for _ in range(MAX_REQUESTS):
            if self._stop.is_set():
                return
            try:
                exchange = https_get(port, context)
            except Exception as exc:
                self.failures.append(repr(exc))
                continue
            if exchange.status == 200:
                self.served.append(exchange.fingerprint)
            else:
                self.failures.append(f"status {exchange.status}")

    def wait_for_more(self, count: int) -> None:
        target = len(self.served) + count
        wait_until(lambda: len(self.served) >= target or not self._thread.is_alive())
        assert len(self.served) >= target, "the request loop ended early"

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(30)


def tls_config(directory: Path, cert: CertFiles, **keys: object) -> Path:
    ssl_keys = {"certfile": str(cert.certfile), "keyfile": str(cert.keyfile)}
    return write_config(
        directory / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2, ssl=ssl_keys, **keys
    )


def test_a_rotated_certificate_is_served_after_a_hup_with_no_failed_request(
    start_serve: StartServe, tmp_path: Path
) -> None:
    ca = trustme.CA()
    old = write_leaf(server_leaf(ca), tmp_path, "server")
    serve = start_serve(config=tls_config(tmp_path, old))
    context = client_context(ca)
    old_workers = set(serve.worker_pids())
    with contextlib.ExitStack() as stack:
        loops = [stack.enter_context(RequestLoop(serve.port, context)) for _ in range(CLIENTS)]
        for loop in loops:
            loop.wait_for_more(10)
        # New contents at the same paths, as certbot or cert-manager leave them.
        new = write_leaf(server_leaf(ca), tmp_path, "server")
        assert new.fingerprint != old.fingerprint
        serve.signal(signal.SIGHUP)
        serve.wait_log("generation 2 ready; retiring the previous workers")
        wait_until(lambda: old_workers.isdisjoint(serve.worker_pids()), timeout=30)
        for loop in loops:
            loop.wait_for_more(10)
    for loop in loops:
        assert loop.failures == []
        # Each loop ran through the whole reload: old certificate first, new one last.
        assert loop.served[0] == old.fingerprint
        assert loop.served[-10:] == [new.fingerprint] * 10
        assert set(loop.served) == {old.fingerprint, new.fingerprint}


def test_a_broken_certificate_on_hup_keeps_the_old_one_and_logs_why(
    start_serve: StartServe, tmp_path: Path
) -> None:
    ca = trustme.CA()
    good = write_leaf(server_leaf(ca), tmp_path, "server")
    config = tls_config(tmp_path, good)
    serve = start_serve(config=config)
    context = client_context(ca)
    workers = set(serve.worker_pids())
    stranger = write_leaf(server_leaf(ca), tmp_path, "stranger")
    good.keyfile.write_bytes(stranger.keyfile.read_bytes())
    with RequestLoop(serve.port, context) as loop:
        loop.wait_for_more(3)
        serve.signal(signal.SIGHUP)
        log = serve.wait_log("reload failed: ")
        loop.wait_for_more(3)
    (line,) = [line for line in log.splitlines() if "reload failed: " in line]
    assert (
        f"reload failed: {config}:6:12: ssl.keyfile: the private key in {good.keyfile} does "
        f"not match the first certificate in {good.certfile}"
    ) in line
    assert line.endswith("generation 1 keeps serving")
    assert loop.failures == []
    assert set(loop.served) == {good.fingerprint}
    assert set(serve.worker_pids()) == workers
    # Fixed files reload as usual.
    fixed = write_leaf(server_leaf(ca), tmp_path, "server")
    serve.signal(signal.SIGHUP)
    serve.wait_log("generation 2 ready; retiring the previous workers")
    wait_until(lambda: workers.isdisjoint(serve.worker_pids()), timeout=30)
    assert https_get(serve.port, context).fingerprint == fixed.fingerprint


def test_a_missing_certificate_at_start_is_a_config_error(
    start_serve: StartServe, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = write_leaf(server_leaf(ca), tmp_path, "server")
    config = tls_config(tmp_path, cert)
    cert.certfile.unlink()
    serve = start_serve(config=config, wait=False)
    assert serve.wait_exit() == 2
    assert (
        f"{config}:5:13: ssl.certfile: cannot read {cert.certfile}: No such file or directory"
        in serve.log()
    )


# serve.run() keeps its settings on SIGHUP, so only the new workers read the files.
SCRIPT = """
import sys

import serve

if __name__ == "__main__":
    ssl = {{"certfile": {cert!r}, "keyfile": {key!r}}}
    sys.exit(serve.run("tls_apps:app", port=0, app_dir={apps!r}, workers=2, ssl=ssl))
"""


def test_a_worker_that_cannot_load_the_certificate_fails_only_the_new_generation(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    good = write_leaf(server_leaf(ca), tmp_path, "server")
    script = tmp_path / "main.py"
    script.write_text(
        SCRIPT.format(cert=str(good.certfile), key=str(good.keyfile), apps=str(APPS_DIR))
    )
    serve = launch([], tmp_path / "serve.log", cwd=tmp_path, script=script)
    try:
        serve.wait_ready()
        context = client_context(ca)
        workers = set(serve.worker_pids())
        good.keyfile.write_bytes(
            write_leaf(server_leaf(ca), tmp_path, "other").keyfile.read_bytes()
        )
        serve.signal(signal.SIGHUP)
        log = serve.wait_log("generation 2 failed to boot; generation 1 keeps serving")
        assert f"failed to boot: TLS: ssl.keyfile: the private key in {good.keyfile}" in log
        assert https_get(serve.port, context).fingerprint == good.fingerprint
        wait_until(lambda: set(serve.worker_pids()) == workers)
        assert serve.stop() == 0
    finally:
        serve.kill_group()
