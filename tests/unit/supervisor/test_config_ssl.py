"""The `ssl:` keys: typed, layered, and their files loaded at config load, with every error
located at the key to blame (golden strings)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import trustme

from serve.server.settings import TLSSettings
from serve.supervisor.config_loader import HIDDEN, ConfigError, config_as_yaml, load_config
from serve.supervisor.config_schema import SSLSpec
from tests.tls_certs import CertFiles, server_leaf, write_leaf

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    leaf = server_leaf(ca)
    ca.cert_pem.write_to_path(directory / "ca.pem")
    return {
        "server": write_leaf(leaf, directory, "server"),
        "encrypted": write_leaf(leaf, directory, "encrypted", password=PASSWORD.encode()),
        "other": write_leaf(server_leaf(ca), directory, "other"),
    }


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str, env: Mapping[str, str] | None = None) -> SSLSpec:
    Path("conf.yaml").write_text("app: main:app\n" + text)
    return load_config("conf.yaml", env or {}, {}).ssl


def error_of(text: str, env: Mapping[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    return str(info.value)


def test_a_full_ssl_block_reaches_the_worker_settings(
    in_tmp: Path, certs: dict[str, CertFiles]
) -> None:
    server, ca = certs["encrypted"], certs["server"].certfile.parent / "ca.pem"
    Path("conf.yaml").write_text(
        "app: main:app\n"
        "ssl:\n"
        f"  certfile: {server.certfile}\n"
        f"  keyfile: {server.keyfile}\n"
        f"  password: {PASSWORD}\n"
        f"  ca_certs: {ca}\n"
        "  cert_reqs: required\n"
        "  ciphers: ECDHE+AESGCM\n"
        "  minimum_version: tlsv1.3\n"
    )
    settings = load_config("conf.yaml", {}, {}).worker_settings()
    assert settings.tls == TLSSettings(
        certfile=str(server.certfile),
        keyfile=str(server.keyfile),
        password=PASSWORD,
        ca_certs=str(ca),
        cert_reqs="required",
        ciphers="ECDHE+AESGCM",
        minimum_version="TLSv1.3",
    )


def test_without_a_certfile_tls_is_off(in_tmp: Path) -> None:
    Path("conf.yaml").write_text("app: main:app\nssl:\n  cert_reqs: none\n")
    assert load_config("conf.yaml", {}, {}).worker_settings().tls is None


def test_the_environment_sets_ssl_keys_one_by_one(
    in_tmp: Path, certs: dict[str, CertFiles]
) -> None:
    env = {
        "SERVE_SSL_CERTFILE": str(certs["server"].certfile),
        "SERVE_SSL_KEYFILE": str(certs["server"].keyfile),
        # Not a key: `ssl` has no enabled switch.
        "SERVE_SSL": "true",
    }
    spec = load("", env)
    assert (spec.certfile, spec.keyfile) == (env["SERVE_SSL_CERTFILE"], env["SERVE_SSL_KEYFILE"])


def test_run_keywords_take_an_ssl_mapping(in_tmp: Path, certs: dict[str, CertFiles]) -> None:
    ssl = {"certfile": str(certs["server"].certfile), "keyfile": str(certs["server"].keyfile)}
    config = load_config(None, {}, {"app": "main:app", "ssl": ssl}, cli_kind="keywords")
    assert config.ssl.certfile == ssl["certfile"]


def test_check_output_hides_the_password(in_tmp: Path, certs: dict[str, CertFiles]) -> None:
    server = certs["encrypted"]
    spec = SSLSpec(certfile=str(server.certfile), keyfile=str(server.keyfile), password=PASSWORD)
    Path("conf.yaml").write_text("app: main:app\n")
    config = load_config("conf.yaml", {}, {"ssl": spec}, cli_kind="keywords")
    shown = config_as_yaml(config)
    assert PASSWORD not in shown
    assert f"  password: '{HIDDEN}'" in shown
    assert PASSWORD not in repr(config)


def test_the_files_are_read_at_each_load(in_tmp: Path, certs: dict[str, CertFiles]) -> None:
    """What a SIGHUP relies on: a file that breaks between two loads fails the second."""
    key = in_tmp / "key.pem"
    key.write_bytes(certs["server"].keyfile.read_bytes())
    text = f"ssl:\n  certfile: {certs['server'].certfile}\n  keyfile: {key}\n"
    assert load(text).keyfile == str(key)
    key.write_bytes(certs["other"].keyfile.read_bytes())
    assert error_of(text).startswith("conf.yaml:4:12: ssl.keyfile: the private key in ")


def located(certs: dict[str, CertFiles], name: str) -> tuple[str, str]:
    return str(certs[name].certfile), str(certs[name].keyfile)


def test_golden_errors(in_tmp: Path, certs: dict[str, CertFiles]) -> None:
    cert, key = located(certs, "server")
    enc_cert, enc_key = located(certs, "encrypted")
    _, other_key = located(certs, "other")
    missing = in_tmp / "missing.pem"
    cases = {
        f"ssl:\n  certfile: {missing}\n": (
            f"conf.yaml:3:13: ssl.certfile: cannot read {missing}: No such file or directory"
        ),
        f"ssl:\n  certfile: {cert}\n  keyfile: {other_key}\n": (
            f"conf.yaml:4:12: ssl.keyfile: the private key in {other_key} does not match the "
            f"first certificate in {cert} (the server's own certificate comes first)"
        ),
        f"ssl:\n  certfile: {enc_cert}\n  keyfile: {enc_key}\n  password: nope\n": (
            f"conf.yaml:5:13: ssl.password: cannot decrypt the private key in {enc_key}"
        ),
        f"ssl:\n  certfile: {enc_cert}\n  keyfile: {enc_key}\n": (
            f"conf.yaml:4:12: ssl.keyfile: the private key in {enc_key} is encrypted: "
            "set ssl.password"
        ),
        f"ssl:\n  certfile: {cert}\n  keyfile: {key}\n  cert_reqs: sometimes\n": (
            "conf.yaml:5:14: ssl.cert_reqs: expected one of 'none', 'optional', 'required', "
            "got 'sometimes'"
        ),
        f"ssl:\n  certfile: {cert}\n  keyfile: {key}\n  cert_reqs: required\n": (
            "conf.yaml:5:14: ssl.cert_reqs: needs ssl.ca_certs, the CA certificates that sign "
            "client certificates"
        ),
        "ssl:\n  minimum_version: TLSv1.1\n": (
            "conf.yaml:3:20: ssl.minimum_version: expected one of 'TLSv1.2', 'TLSv1.3', "
            "got 'TLSv1.1'"
        ),
        f"ssl:\n  keyfile: {key}\n": (
            "conf.yaml:3:12: ssl.keyfile: needs ssl.certfile: TLS is off without a certificate"
        ),
        "ssl:\n  certfile: ''\n": (
            "conf.yaml:3:13: ssl.certfile: expected a file path, or null, got ''"
        ),
        "ssl:\n  certfle: x.pem\n": (
            "conf.yaml:3:3: ssl.certfle: unknown key (did you mean 'certfile'?)"
        ),
        "ssl: true\n": (
            "conf.yaml:2:6: ssl: expected a mapping of certfile, keyfile, password, ca_certs, "
            "cert_reqs, ciphers, minimum_version, got True"
        ),
        "ssl:\n  password: 1234\n": (
            "conf.yaml:3:13: ssl.password: expected a string, or null, got 1234"
        ),
    }
    for text, expected in cases.items():
        assert error_of(text) == expected, text


def test_an_environment_error_names_the_variable(in_tmp: Path) -> None:
    env = {"SERVE_SSL_CERTFILE": "/nonexistent/cert.pem"}
    assert error_of("", env) == (
        "SERVE_SSL_CERTFILE: cannot read /nonexistent/cert.pem: No such file or directory"
    )
