"""The lab starts the MES on gw as the appliance does: argv, binds, readiness."""

from __future__ import annotations

from pathlib import Path

from gateway.lab import services
from gateway.lab.services import LabPaths


def test_mes_spec_binds_the_hub_and_plant_legs(tmp_path: Path) -> None:
    paths = LabPaths("pg", tmp_path)
    spec = services.mes_spec(paths)
    assert spec.host == "gw" and spec.ready == "tls"
    assert spec.argv[1:3] == ("-m", "mes.cli_serve")
    binds = [spec.argv[i + 1] for i, arg in enumerate(spec.argv) if arg == "--bind"]
    assert binds == ["198.18.10.1:443", "198.18.20.1:443"]
    assert str(paths.gw_state) in spec.argv
    assert dict(spec.env)["PLANTGATE_STATE_DIR"] == str(paths.gw_state)
    assert services.mes_ca(paths) == paths.gw_state / "mes" / "ca" / "ca.crt"
