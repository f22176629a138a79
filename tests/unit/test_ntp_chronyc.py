"""chronyc CSV parsers, on output recorded from chrony 4.3 in the lab, and `ntp status`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.ntp import chronyd as chronyd_module
from gateway.ntp.chronyc import (
    ChronycParseError,
    is_orphan,
    parse_sources,
    parse_sourcestats,
    parse_tracking,
)
from gateway.ntp.chronyd import NotRunningError, RelayReport, chronyd_argv
from gateway.ntp.cli import seconds, status_record

# `chronyc -c tracking|sources|sourcestats` of the relay in gw, synced to the lab upstream
SYNCED_TRACKING = (
    "C613007B,198.19.0.123,2,1796178373.061289199,-0.000011718,-0.000003849,0.000003849,"
    "-0.173,-0.534,1.317,0.000068365,0.004573253,2.0,Normal\n"
)
SYNCED_SOURCES = "^,*,198.19.0.123,1,1,37,2,-0.000001403,-0.000005252,0.000034258\n"
SYNCED_NAMED = "^,*,ntp.upstream.test,1,1,37,2,-0.000001403,-0.000005252,0.000034258\n"
SYNCED_STATS = "198.19.0.123,5,3,4,-0.534,10.768,-0.000000985,0.000002085\n"
# the same relay 60 s after the upstream chronyd was stopped: orphan mode
ORPHAN_TRACKING = (
    "7F7F0101,,10,1796178038.531030850,-0.000008337,-0.000000385,0.000006111,0.080,0.000,"
    "0.000,0.000000000,0.000000000,2.0,Normal\n"
)
ORPHAN_SOURCES = (
    "^,?,198.19.0.123,1,1,0,61,-0.000000278,-0.000000663,0.000005849\n"
    "^,?,198.19.0.124,0,1,0,4294967295,0.000000000,0.000000000,0.000000000\n"
)
ORPHAN_STATS = (
    "198.19.0.123,8,4,10,-0.005,1.373,-0.000000313,0.000002249\n"
    "198.19.0.124,0,0,0,0.000,2000.000,0.000000000,4.000000000\n"
)


def test_tracking_synced() -> None:
    tracking = parse_tracking(SYNCED_TRACKING)
    assert tracking.ref_id == "C613007B" and tracking.reference == "198.19.0.123"
    assert tracking.stratum == 2
    assert tracking.ref_time == pytest.approx(1796178373.061289199)
    assert tracking.correction == pytest.approx(-0.000011718)
    assert tracking.last_offset == pytest.approx(-0.000003849)
    assert tracking.frequency_ppm == pytest.approx(-0.173)
    assert tracking.skew_ppm == pytest.approx(1.317)
    assert tracking.root_delay == pytest.approx(0.000068365)
    assert tracking.root_dispersion == pytest.approx(0.004573253)
    assert tracking.update_interval == 2.0
    assert tracking.leap == "Normal" and tracking.synchronised and not tracking.local
    assert not is_orphan(tracking, 10)


def test_tracking_orphan() -> None:
    tracking = parse_tracking(ORPHAN_TRACKING)
    assert tracking.local and tracking.reference == "" and tracking.stratum == 10
    assert is_orphan(tracking, 10) and is_orphan(tracking, None)


def test_orphan_by_stratum_alone() -> None:
    hidden = parse_tracking(SYNCED_TRACKING.replace(",2,1796", ",8,1796"))
    assert is_orphan(hidden, 8) and not is_orphan(hidden, 10)


def test_unsynchronised_tracking() -> None:
    text = "00000000,,0,0.000000000,0.0,0.0,0.0,0.0,0.0,0.0,1.0,1.0,0.0,Not synchronised\n"
    tracking = parse_tracking(text)
    assert not tracking.synchronised and tracking.stratum == 0


def test_sources() -> None:
    (source,) = parse_sources(SYNCED_SOURCES)
    assert source.mode == "server" and source.state == "selected"
    assert source.address == "198.19.0.123" and source.stratum == 1 and source.poll == 1
    assert source.reach == 0o37 and source.reach_octal == "37" and source.answered == 5
    assert source.last_rx == 2
    assert source.offset == pytest.approx(-0.000001403)
    assert source.measured_offset == pytest.approx(-0.000005252)
    assert source.error == pytest.approx(0.000034258)


def test_sources_unreachable_and_never_heard() -> None:
    lost, never = parse_sources(ORPHAN_SOURCES)
    assert lost.state == "unusable" and lost.reach == 0 and lost.answered == 0
    assert lost.last_rx == 61
    assert never.last_rx is None and never.stratum == 0
    full = parse_sources(SYNCED_SOURCES.replace(",37,", ",377,"))[0]
    assert full.reach == 255 and full.answered == 8


def test_sourcestats() -> None:
    (stats,) = parse_sourcestats(SYNCED_STATS)
    assert stats.address == "198.19.0.123"
    assert (stats.samples, stats.runs, stats.span) == (5, 3, 4)
    assert stats.frequency_ppm == pytest.approx(-0.534)
    assert stats.skew_ppm == pytest.approx(10.768)
    assert stats.offset == pytest.approx(-0.000000985)
    assert stats.std_dev == pytest.approx(0.000002085)


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_tracking, "506 Cannot talk to daemon\n", "expected 14"),
        (parse_tracking, SYNCED_TRACKING * 2, "expected one line"),
        (parse_tracking, SYNCED_TRACKING.replace(",2,", ",two,", 1), "stratum 'two'"),
        (parse_sources, "^,*,x,1,1,9,2,0,0,0\n", "reach '9'"),
        (parse_sourcestats, "x,1,2\n", "expected 8"),
    ],
)
def test_bad_output_is_a_clear_error(parser: object, text: str, message: str) -> None:
    with pytest.raises(ChronycParseError, match=message):
        parser(text)  # type: ignore[operator]


def test_empty_source_lists() -> None:
    assert parse_sources("") == [] and parse_sourcestats("\n") == []


# ---------------------------------------------------------------- chronyd command line


def test_chronyd_never_touches_the_clock_unless_told() -> None:
    conf = Path("/s/ntp/chrony.conf")
    lab = chronyd_argv("chronyd", conf, discipline_clock=False, restart=False)
    assert lab == ["chronyd", "-d", "-f", "/s/ntp/chrony.conf", "-u", "root", "-F", "2", "-x"]
    appliance = chronyd_argv("chronyd", conf, discipline_clock=True, restart=True)
    assert "-x" not in appliance and appliance[-1] == "-R"


# ---------------------------------------------------------------- ntp status


def report(tracking: str, sources: str, named: str, stats: str) -> RelayReport:
    parsed = tuple(parse_sources(sources))
    names = tuple(s.address for s in parse_sources(named))
    return RelayReport(parse_tracking(tracking), parsed, names, tuple(parse_sourcestats(stats)))


def test_status_record_synced() -> None:
    record = status_record(
        report(SYNCED_TRACKING, SYNCED_SOURCES, SYNCED_NAMED, SYNCED_STATS), 10, 1796178376.0
    )
    assert not record["orphan"]
    assert record["tracking"]["stratum"] == 2
    assert record["tracking"]["last_sync_ago_s"] == pytest.approx(2.94, abs=0.01)
    (src,) = record["sources"]
    assert src["name"] == "ntp.upstream.test" and src["address"] == "198.19.0.123"
    assert src["reach"] == "37" and src["answered_of_last_8"] == 5
    assert src["jitter_s"] == pytest.approx(0.000002085)
    json.dumps(record)


def test_status_record_orphan() -> None:
    record = status_record(
        report(ORPHAN_TRACKING, ORPHAN_SOURCES, ORPHAN_SOURCES, ORPHAN_STATS), 10, 0.0
    )
    assert record["orphan"] and record["tracking"]["reference"] == "LOCAL"
    assert record["tracking"]["last_sync"] is None
    assert record["sources"][1]["jitter_s"] is None  # no samples, no jitter


def test_seconds_reads_well() -> None:
    assert seconds(-0.000011718) == "-12 µs"
    assert seconds(0.0045) == "+4 ms"
    assert seconds(2.5) == "+2.500 s"
    assert seconds(3e-9) == "+3 ns"
    assert seconds(None) == "-"


def test_cli_status_text_and_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    orphan = report(ORPHAN_TRACKING, ORPHAN_SOURCES, ORPHAN_SOURCES, ORPHAN_STATS)
    monkeypatch.setattr(chronyd_module, "read_report", lambda socket: orphan)
    runner = CliRunner()
    text = runner.invoke(app, ["ntp", "status", "--state-dir", str(tmp_path)])
    assert text.exit_code == 0, text.output
    assert "ORPHAN: serving at stratum 10 without upstream" in text.output
    assert "0 (0 of last 8)" in text.output
    as_json = runner.invoke(app, ["ntp", "status", "--state-dir", str(tmp_path), "--json"])
    assert json.loads(as_json.stdout)["orphan"] is True


def test_cli_status_when_chronyd_is_not_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing(socket: Path) -> RelayReport:
        raise NotRunningError(f"no chronyd command socket at {socket}")

    monkeypatch.setattr(chronyd_module, "read_report", missing)
    result = CliRunner().invoke(app, ["ntp", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("plantgate ntp: error: the NTP relay is not running")
    assert "Traceback" not in result.output


def test_cli_status_without_a_socket_is_not_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ntp", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "not running" in result.stderr
