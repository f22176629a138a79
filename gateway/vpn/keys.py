"""The appliance's WireGuard key: `<state>/vpn/private.key`, made once, mode 0600.

The private key is created on first start (`wg genkey`), written with O_EXCL into a 0700
directory so no other user can ever open it, and from then on only its path travels: to
`wg set ... private-key FILE`. It is never printed, logged or returned by an API; only
the public key (`wg pubkey`, through stdin) is shown.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.vpn import wg

KEY_FILE = Path("vpn") / "private.key"


def private_key_path(state: Path) -> Path:
    return state / KEY_FILE


def ensure_private_key(state: Path) -> bool:
    """Create the private key if there is none; True when it was created now.

    A key file that exists is left as it is, but its mode is brought back to 0600.
    """
    path = private_key_path(state)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        os.chmod(path, 0o600)
        return False
    key = wg.genkey()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: keep theirs
        return False
    try:
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def public_key(state: Path) -> str | None:
    """The appliance's public key, or None when no key was made yet (or it is unreadable)."""
    try:
        private = private_key_path(state).read_text().strip()
    except OSError:
        return None
    if not private:
        return None
    try:
        return wg.pubkey(private)
    except wg.WgError:
        return None
