"""Secret files: modes, creation once, refusal of widely readable files, sealing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mes.auth.secrets import Sealer, SecretError, load_secrets, read_or_create


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_once_with_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    first = read_or_create(directory / "pepper")
    assert len(first) == 32
    assert mode(directory) == 0o700
    assert mode(directory / "pepper") == 0o600
    assert read_or_create(directory / "pepper") == first


def test_widely_readable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pepper"
    read_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        read_or_create(path)


def test_wrong_size_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    directory.mkdir(mode=0o700)
    path = directory / "pepper"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(SecretError, match="expected 32"):
        read_or_create(path)


def test_keys_are_derived_and_hidden(tmp_path: Path) -> None:
    loaded = load_secrets(tmp_path / "secrets")
    assert len({loaded.pin_key, loaded.password_key, loaded.badge_key}) == 3
    assert repr(loaded) == "MesSecrets(<hidden>)"
    again = load_secrets(tmp_path / "secrets")
    assert again.pin_key == loaded.pin_key


def test_sealed_values_open_only_in_their_context(tmp_path: Path) -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal("JBSWY3DPEHPK3PXP", "person:7")
    assert "JBSWY3DP" not in sealed
    assert sealer.open(sealed, "person:7") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SecretError):
        sealer.open(sealed, "person:8")
    with pytest.raises(SecretError):
        Sealer(b"j" * 32).open(sealed, "person:7")
    with pytest.raises(SecretError):
        sealer.open("v1:!!!", "person:7")
