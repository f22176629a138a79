"""The local CA, the server certificate, and the Mozilla "intermediate" context, checked by
inspecting the context and by real handshakes on loopback."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from mes import tls

NOW = datetime.datetime.now(datetime.UTC)
NAMES = ["gw.plant.test", "198.18.10.1", "198.18.20.1", "127.0.0.1", "localhost"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> tls.TlsPaths:
    paths = tls.TlsPaths(tmp_path_factory.mktemp("state") / "mes" / "ca")
    assert tls.ensure_server_cert(paths, NAMES) == "new"
    return paths


def test_files_and_modes(paths: tls.TlsPaths) -> None:
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.directory.stat().st_mode) == 0o700
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - NOW <= datetime.timedelta(days=90, minutes=5)
    assert ca.not_valid_after_utc - NOW > datetime.timedelta(days=3000)
    assert tls.san_names(cert) == set(NAMES)


def test_kept_while_good_renewed_when_needed(paths: tls.TlsPaths) -> None:
    assert tls.ensure_server_cert(paths, NAMES) is None
    later = NOW + datetime.timedelta(days=61)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert tls.renewal_reason(cert, ca, NAMES, later) == "near expiry"
    assert tls.renewal_reason(cert, ca, [*NAMES, "10.0.0.1"], NOW) == "lacks 10.0.0.1"
    _, other_ca = tls.make_ca(NOW)
    assert tls.renewal_reason(cert, other_ca, NAMES, NOW) is not None


def test_renewal_reissues_from_the_same_ca(tmp_path: Path) -> None:
    paths = tls.TlsPaths(tmp_path / "ca")
    tls.ensure_server_cert(paths, ["localhost"], NOW)
    ca_before = paths.ca_cert.read_bytes()
    assert tls.ensure_server_cert(paths, ["localhost"], NOW + datetime.timedelta(days=70)) == (
        "near expiry"
    )
    assert paths.ca_cert.read_bytes() == ca_before


def test_context_settings(paths: tls.TlsPaths) -> None:
    ctx = tls.server_context(paths.server_cert, paths.server_key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION,
                   ssl.OP_CIPHER_SERVER_PREFERENCE):  # fmt: skip
        assert ctx.options & option
    ciphers = ctx.get_ciphers()
    tls12 = [c["name"] for c in ciphers if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c.startswith("ECDHE-") for c in tls12)
    assert all("GCM" in c or "CHACHA20" in c for c in tls12)
    assert not any("CBC" in c["description"] or "SHA1" in c["name"] for c in ciphers)
    assert tls.set_groups(ctx), "the group list could not be set through libssl"


@pytest.fixture(scope="module")
def server(paths: tls.TlsPaths) -> Iterator[int]:
    ctx = tls.server_context(paths.server_cert, paths.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(2)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"hi")
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    listener.close()


def handshake(port: int, ca: Path, **settings: object) -> str:
    """The negotiated 'version cipher' or 'refused'."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if "ciphers" in settings:
            ctx.set_ciphers(str(settings.pop("ciphers")))
        if "curve" in settings:
            ctx.set_ecdh_curve(str(settings.pop("curve")))
        for name, value in settings.items():
            setattr(ctx, name, value)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="gw.plant.test") as conn,
        ):
            cipher = conn.cipher()
            return f"{conn.version()} {cipher[0] if cipher else '?'}"
    except (ssl.SSLError, OSError):
        return "refused"


def test_default_client_gets_tls13(server: int, paths: tls.TlsPaths) -> None:
    assert handshake(server, paths.ca_cert).startswith("TLSv1.3 ")


def test_tls11_is_refused(server: int, paths: tls.TlsPaths) -> None:
    old = {
        "ciphers": "ALL:@SECLEVEL=0",
        "minimum_version": ssl.TLSVersion.TLSv1,
        "maximum_version": ssl.TLSVersion.TLSv1_1,
    }
    assert handshake(server, paths.ca_cert, **old) == "refused"


@pytest.mark.parametrize(
    "suite", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA", "AES128-GCM-SHA256"]
)
def test_cbc_and_static_rsa_suites_are_refused(
    server: int, paths: tls.TlsPaths, suite: str
) -> None:
    got = handshake(server, paths.ca_cert, ciphers=suite, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert got == "refused"


def test_tls12_gets_an_aead_suite(server: int, paths: tls.TlsPaths) -> None:
    got = handshake(server, paths.ca_cert, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert got == "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize(
    ("curve", "accepted"),
    [("X25519", True), ("prime256v1", True), ("secp384r1", True), ("X448", False),
     ("secp521r1", False)],
)  # fmt: skip
def test_groups_tls13(server: int, paths: tls.TlsPaths, curve: str, accepted: bool) -> None:
    got = handshake(server, paths.ca_cert, curve=curve)
    assert (got != "refused") is accepted, got


@pytest.mark.parametrize(("curve", "accepted"), [("prime256v1", True), ("X448", False),
                                                 ("secp521r1", False)])  # fmt: skip
def test_groups_tls12(server: int, paths: tls.TlsPaths, curve: str, accepted: bool) -> None:
    """In TLS 1.2 a client's group list also limits the curves of ECDSA certificates it
    accepts, and Python's client offers one group: only P-256 (the certificate's) can pass."""
    got = handshake(server, paths.ca_cert, curve=curve, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert (got != "refused") is accepted, got


def test_unknown_ca_is_not_trusted(server: int, tmp_path: Path) -> None:
    other = tls.TlsPaths(tmp_path / "other")
    tls.ensure_ca(other, NOW)
    assert handshake(server, other.ca_cert) == "refused"
