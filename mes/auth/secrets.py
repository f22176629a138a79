"""Secret files of the MES: the credential pepper and the key that seals TOTP secrets.

What: `<state>/secrets/` (mode 0700) holds one file per secret (mode 0600, owned by the
service), created on first start from `secrets.token_bytes`. Nothing here logs, prints or
returns a secret's bytes other than to the caller that derives keys from it.

- `pepper` (32 bytes): the HMAC key under PINs, passwords and badge tokens. Every stored
  credential hash is argon2id over HMAC-SHA256(derived key, credential), so a copy of the
  database alone does not let anyone test the 10^6 possible PINs offline.
- `totp.key` (32 bytes): AES-256-GCM key sealing TOTP secrets before they reach the database;
  the person's id is the associated data, so a sealed secret cannot be moved to another row.

Why files and not the database: DESIGN §7. Why refuse a file with a wider mode instead of
fixing it: a secret that was readable by others may already be known; the operator decides
(the error names the file and the `chmod` that fixes it). Losing the directory invalidates
every PIN, password, badge and TOTP enrolment: it belongs in the appliance's key backup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_BYTES = 32
DIR_MODE = 0o700
FILE_MODE = 0o600
PEPPER_FILE = "pepper"
TOTP_KEY_FILE = "totp.key"
SEAL_PREFIX = "v1:"
NONCE_BYTES = 12


class SecretError(RuntimeError):
    """A secret file is missing, unreadable, of the wrong size or too widely readable."""


def secrets_dir(state: Path) -> Path:
    return state / "secrets"


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SecretError(
            f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"expected 0700: chmod 700 {path}"
        )


def _check_file(path: Path, fd: int) -> None:
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretError(
            f"secret file {path} has mode {mode:04o}; expected 0600: chmod 600 {path}"
        )
    if info.st_uid != os.geteuid():
        raise SecretError(f"secret file {path} is not owned by the service's user")


def read_or_create(path: Path, size: int = SECRET_BYTES) -> bytes:
    """The secret in `path`, created (0600, exclusive) with `size` random bytes if absent."""
    _ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, secrets.token_bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
    try:
        _check_file(path, fd)
        data = os.read(fd, size + 1)
    finally:
        os.close(fd)
    if len(data) != size:
        raise SecretError(f"secret file {path} holds {len(data)} bytes; expected {size}")
    return data


def derive(pepper: bytes, label: str) -> bytes:
    """A sub-key for one use ('pin', 'password', 'badge'): HMAC-SHA256(pepper, label)."""
    return hmac.new(pepper, f"plantgate/mes/{label}/v1".encode(), hashlib.sha256).digest()


class Sealer:
    """AES-256-GCM sealing of small secrets (TOTP seeds) bound to a context string."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return SEAL_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> str:
        """The plaintext; SecretError if the token is damaged, foreign or moved."""
        if not token.startswith(SEAL_PREFIX):
            raise SecretError("sealed value has an unknown format")
        try:
            raw = base64.b64decode(token[len(SEAL_PREFIX) :], validate=True)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretError("sealed value does not open with this key and context") from None
        return plain.decode()


@dataclass(frozen=True, repr=False)
class MesSecrets:
    """Keys derived from the secret files; `repr` never shows them."""

    pin_key: bytes
    password_key: bytes
    badge_key: bytes
    sealer: Sealer

    def __repr__(self) -> str:
        return "MesSecrets(<hidden>)"


def load_secrets(directory: Path) -> MesSecrets:
    """Read (creating on first start) the MES secret files in `directory`
    (`MesSettings.secrets_dir`, i.e. `<state>/secrets/`)."""
    pepper = read_or_create(directory / PEPPER_FILE)
    totp_key = read_or_create(directory / TOTP_KEY_FILE)
    return MesSecrets(
        pin_key=derive(pepper, "pin"),
        password_key=derive(pepper, "password"),
        badge_key=derive(pepper, "badge"),
        sealer=Sealer(totp_key),
    )
