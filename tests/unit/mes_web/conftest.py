"""Fixtures for the screens' tests: the real application over a seeded SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.mes_web.support import Web, make_web


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    rig, engine = make_web(tmp_path)
    yield rig
    engine.dispose()
