"""HTTPS end to end: real `serve` processes with certificates made at test time, clients
that verify them against the test CA, client-certificate auth, and a drain that lets a
handshake under way finish.

The scheme and `tls` extension tests read the scope the app saw (tests/apps/tls_apps.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.conftest import ServeProcess, launch, raw_request, wait_until, write_config
from tests.tls_certs import CertFiles, client_context, https_get, server_leaf, write_leaf

pytestmark = pytest.mark.system

APP = "tls_apps:app"


@dataclass
class TLSServer:
    proc: ServeProcess
    ca: trustme.CA
    cert: CertFiles

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.proc.port}"

    def scope(self, client: trustme.LeafCert | None = None) -> dict[str, Any]:
        response = httpx.get(self.url, verify=client_context(self.ca, client), timeout=10)
        assert response.status_code == 200
        view: dict[str, Any] = response.json()
        return view


def start_tls(directory: Path, ca: trustme.CA, **settings: Any) -> TLSServer:
    cert = write_leaf(server_leaf(ca), directory, "server")
    ssl_keys = {"certfile": str(cert.certfile), "keyfile": str(cert.keyfile)}
    ssl_keys.update(settings.pop("ssl", {}))
    config = write_config(
        directory / "serve.yaml", app=APP, bind="127.0.0.1:0", ssl=ssl_keys, **settings
    )
    proc = launch(["-c", str(config)], directory / "serve.log")
    try:
        proc.wait_ready()
    except BaseException:
        proc.kill_group()
        raise
    return TLSServer(proc, ca, cert)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[TLSServer]:
    started = start_tls(tmp_path_factory.mktemp("tls"), ca, header_timeout=1)
    yield started
    started.proc.kill_group()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[TLSServer]:
    directory = tmp_path_factory.mktemp("mtls")
    ca.cert_pem.write_to_path(directory / "client-ca.pem")
    client_auth = {"ca_certs": str(directory / "client-ca.pem"), "cert_reqs": "required"}
    started = start_tls(directory, ca, ssl=client_auth)
    yield started
    started.proc.kill_group()


def test_httpx_verifies_the_server_against_the_test_ca(server: TLSServer) -> None:
    response = httpx.get(server.url, verify=client_context(server.ca), timeout=10)
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    assert response.json()["pid"] in server.proc.worker_pids()


def test_a_client_that_does_not_trust_the_ca_refuses_the_server(server: TLSServer) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(server.url, verify=client_context(trustme.CA()), timeout=10)


def test_the_configured_certificate_is_served_and_alpn_picks_http11(server: TLSServer) -> None:
    context = client_context(server.ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.proc.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.getpeercert(binary_form=True) == server.cert.der
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_plain_http_on_the_tls_port_gets_no_answer_and_the_worker_serves_on(
    server: TLSServer,
) -> None:
    before = server.scope()["pid"]
    answer = raw_request(server.proc.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert not answer.startswith(b"HTTP/1.1 200")
    assert server.scope()["pid"] == before


def test_a_stalled_handshake_is_closed_after_header_timeout(server: TLSServer) -> None:
    # No ClientHello: the server gives up after header_timeout (1 s here), well within
    # the socket timeout; the default handshake timeout would be 60 s.
    with (
        socket.create_connection(("127.0.0.1", server.proc.port), timeout=10) as raw,
        contextlib.suppress(ConnectionResetError),
    ):
        assert raw.recv(1024) == b""


def test_the_scope_scheme_is_https(server: TLSServer) -> None:
    assert server.scope()["scheme"] == "https"


def test_the_scope_carries_the_tls_extension(server: TLSServer) -> None:
    tls = server.scope()["tls"]
    assert tls is not None
    assert ssl.PEM_cert_to_DER_cert(tls["server_cert"]) == server.cert.der
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in {0x1301, 0x1302, 0x1303}


def test_without_a_client_certificate_the_handshake_fails(mtls_server: TLSServer) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(mtls_server.url, verify=client_context(mtls_server.ca), timeout=10)


def test_a_client_certificate_of_another_ca_is_refused(mtls_server: TLSServer) -> None:
    stranger = trustme.CA().issue_cert("mallory@example.com", common_name="mallory")
    with pytest.raises(httpx.TransportError):
        httpx.get(mtls_server.url, verify=client_context(mtls_server.ca, stranger), timeout=10)


def test_with_a_client_certificate_the_request_succeeds(mtls_server: TLSServer) -> None:
    alice = mtls_server.ca.issue_cert("alice@example.com", common_name="alice")
    exchange = https_get(mtls_server.proc.port, client_context(mtls_server.ca, alice))
    assert exchange.status == 200
    assert exchange.peer_der == mtls_server.cert.der


def test_the_scope_names_the_client_certificate(mtls_server: TLSServer) -> None:
    alice = mtls_server.ca.issue_cert("alice@example.com", common_name="alice")
    tls = mtls_server.scope(client=alice)["tls"]
    assert tls["client_cert_chain"] == [alice.cert_chain_pems[0].bytes().decode()]
    assert tls["client_cert_name"].startswith("CN=alice,")


def _listener_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if local.endswith(f":{port:04X}") and state == "0A":
            return inode
    raise AssertionError(f"nothing listens on port {port}")


def _sockets_of(pid: int) -> set[str]:
    """The sockets process `pid` holds open; none once it has exited."""
    links = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):
                links.add(os.readlink(fd))
    return {link for link in links if link.startswith("socket:")}


def test_a_drain_lets_a_handshake_under_way_finish(tmp_path: Path, ca: trustme.CA) -> None:
    started = start_tls(tmp_path, ca)
    try:
        (worker,) = started.proc.worker_pids()
        listener = f"socket:[{_listener_inode(started.proc.port)}]"
        held = _sockets_of(worker)
        with socket.create_connection(("127.0.0.1", started.proc.port), timeout=10) as raw:
            # Accepted by the worker, the handshake not begun: no connection_made yet.
            wait_until(lambda: len(_sockets_of(worker) - held) == 1)
            started.proc.signal(signal.SIGTERM)
            # The worker closed its listener: its drain has begun.
            wait_until(lambda: listener not in _sockets_of(worker))
            context = client_context(ca)
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                response = b""
                while chunk := tls.recv(65536):
                    response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in head.lower()
        assert json.loads(body)["pid"] == worker
        assert started.proc.wait_exit() == 0
    finally:
        started.proc.kill_group()


def test_the_banner_names_https(server: TLSServer) -> None:
    log = server.proc.log()
    assert f"Listening on https://127.0.0.1:{server.proc.port}" in log
    assert "Listening on http://" not in log
