"""Certificates made at test time (trustme), and a small HTTPS client that reports which
certificate the server presented.

Every server certificate names localhost and 127.0.0.1, so clients verify the server the
way a real one would: against the test CA, with host name checking on.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class CertFiles:
    """One leaf certificate written as PEM files, and its DER form to compare with."""

    certfile: Path
    keyfile: Path
    der: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def write_leaf(
    leaf: trustme.LeafCert, directory: Path, name: str, *, password: bytes | None = None
) -> CertFiles:
    """Write `leaf` as NAME.crt (its chain) and NAME.key (encrypted when `password`)."""
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certfile.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key = leaf.private_key_pem.bytes()
    if password is not None:
        loaded = serialization.load_pem_private_key(key, None)
        key = loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    keyfile.write_bytes(key)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return CertFiles(certfile, keyfile, der)


def server_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


def client_context(ca: trustme.CA, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
    """A client context that trusts only `ca`, presenting `client`'s certificate if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    if client is not None:
        client.configure_cert(context)
    return context


@dataclass(frozen=True)
class Exchange:
    status: int
    body: bytes
    peer_der: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.peer_der).hexdigest()


def https_get(
    port: int, context: ssl.SSLContext, path: str = "/", timeout: float = 10.0
) -> Exchange:
    """One GET on a fresh TLS connection to 127.0.0.1:`port`; raises on any failure."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        peer = tls.getpeercert(binary_form=True)
        assert peer is not None
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ConnectionError(f"not an HTTP response: {response[:80]!r}")
    return Exchange(int(head.split(b" ", 2)[1]), body, peer)
