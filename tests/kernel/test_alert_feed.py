"""Alerts in the lab: the pipeline in `gw` sends to a real rsyslog TLS collector in `plant`,
and SIGKILL of the process running it loses no spooled alert; on restart the syslog cursor
and the feed cursor resume where they were.

The lab runs policies/lab.yaml, which lets the appliance reach the lab's SOC collector (the
`soc-collector` endpoint 198.18.20.10, service `syslog-tls` tcp 6514 and rule `alert-feed`,
as policies/site.yaml has them). The pipeline runs as `python -m gateway.alerts.service` in
gw with its own state directory and `--demo-rate`: synthetic test alerts, one new alert each,
and a `committed SEQ` line in its log after each durable commit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.alerts.feed import feed_socket
from gateway.alerts.sinks.spool import CursorStore, SpoolReader, cursor_dir, spool_dir
from gateway.lab import collector, services
from gateway.lab import lab as lab_ops
from gateway.lab.services import LabPaths
from tests.kernel.conftest import Lab, new_prefix, teardown_lab
from tests.kernel.policy_lab import LAB_POLICY

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "alerts-demo"


@pytest.fixture(scope="module")
def alert_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        yield Lab(prefix, root, lab_ops.up(prefix, hubs=1, policy=LAB_POLICY, root=root))
    finally:
        teardown_lab(prefix, root)


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def start_pipeline(paths: LabPaths, state: Path, rate: float) -> int:
    argv = [
        sys.executable,
        "-m",
        "gateway.alerts.service",
        "--state-dir",
        str(state),
        "--site",
        "lab-plant",
        "--demo-rate",
        str(rate),
    ]
    env = {"PYTHONPATH": str(ROOT)}
    return services.start_process(paths, "gw", argv, SERVICE, env)


def committed(paths: LabPaths) -> int:
    found = re.findall(r"^committed (\d+)$", paths.logfile(SERVICE).read_text(), re.M)
    return int(found[-1]) if found else 0


def collected_seqs(paths: LabPaths) -> list[int]:
    out = []
    for item in collector.received(paths):
        if not item.get("msg", "").lstrip("\ufeff").startswith("test alert "):
            continue  # plantgated's own alerts (the lab points it at the collector too)
        m = re.search(r' seq="(\d+)"', item.get("sd", ""))
        if m:
            out.append(int(m.group(1)))
    return out


def write_config(state: Path, paths: LabPaths) -> None:
    settings = {"syslog": collector.appliance_settings(paths, confirm_after_s=0.5)}
    (state / "alerts").mkdir(parents=True, exist_ok=True)
    (state / "alerts" / "config.yaml").write_text(json.dumps(settings))  # JSON is YAML


def test_alerts_reach_the_collector_and_survive_sigkill(alert_lab: Lab) -> None:
    paths = lab_ops.lab_paths(alert_lab.prefix, alert_lab.root)
    collector.start(paths)
    state = paths.directory / "alerts-state"
    write_config(state, paths)

    pid = start_pipeline(paths, state, rate=40)
    try:
        assert wait_for(lambda: len(collected_seqs(paths)) >= 30, 30), services.log_tail(
            paths, SERVICE, 20
        )
        # What rsyslog parsed is what we sent: RFC 5424 fields and our structured data.
        first = collector.received(paths)[0]
        assert first["app"] == "plantgate" and first["msgid"] == "PG-TEST-ALERT"
        assert first["severity"] == 6 and first["facility"] == 16
        assert "[plantgate@32473 " in first["sd"] and 'site="lab-plant"' in first["sd"]
        assert first["msg"].lstrip("\ufeff").startswith("test alert ")
        assert first["peer"] == "198.18.20.1"  # the appliance's plant leg, through the policy
        time.sleep(0.37)  # kill at an arbitrary point
    finally:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not services.is_alive(pid), 5)

    acked = committed(paths)
    records = SpoolReader(spool_dir(state)).read(0, 1_000_000)
    seqs = [r.seq for r in records]
    assert acked > 0 and seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= acked
    ids_before = {r.seq: r.alert.id for r in records}
    cursor_at_kill = CursorStore(cursor_dir(state)).get("syslog")
    assert cursor_at_kill <= len(seqs)

    # Restart: the sequence continues, the collector gets everything that was spooled.
    pid = start_pipeline(paths, state, rate=40)
    try:
        last_before = len(seqs)
        assert wait_for(lambda: set(range(1, last_before + 1)) <= set(collected_seqs(paths)), 30)
        assert wait_for(lambda: max(collected_seqs(paths)) > last_before + 10, 30)
        assert wait_for(lambda: feed_socket(state).exists(), 10)
        transport = httpx.HTTPTransport(uds=str(feed_socket(state)))
        with httpx.Client(transport=transport, base_url="http://feed") as client:
            page = client.get(
                "/alerts", params={"after": last_before - 3, "limit": 6, "format": "ecs"}
            )
        docs = page.json()
        assert [d["event"]["sequence"] for d in docs] == list(
            range(last_before - 2, last_before + 4)
        )
        for doc in docs[:3]:  # the spooled alerts are the same ones after the restart
            assert doc["event"]["id"] == ids_before[doc["event"]["sequence"]]
        assert CursorStore(cursor_dir(state)).get("syslog") >= cursor_at_kill
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not services.is_alive(pid), 10)
        collector.stop(paths)
    # A collector restart would be the same story: the sink resends from its cursor.
    duplicates = len(collected_seqs(paths)) - len(set(collected_seqs(paths)))
    assert duplicates <= 200  # at-least-once: a bounded replay window, never a gap
