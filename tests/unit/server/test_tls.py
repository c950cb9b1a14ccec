"""server.tls: contexts built from certificate files made at test time, real handshakes
between two in-memory TLS endpoints, the ASGI tls extension, and one located reason for
every file that cannot be used."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from serve.server.settings import TLSSettings
from serve.server.tls import ServerContext, TLSConfigError, build_context, tls_extension
from tests.tls_certs import CertFiles, client_context, server_leaf, write_leaf

# IANA numbers of the suites OpenSSL may pick (RFC 8446 B.4, RFC 5289): the oracle for
# cipher_suite, independent of the code under test.
IANA_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
}
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> dict[str, CertFiles]:
    """A server certificate, the same key encrypted, and one of another CA."""
    directory = tmp_path_factory.mktemp("tls")
    leaf = server_leaf(ca)
    return {
        "server": write_leaf(leaf, directory, "server"),
        "encrypted": write_leaf(leaf, directory, "encrypted", password=PASSWORD.encode()),
        "other": write_leaf(server_leaf(trustme.CA()), directory, "other"),
    }


def handshake(
    server_context: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a TLS handshake between two in-memory endpoints; return (server, client)."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, client_in = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(server_in, to_client, server_side=True)
    client_end = client.wrap_bio(client_in, to_server, server_hostname="localhost")
    pending = {server, client_end}
    for _ in range(10):
        for end in list(pending):
            try:
                end.do_handshake()
                pending.discard(end)
            except ssl.SSLWantReadError:
                pass
        server_in.write(to_server.read())
        client_in.write(to_client.read())
        if not pending:
            return server, client_end
    raise AssertionError("the handshake did not finish")


def settings_for(cert: CertFiles, **options: object) -> TLSSettings:
    return replace(TLSSettings(certfile=str(cert.certfile), keyfile=str(cert.keyfile)), **options)


def test_the_context_serves_the_certificate_and_selects_http11(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(settings_for(files["server"]))
    client = client_context(ca)
    client.set_alpn_protocols(["h2", "http/1.1"])
    _, client_end = handshake(context, client)
    assert client_end.getpeercert(binary_form=True) == files["server"].der
    assert client_end.selected_alpn_protocol() == "http/1.1"
    assert client_end.version() == "TLSv1.3"


def test_the_tls_extension_describes_a_tls13_connection(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    server, _ = handshake(build_context(settings_for(files["server"])), client_context(ca))
    info = tls_extension(server)
    assert isinstance(info["server_cert"], str)
    assert ssl.PEM_cert_to_DER_cert(info["server_cert"]) == files["server"].der
    assert info["client_cert_chain"] == []
    assert info["client_cert_name"] is None
    assert info["client_cert_error"] is None
    assert info["tls_version"] == 0x0304
    cipher = server.cipher()
    assert cipher is not None
    assert info["cipher_suite"] == IANA_SUITES[cipher[0]]


def test_the_tls_extension_describes_a_tls12_connection(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    client = client_context(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    server, _ = handshake(build_context(settings_for(files["server"])), client)
    info = tls_extension(server)
    assert info["tls_version"] == 0x0303
    assert info["cipher_suite"] == 0xC02B


def test_minimum_version_tls13_refuses_a_tls12_client(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(settings_for(files["server"], minimum_version="TLSv1.3"))
    client = client_context(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(context, client)


def test_ciphers_limit_what_a_tls12_client_may_use(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(settings_for(files["server"], ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"))
    client = client_context(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError):
        handshake(context, client)


def client_auth_settings(
    files: dict[str, CertFiles], ca: trustme.CA, cert_reqs: str
) -> TLSSettings:
    ca_file = files["server"].certfile.parent / "client-ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    return settings_for(files["server"], ca_certs=str(ca_file), cert_reqs=cert_reqs)


def test_a_required_client_certificate_fails_a_handshake_without_one(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(client_auth_settings(files, ca, "required"))
    with pytest.raises(ssl.SSLError, match="CERTIFICATE"):
        handshake(context, client_context(ca))


def test_a_client_certificate_of_another_ca_fails_the_handshake(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(client_auth_settings(files, ca, "optional"))
    stranger = trustme.CA().issue_cert("mallory@example.com", common_name="mallory")
    with pytest.raises(ssl.SSLError):
        handshake(context, client_context(ca, stranger))


@pytest.mark.parametrize(
    ("cert_reqs", "common_name", "escaped"),
    [
        ("required", "alice", "alice"),
        # RFC 4514 section 2.4: special characters, a leading '#' or space, a trailing space.
        ("optional", 'Doe, "Alice" <a+b>;x\\y', 'Doe\\, \\"Alice\\" \\<a\\+b\\>\\;x\\\\y'),
        ("optional", "#1 fan ", "\\#1 fan\\ "),
        ("optional", " padded", "\\ padded"),
    ],
)
def test_the_tls_extension_names_the_client_certificate(
    ca: trustme.CA, files: dict[str, CertFiles], cert_reqs: str, common_name: str, escaped: str
) -> None:
    context = build_context(client_auth_settings(files, ca, cert_reqs))
    alice = ca.issue_cert("alice@example.com", common_name=common_name)
    server, _ = handshake(context, client_context(ca, alice))
    info = tls_extension(server)
    chain = info["client_cert_chain"]
    assert isinstance(chain, list)
    assert len(chain) == 1
    assert chain[0] == alice.cert_chain_pems[0].bytes().decode()
    name = info["client_cert_name"]
    assert isinstance(name, str)
    # RFC 4514: most specific RDN first, special characters escaped.
    assert name.startswith(f"CN={escaped},")
    assert "O=trustme" in name


def test_an_optional_client_certificate_may_be_left_out(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(client_auth_settings(files, ca, "optional"))
    server, _ = handshake(context, client_context(ca))
    assert tls_extension(server)["client_cert_chain"] == []


def test_the_key_may_sit_in_the_certificate_file(
    tmp_path: Path, ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes(files["server"].keyfile.read_bytes() + files["server"].certfile.read_bytes())
    context = build_context(TLSSettings(certfile=str(both)))
    _, client_end = handshake(context, client_context(ca))
    assert client_end.getpeercert(binary_form=True) == files["server"].der


def test_an_encrypted_key_loads_with_its_password(
    ca: trustme.CA, files: dict[str, CertFiles]
) -> None:
    context = build_context(settings_for(files["encrypted"], password=PASSWORD))
    assert isinstance(context, ServerContext)
    _, client_end = handshake(context, client_context(ca))
    assert client_end.getpeercert(binary_form=True) == files["encrypted"].der


def test_the_password_stays_out_of_the_settings_repr(files: dict[str, CertFiles]) -> None:
    assert PASSWORD not in repr(settings_for(files["encrypted"], password=PASSWORD))


Variant = Callable[[dict[str, CertFiles], Path], TLSSettings]


def _garbage(tmp_path: Path, text: str) -> str:
    path = tmp_path / "garbage.pem"
    path.write_text(text)
    return str(path)


def _truncated_certificate(files: dict[str, CertFiles], tmp_path: Path) -> TLSSettings:
    lines = files["server"].certfile.read_text().splitlines()
    cut = _garbage(tmp_path, "\n".join([lines[0], lines[1][:20], "-----END CERTIFICATE-----"]))
    return TLSSettings(certfile=cut, keyfile=str(files["server"].keyfile))


BAD_FILES: dict[str, tuple[Variant, str, str]] = {
    "missing certfile": (
        lambda f, t: TLSSettings(certfile=str(t / "missing.pem")),
        "certfile",
        "cannot read {tmp}/missing.pem: No such file or directory",
    ),
    "certfile is a directory": (
        lambda f, t: TLSSettings(certfile=str(t)),
        "certfile",
        "cannot read {tmp}: Is a directory",
    ),
    "no certificate in certfile": (
        lambda f, t: TLSSettings(certfile=str(f["server"].keyfile)),
        "certfile",
        "no PEM certificate in {dir}/server.key",
    ),
    "truncated certificate": (
        _truncated_certificate,
        "certfile",
        "certificate 1 in {tmp}/garbage.pem is not a valid PEM certificate",
    ),
    "no key anywhere": (
        lambda f, t: TLSSettings(certfile=str(f["server"].certfile)),
        "certfile",
        "no PEM private key in {dir}/server.crt (set ssl.keyfile if the key is in a file of "
        "its own)",
    ),
    "missing keyfile": (
        lambda f, t: TLSSettings(certfile=str(f["server"].certfile), keyfile=str(t / "k.pem")),
        "keyfile",
        "cannot read {tmp}/k.pem: No such file or directory",
    ),
    "keyfile of another certificate": (
        lambda f, t: TLSSettings(
            certfile=str(f["server"].certfile), keyfile=str(f["other"].keyfile)
        ),
        "keyfile",
        "the private key in {dir}/other.key does not match the first certificate in "
        "{dir}/server.crt (the server's own certificate comes first)",
    ),
    "garbage key": (
        lambda f, t: TLSSettings(
            certfile=str(f["server"].certfile),
            keyfile=_garbage(t, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ),
        "keyfile",
        "cannot load the private key in {tmp}/garbage.pem: ",
    ),
    "encrypted key without a password": (
        lambda f, t: settings_for(f["encrypted"]),
        "keyfile",
        "the private key in {dir}/encrypted.key is encrypted: set ssl.password",
    ),
    "wrong password": (
        lambda f, t: settings_for(f["encrypted"], password="wrong"),
        "password",
        "cannot decrypt the private key in {dir}/encrypted.key",
    ),
    "client certificates without a CA": (
        lambda f, t: settings_for(f["server"], cert_reqs="required"),
        "cert_reqs",
        "needs ssl.ca_certs, the CA certificates that sign client certificates",
    ),
    "missing ca_certs": (
        lambda f, t: settings_for(f["server"], ca_certs=str(t / "ca.pem"), cert_reqs="optional"),
        "ca_certs",
        "cannot read {tmp}/ca.pem: No such file or directory",
    ),
    "ca_certs without a certificate": (
        lambda f, t: settings_for(f["server"], ca_certs=str(f["server"].keyfile)),
        "ca_certs",
        "no PEM certificate in {dir}/server.key",
    ),
    "no cipher matches": (
        lambda f, t: settings_for(f["server"], ciphers="NO-SUCH-CIPHER"),
        "ciphers",
        "no cipher matches 'NO-SUCH-CIPHER'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_unusable_setting_names_its_key_and_reason(
    case: str, files: dict[str, CertFiles], tmp_path: Path
) -> None:
    variant, key, message = BAD_FILES[case]
    settings = variant(files, tmp_path)
    with pytest.raises(TLSConfigError) as info:
        build_context(settings)
    expected = message.format(tmp=tmp_path, dir=files["server"].certfile.parent)
    assert info.value.key == key
    assert info.value.message.startswith(expected)
    assert str(info.value) == f"ssl.{key}: {info.value.message}"
    assert "\n" not in str(info.value)
