"""TLS for the MES: a local CA, a short-lived server certificate, and a strict SSLContext.

Certificates (cryptography):
- The CA is created on first start in `<state>/mes/ca/` (`ca.key` 0600, `ca.crt`): ECDSA
  P-384, ten years, path length 0. Hubs and plant workstations trust `ca.crt`.
- The server certificate (`server.key` 0600, `server.crt`) is ECDSA P-256, 90 days, with
  subject alternative names for the appliance's names and addresses. It is issued again at
  start when it is missing, within 30 days of expiry, not from the current CA, or lacks a
  wanted name.

The context follows Mozilla's "intermediate" profile (server side, OpenSSL 3):
- TLS 1.2 and 1.3 only;
- TLS 1.2 ciphers: ECDHE with AES-GCM or ChaCha20-Poly1305 only (no CBC, no RSA key exchange,
  no DHE since no DH parameters are loaded); TLS 1.3 keeps OpenSSL's three AEAD suites;
- key-exchange groups X25519, P-256, P-384 only. Python 3.11's `set_ecdh_curve` sets a single
  group, so the list is set with `SSL_CTX_set1_groups_list` on the context's own `SSL_CTX`
  through ctypes (same libssl as the `ssl` module; checked before use by reading the
  context's options back through it). If that is impossible the context falls back to P-256
  alone, which still meets the profile;
- no compression, no renegotiation, server cipher order, no session tickets' 0-RTT.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=90)
RENEW_BEFORE = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(minutes=5)  # tolerate clocks a little behind

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
GROUPS = "X25519:P-256:P-384"
FALLBACK_CURVE = "prime256v1"
SSL_CTRL_SET_GROUPS_LIST = 92

KeyAndCert = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


class TlsError(RuntimeError):
    """The CA or server certificate could not be read, made or used."""


@dataclass(frozen=True)
class TlsPaths:
    directory: Path

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"


def tls_paths(state: Path) -> TlsPaths:
    return TlsPaths(state / "mes" / "ca")


# ---------------------------------------------------------------- certificates


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{path}: expected an EC private key")
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PlantGate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(now: datetime.datetime) -> KeyAndCert:
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name(f"PlantGate MES local CA {os.urandom(4).hex()}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _san(names: Iterable[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: Sequence[str],
    now: datetime.datetime,
) -> KeyAndCert:
    if not names:
        raise TlsError("the server certificate needs at least one name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def san_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def renewal_reason(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    names: Sequence[str],
    now: datetime.datetime,
) -> str | None:
    """Why the server certificate must be issued again (None: it is still good)."""
    if cert.issuer != ca_cert.subject:
        return "issued by another CA"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "near expiry"
    missing = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names} - san_names(cert)
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def ensure_ca(paths: TlsPaths, now: datetime.datetime) -> KeyAndCert:
    """The CA, created on first use."""
    if paths.ca_key.exists() and paths.ca_cert.exists():
        try:
            return _load_key(paths.ca_key), x509.load_pem_x509_certificate(
                paths.ca_cert.read_bytes()
            )
        except ValueError as exc:
            raise TlsError(f"cannot read the MES CA in {paths.directory}: {exc}") from None
    key, cert = make_ca(now)
    _write(paths.ca_key, _key_pem(key), 0o600)
    _write(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("created the MES local CA in %s", paths.directory)
    return key, cert


def ensure_server_cert(
    paths: TlsPaths, names: Sequence[str], now: datetime.datetime | None = None
) -> str | None:
    """Make sure a good server certificate for `names` exists; returns why it was (re)issued
    ('new', 'near expiry', ...) or None when the existing one was kept."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = ensure_ca(paths, now)
    reason: str | None = "new"
    if paths.server_cert.exists() and paths.server_key.exists():
        try:
            cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
            _load_key(paths.server_key)
            reason = renewal_reason(cert, ca_cert, names, now)
        except (ValueError, TlsError):
            reason = "unreadable"
    if reason is None:
        return None
    key, cert = make_server_cert(ca_key, ca_cert, names, now)
    _write(paths.server_key, _key_pem(key), 0o600)
    _write(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("issued the MES server certificate (%s)", reason)
    return reason


# ---------------------------------------------------------------- the SSLContext


def _libssl() -> ctypes.CDLL | None:
    """The libssl the `ssl` module is linked against (OpenSSL 3 only)."""
    if ssl.OPENSSL_VERSION_INFO[0] != 3:
        return None
    try:
        lib = ctypes.CDLL("libssl.so.3", mode=getattr(os, "RTLD_NOLOAD", 0))
    except OSError:
        return None
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    return lib


def set_groups(ctx: ssl.SSLContext, groups: str = GROUPS) -> bool:
    """Restrict key-exchange groups to `groups` (OpenSSL list syntax); False if impossible.

    The `SSL_CTX *` is the first field after the object header of CPython's PySSLContext;
    reading the options through it and comparing them with `ctx.options` checks that.
    """
    lib = _libssl()
    if lib is None:
        return False
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or lib.SSL_CTX_get_options(pointer) != int(ctx.options):
        return False
    done = lib.SSL_CTX_ctrl(pointer, SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(groups.encode()))
    return int(done) == 1


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server SSLContext for the Mozilla "intermediate" profile with `cert` and `key`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )
    if not set_groups(ctx):
        log.warning("could not set the TLS group list; using %s only", FALLBACK_CURVE)
        ctx.set_ecdh_curve(FALLBACK_CURVE)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the server certificate {cert}: {exc}") from None
    return ctx


def default_names(extra: Iterable[str] = ()) -> list[str]:
    """Names for the server certificate: the given ones, the host name, and localhost."""
    names = [*extra, socket.gethostname(), "localhost", "127.0.0.1"]
    return [n for n in dict.fromkeys(names) if n and n != "0.0.0.0"]
