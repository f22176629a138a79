"""Shared fixtures for kernel tests: root check, unique lab prefixes, labs that always come down.

Every test in this directory needs root (network namespaces, nftables); without it the whole
directory is skipped with that reason. Labs are built with a random prefix (`t` + 5 characters)
so runs never collide with each other or with a developer's `pg` lab, and their files go to a
temporary lab root; `down` is called in a `finally` whatever the test did.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.lab import lab as lab_ops
from gateway.lab import netns
from gateway.lab.lab import LabStatus

ALPHABET = string.ascii_lowercase + string.digits


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")


def new_prefix() -> str:
    """A lab prefix unlikely to exist: `t` and five random lowercase letters or digits."""
    return "t" + "".join(secrets.choice(ALPHABET) for _ in range(5))


@dataclass(frozen=True)
class Lab:
    """A lab built for a test: its prefix, lab root and the status `up` returned."""

    prefix: str
    root: Path
    status: LabStatus

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"


def teardown_lab(prefix: str, root: Path) -> None:
    """`down`, and if that fails, at least remove the namespaces so nothing is left behind."""
    try:
        lab_ops.down(prefix, root=root)
    finally:
        for name in netns.list_namespaces(prefix):
            netns.delete_namespace(name)


@pytest.fixture
def lab_prefix() -> str:
    return new_prefix()


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labroot")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A bare 2-hub lab (no plantgated, so no firewall) shared by a module's tests."""
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        yield Lab(prefix, root, lab_ops.up(prefix, hubs=2, policy=None, root=root))
    finally:
        teardown_lab(prefix, root)


@pytest.fixture
def make_lab(lab_root: Path) -> Iterator[Callable[..., Lab]]:
    """Factory for labs a test may break; every lab it made is taken down afterwards."""
    made: list[str] = []

    def make(hubs: int = 1, prefix: str | None = None) -> Lab:
        name = prefix or new_prefix()
        made.append(name)
        return Lab(name, lab_root, lab_ops.up(name, hubs=hubs, policy=None, root=lab_root))

    try:
        yield make
    finally:
        for name in made:
            teardown_lab(name, lab_root)
