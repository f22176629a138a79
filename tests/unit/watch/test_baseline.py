"""The learned baseline: new pairs and assets by mode, persistence, reset and freeze."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.alerts.record import Severity
from gateway.audit import AuditLog
from gateway.cli import app
from gateway.watch.baseline import Baseline, BaselineStore, Learned, adopt, pair_key
from gateway.watch.detectors.assets import AssetDetector, AssetSettings
from gateway.watch.detectors.bounded import OVERFLOW_KEY
from gateway.watch.detectors.pairs import NewPairDetector, PairSettings
from tests.unit.watch.netkit import (
    GW_LAN,
    HUB1,
    HUB2,
    T0,
    addresses,
    arp,
    feed,
    flow,
    lab_site,
    learned,
    packet,
    tcp,
)

SITE = lab_site()
MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


# ------------------------------------------------------------------ modes


def test_learning_ends_by_itself_by_a_freeze_or_not_at_all() -> None:
    baseline = Baseline(started=T0)
    assert baseline.mode("learning", 3600, T0 + 10) == "learning"
    assert baseline.mode("learning", 3600, T0 + 3600) == "protecting"
    assert baseline.mode("protecting", 3600, T0) == "protecting"
    baseline.frozen_at = T0 + 5
    assert baseline.mode("learning", 3600, T0 + 10) == "protecting"
    assert baseline.learning_ends("learning", 3600) is None


# ------------------------------------------------------------------ PG-PAIR-NEW


def test_pairs_learned_while_learning_are_quiet_afterwards() -> None:
    knowledge = learned(window_s=100)
    detector = NewPairDetector(PairSettings(), knowledge)
    assert feed(detector, [flow(HUB1, GW_LAN, 443, T0 + 1)], SITE) == []
    assert knowledge.baseline.has_pair(pair_key("tcp", HUB1, GW_LAN, 443))
    later = T0 + 200  # protecting now
    assert feed(detector, [flow(HUB1, GW_LAN, 443, later)], SITE) == []
    new = [flow(HUB1, GW_LAN, 8443, later), packet(tcp(HUB1, GW_LAN, 40000, 8443), "new", later)]
    [trigger] = feed(detector, new, SITE)  # the conntrack flow and its sample: one pair
    assert trigger.rule.id == "PG-PAIR-NEW" and trigger.severity is Severity.MEDIUM
    assert trigger.key == "tcp 198.18.10.11 > 198.18.10.1:8443"
    assert feed(detector, [flow(HUB1, GW_LAN, 8443, later + 3600)], SITE) == []  # once


def test_pair_keys_ignore_the_source_port_and_icmp_ports() -> None:
    assert pair_key("tcp", "10.0.0.1", "fd00::1", 443) == "tcp 10.0.0.1 > [fd00::1]:443"
    assert pair_key("icmp", "10.0.0.1", "10.0.0.2", None) == "icmp 10.0.0.1 > 10.0.0.2"


def test_new_pairs_from_a_flood_are_budgeted_and_the_baseline_is_bounded() -> None:
    knowledge = learned(mode="protecting")
    detector = NewPairDetector(PairSettings(max_new_alerts_per_minute=10, max_pairs=100), knowledge)
    triggers = []
    for i, source in enumerate(addresses(5000)):
        triggers += detector.observe(flow(source, GW_LAN, 443, T0 + i / 100), SITE)
    assert len({t.key for t in triggers}) <= 10 * 1 + 1 + 10  # a minute's budget, twice
    assert OVERFLOW_KEY in {t.key for t in triggers}
    learning = NewPairDetector(PairSettings(max_pairs=100), learned())
    for i, source in enumerate(addresses(5000)):
        learning.observe(flow(source, GW_LAN, 443, T0 + i / 100), SITE)
    assert len(learning.learned.baseline.pairs) == 100
    assert learning.learned.baseline.overflow == 4900


# ------------------------------------------------------------------ assets


def test_devices_learned_then_a_new_one_alerts() -> None:
    knowledge = learned(window_s=100)
    detector = AssetDetector(AssetSettings(), knowledge)
    assert feed(detector, [arp(MAC1, HUB1, T0), arp(MAC2, HUB2, T0 + 1)], SITE) == []
    [new] = detector.observe(arp(MAC3, "198.18.10.77", T0 + 200), SITE)
    assert new.rule.id == "PG-ASSET-NEW" and new.key == MAC3
    assert new.source is not None and new.source.mac == MAC3 and new.source.role == "hub"
    assert new.technique is None
    assert not detector.observe(arp(MAC3, "198.18.10.77", T0 + 201), SITE)  # known now
    [moved_address] = detector.observe(arp(MAC1, "198.18.10.99", T0 + 300), SITE)
    assert moved_address.key == f"{MAC1} 198.18.10.99"


def test_an_address_moving_to_another_mac_is_a_binding_change_or_a_duplicate() -> None:
    knowledge = learned(window_s=100)
    detector = AssetDetector(AssetSettings(duplicate_window_s=30), knowledge)
    feed(detector, [arp(MAC1, HUB1, T0), arp(MAC2, HUB2, T0)], SITE)
    [changed] = detector.observe(arp(MAC2, HUB1, T0 + 60), SITE)  # while learning, too
    assert changed.rule.id == "PG-ASSET-BINDING-CHANGE" and changed.key == HUB1
    assert changed.labels["previous_mac"] == MAC1 and changed.severity is Severity.HIGH
    assert changed.technique is not None and changed.technique.id == "T0830"
    [duplicate] = detector.observe(arp(MAC1, HUB1, T0 + 70), SITE)  # both within 30 s
    assert duplicate.rule.id == "PG-ASSET-DUPLICATE-IP"


def test_probes_and_the_appliance_claim_no_address() -> None:
    knowledge = learned(mode="protecting")
    detector = AssetDetector(AssetSettings(), knowledge)
    [new] = detector.observe(arp(MAC1, "0.0.0.0", T0), SITE)
    assert new.rule.id == "PG-ASSET-NEW" and new.source is None
    assert not knowledge.baseline.bindings
    assert detector.observe(arp(MAC2, GW_LAN, T0), SITE)[0].key == MAC2
    assert GW_LAN not in knowledge.baseline.bindings


def test_assets_are_bounded() -> None:
    knowledge = learned()
    detector = AssetDetector(AssetSettings(max_assets=100, max_tracked=100), knowledge)
    for i, address in enumerate(addresses(20_000)):
        mac = ":".join(f"{b:02x}" for b in (2, 0, *(i + 1).to_bytes(4, "big")))
        detector.observe(arp(mac, address, T0 + i), SITE)
    assert len(knowledge.baseline.assets) == 100
    assert detector.state_size() <= 100 + 100 + 100


# ------------------------------------------------------------------ the store


def test_the_store_round_trips_and_refuses_to_overwrite_a_newer_generation(
    tmp_path: Path,
) -> None:
    store = BaselineStore(tmp_path)
    baseline = store.load(now=T0)
    baseline.learn_pair("tcp a > b:1", T0)
    assert baseline.dirty and store.save(baseline) and not baseline.dirty
    again = store.load()
    assert again.pairs.keys() == {"tcp a > b:1"} and again.started == T0
    frozen = store.freeze(now=T0 + 5)
    assert frozen.generation == 1 and frozen.frozen_at == T0 + 5
    baseline.learn_pair("tcp a > b:2", T0 + 6)
    assert not store.save(baseline)  # the CLI's freeze is newer: taken over first
    merged = adopt(baseline, frozen)
    assert merged.frozen_at == T0 + 5 and "tcp a > b:2" in merged.pairs
    assert store.save(merged)
    reset = store.reset(now=T0 + 10)
    fresh = adopt(merged, reset)
    assert fresh.pairs == {} and fresh.started == T0 + 10 and fresh.frozen_at is None


def test_a_corrupt_file_is_set_aside_not_trusted(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    assert store.read() is None
    assert store.path.with_name("baseline.json.corrupt").exists()


def test_cli_show_freeze_reset(tmp_path: Path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path)]
    store = BaselineStore(tmp_path)
    baseline = Baseline(started=T0)
    baseline.learn_pair("tcp 198.18.10.11 > 198.18.10.1:443", T0)
    baseline.add_asset(MAC1, T0, learned=True)
    store.save(baseline)
    shown = runner.invoke(app, ["baseline", "show", *state])
    assert shown.exit_code == 0 and "tcp 198.18.10.11 > 198.18.10.1:443" in shown.stdout
    assert MAC1 in shown.stdout
    frozen = runner.invoke(app, ["baseline", "freeze", *state])
    assert frozen.exit_code == 0 and "protecting" in frozen.stdout
    data = json.loads(runner.invoke(app, ["baseline", "show", "--json", *state]).stdout)
    assert data["mode"] == "protecting" and data["pairs"] == 1
    refused = runner.invoke(app, ["baseline", "reset", *state], input="n\n")
    assert refused.exit_code != 0 and store.read() is not None and store.read().pairs  # type: ignore[union-attr]
    done = runner.invoke(app, ["baseline", "reset", "--yes", *state])
    assert done.exit_code == 0
    after = store.read()
    assert after is not None and after.pairs == {} and after.generation == 2
    actions = [entry.action for entry in AuditLog(tmp_path).entries()]
    assert actions == ["watch.baseline_freeze", "watch.baseline_reset"]


def test_learned_swaps_baselines() -> None:
    knowledge = Learned(Baseline(started=T0), "learning", 10)
    knowledge.baseline = Baseline(started=T0 + 100)
    assert knowledge.mode(T0 + 105) == "learning"
