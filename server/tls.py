"""TLS on the worker's listeners: an SSLContext built from TLSSettings, and the ASGI `tls`
extension of one connection.

Rules:
- build_context() is the only code that reads certificate files. The master calls it
  (through the config loader) to reject a bad certificate before a generation starts; each
  worker calls it again at boot, so a new generation (SIGHUP) serves what the files hold
  then, and an old generation keeps the certificate it loaded.
- Every failure is one TLSConfigError naming the `ssl` key to blame and a one-line reason.
  OpenSSL says "PEM lib" whichever file is wrong, so the files are checked one at a time
  before the chain is loaded.
- Never a password prompt: OpenSSL asks on the terminal for the password of an encrypted
  key when it is given none, which would block the master; it always gets one here.
- tls_extension() runs once per connection, after the handshake, and does no IO.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any

from serve.server.settings import TLSSettings

# ALPN (RFC 7301): h2 is offered only when http2 is enabled, first, as clients prefer it.
ALPN_PROTOCOLS = ("http/1.1",)
ALPN_WITH_H2 = ("h2", "http/1.1")
_MINIMUM_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
# Protocol versions as they appear on the wire, which is what the ASGI extension reports.
_WIRE_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_CERT_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_KEY_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )?PRIVATE KEY-----")
# PKCS#8 and the traditional OpenSSL header mark an encrypted key.
_ENCRYPTED_MARKS = ("-----BEGIN ENCRYPTED PRIVATE KEY-----", "Proc-Type: 4,ENCRYPTED")
# RFC 4514 section 3: short names for the usual attribute types, special characters.
_SHORT_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_SPECIAL = re.compile(r'(["+,;<>\\])')


@dataclass(eq=False)
class TLSConfigError(Exception):
    """A certificate setting that cannot be used; `key` is the `ssl` sub-key to blame."""

    key: str
    message: str

    def __post_init__(self) -> None:
        self.args = (self.key, self.message)

    def __str__(self) -> str:
        return f"ssl.{self.key}: {self.message}"


class ServerContext(ssl.SSLContext):
    """An SSLContext that also holds what the tls extension reports of the server side."""

    server_cert: str
    # OpenSSL cipher name -> IANA cipher suite number.
    cipher_ids: dict[str, int]


def build_context(settings: TLSSettings, *, http2: bool = False) -> ServerContext:
    """Load the certificate, key and client CA of `settings`; raise TLSConfigError."""
    cert_text = _read(settings.certfile, "certfile")
    server_cert = _check_certificates(cert_text, settings.certfile, "certfile")
    if settings.keyfile is not None:
        key_name, key_path = "keyfile", settings.keyfile
        key_text = _read(key_path, key_name)
    else:
        key_name, key_path, key_text = "certfile", settings.certfile, cert_text
    encrypted = _check_key(key_text, key_name, key_path, settings.password)
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MINIMUM_VERSIONS[settings.minimum_version]
    # Client-initiated TLS 1.2 renegotiation only costs the server CPU (CVE-2011-1473).
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        # A callable, so OpenSSL never falls back to prompting on the terminal.
        context.load_cert_chain(
            settings.certfile, settings.keyfile, password=lambda: settings.password or ""
        )
    except OSError as exc:
        # ssl.SSLError is an OSError: the key or its password, the files were read above.
        raise _chain_error(exc, settings, key_name, key_path, encrypted) from None
    _set_client_auth(context, settings)
    if settings.ciphers is not None:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise TLSConfigError("ciphers", f"no cipher matches {settings.ciphers!r}") from None
    context.set_alpn_protocols(list(ALPN_WITH_H2 if http2 else ALPN_PROTOCOLS))
    context.server_cert = server_cert
    context.cipher_ids = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
    return context


def _read(path: str, key: str) -> str:
    try:
        with open(path, "rb") as file:
            # PEM is ASCII; latin-1 reads any byte, so a binary file fails the checks below.
            return file.read().decode("latin-1")
    except OSError as exc:
        raise TLSConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None


def _check_certificates(text: str, path: str, key: str) -> str:
    """Parse every certificate in `text`; return the first one (the server's own) as PEM."""
    blocks = _CERT_BLOCK.findall(text)
    if not blocks:
        raise TLSConfigError(key, f"no PEM certificate in {path}")
    for number, block in enumerate(blocks, start=1):
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=block)
        except ssl.SSLError:
            # OpenSSL's reason ("no start line") says nothing more than this.
            message = f"certificate {number} in {path} is not a valid PEM certificate"
            raise TLSConfigError(key, message) from None
    return str(blocks[0]) + "\n"


def _check_key(text: str, key: str, path: str, password: str | None) -> bool:
    """Check that `text` holds a private key; return whether it is encrypted."""
    if not _KEY_BEGIN.search(text):
        hint = "" if key == "keyfile" else " (set ssl.keyfile if the key is in a file of its own)"
        raise TLSConfigError(key, f"no PEM private key in {path}{hint}")
    encrypted = any(mark in text for mark in _ENCRYPTED_MARKS)
    if encrypted and password is None:
        raise TLSConfigError(key, f"the private key in {path} is encrypted: set ssl.password")
    return encrypted


def _chain_error(
    exc: OSError, settings: TLSSettings, key: str, path: str, encrypted: bool
) -> TLSConfigError:
    if not isinstance(exc, ssl.SSLError):
        return TLSConfigError(key, f"cannot read {path}: {exc.strerror or exc}")
    if exc.reason == "KEY_VALUES_MISMATCH":
        return TLSConfigError(
            key,
            f"the private key in {path} does not match the first certificate in "
            f"{settings.certfile} (the server's own certificate comes first)",
        )
    if encrypted:
        return TLSConfigError("password", f"cannot decrypt the private key in {path}")
    return TLSConfigError(key, f"cannot load the private key in {path}: {exc.reason or exc}")


def _set_client_auth(context: ssl.SSLContext, settings: TLSSettings) -> None:
    if settings.cert_reqs != "none" and settings.ca_certs is None:
        raise TLSConfigError(
            "cert_reqs", "needs ssl.ca_certs, the CA certificates that sign client certificates"
        )
    if settings.ca_certs is not None:
        _check_certificates(_read(settings.ca_certs, "ca_certs"), settings.ca_certs, "ca_certs")
        try:
            context.load_verify_locations(cafile=settings.ca_certs)
        except OSError as exc:
            reason = exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror
            message = f"cannot load {settings.ca_certs}: {reason or exc}"
            raise TLSConfigError("ca_certs", message) from None
    context.verify_mode = _CERT_REQS[settings.cert_reqs]


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, object]:
    """scope["extensions"]["tls"] for one established connection (ASGI TLS extension).

    The client chain holds the client's own certificate only: before Python 3.13 the ssl
    module does not expose the rest. client_cert_error is always None, because a client
    certificate that fails verification fails the handshake.
    """
    context = ssl_object.context
    ours = context if isinstance(context, ServerContext) else None
    peer = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": ours.server_cert if ours is not None else None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(peer)] if peer else [],
        "client_cert_name": _rfc4514_name(ssl_object.getpeercert()) if peer else None,
        "client_cert_error": None,
        "tls_version": _WIRE_VERSIONS.get(version) if version else None,
        "cipher_suite": ours.cipher_ids.get(cipher[0]) if ours and cipher else None,
    }


def _rfc4514_name(cert: dict[str, Any] | None) -> str | None:
    """The subject as an RFC 4514 string, most specific part first: 'CN=x,O=y,C=z'."""
    subject = cert.get("subject") if cert else None
    if not subject:
        return None
    return ",".join(
        "+".join(f"{_SHORT_NAMES.get(name, name)}={_escape(value)}" for name, value in rdn)
        for rdn in reversed(subject)
    )


def _escape(value: str) -> str:
    value = _SPECIAL.sub(r"\\\1", value).replace("\x00", "\\00")
    if value.endswith(" "):
        value = value[:-1] + "\\ "
    if value.startswith((" ", "#")):
        value = "\\" + value
    return value
