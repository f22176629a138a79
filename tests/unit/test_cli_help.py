"""Every command's --help renders (help texts go through Rich markup, which can break)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


PATHS = _command_paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "plantgate" for p in PATHS])
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_the_documented_commands_exist() -> None:
    names = {" ".join(p) for p in PATHS}
    for command in (
        "policy check",
        "policy render",
        "policy plan",
        "policy apply",
        "policy confirm",
        "policy rollback",
        "policy history",
        "policy status",
        "policy explain",
        "policy test",
        "policy restore",
        "policy schema",
        "lab up",
        "lab down",
        "lab status",
        "lab exec",
        "audit show",
        "audit verify",
    ):
        assert command in names
