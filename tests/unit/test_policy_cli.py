"""The policy command line: exit codes, located errors on stderr, JSON for machines.

Only commands that never touch the kernel run here (apply is covered in tests/kernel,
inside namespaces).
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from tests.unit.conftest import BASE, POLICIES

runner = CliRunner()


def test_check_valid_policy_exits_0() -> None:
    result = runner.invoke(app, ["policy", "check", str(POLICIES / "site.yaml")])
    assert result.exit_code == 0
    assert result.stdout.endswith("site.yaml: ok (11 rules, 4 zones)\n")


def test_check_invalid_policy_exits_2_with_located_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("from: hubs", "from: hbus").replace("tcp: [443]", "tcp: [0]"))
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{bad}:17:17: error: services.https.tcp[0]: port 0 is out of range (1-65535)",
        f"{bad}:21:11: error: undefined zone or endpoint 'hbus' (did you mean 'hubs'?)",
    ]
    assert result.stdout == ""


def test_check_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("from: hubs", "from: hbus"))
    result = runner.invoke(app, ["policy", "check", "--json", str(bad)])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["problems"] == [
        {
            "file": str(bad),
            "line": 21,
            "column": 11,
            "severity": "error",
            "message": "undefined zone or endpoint 'hbus' (did you mean 'hubs'?)",
        }
    ]


def test_check_missing_file_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert result.stderr == f"{tmp_path / 'none.yaml'}:1:1: error: no such file\n"


def test_render_prints_the_ruleset() -> None:
    result = runner.invoke(app, ["policy", "render", str(POLICIES / "lab.yaml")])
    assert result.exit_code == 0
    assert result.stdout == (Path(__file__).parent / "golden" / "lab.nft").read_text()


def test_render_of_invalid_policy_prints_no_ruleset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n")
    result = runner.invoke(app, ["policy", "render", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "missing required section 'site'" in result.stderr


def test_unknown_option_is_bad_input() -> None:
    result = runner.invoke(app, ["policy", "check", "--frobnicate", "x"])
    assert result.exit_code == 2
