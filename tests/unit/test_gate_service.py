"""Gate operations over a state directory: store, kernel calls, audit log, events, expiry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit import AuditLog
from gateway.policy.nft import NftError
from gateway.vpn.gate import Grant
from gateway.vpn.gatekernel import nft_time, sync_script
from gateway.vpn.targets import GateError
from tests.unit.gate_helpers import Rig, rig

ALICE, HUB1, HUB2 = "198.18.201.5", "198.18.10.11", "198.18.10.12"


@pytest.fixture
def gates(tmp_path: Path) -> Rig:
    return rig(tmp_path / "state")


def opened(r: Rig, targets: tuple[str, ...] = (f"{HUB1}:ssh",), window: str = "1h") -> int:
    made = r.service.request("alice", targets, window, reason="diagnose", requester="carol")
    r.service.approve(made.id, "dave")
    r.service.open(made.id, "erin")
    return made.id


def test_request_approve_open_close_are_stored_audited_and_announced(gates: Rig) -> None:
    number = opened(gates)
    gates.clock.advance(minutes=10)
    gates.service.close(number, "frank")
    kinds = [e.kind for e in gates.events]
    assert kinds == ["gate.requested", "gate.approved", "gate.opened", "gate.closed"]
    entries = AuditLog(gates.state).entries()
    assert [(e.actor, e.action) for e in entries] == [
        ("carol", "gate.requested"),
        ("dave", "gate.approved"),
        ("erin", "gate.opened"),
        ("frank", "gate.closed"),
    ]
    assert entries[1].details["approvals"][0]["who"] == "dave"
    assert entries[2].details["targets"] == [f"{HUB1} tcp/22 (ssh)"]
    assert AuditLog(gates.state).verify().ok
    stored = json.loads((gates.state / "gate" / "requests" / "000001.json").read_text())
    assert stored["status"] == "closed" and stored["closed_by"] == "frank"


def test_open_adds_elements_with_the_time_left_and_close_removes_them(gates: Rig) -> None:
    number = opened(gates)
    grant = Grant(ALICE, HUB1, "tcp", 22)
    assert gates.kernel.calls == [("support", {grant: 3600.0}, [])]
    gates.clock.advance(minutes=15)
    gates.kernel.flows = 2
    gates.service.close(number, "frank")
    assert gates.kernel.calls[-1] == ("support", {}, [grant])
    assert gates.events[-1].fields["flows_ended"] == 2


def test_closing_one_of_two_overlapping_gates_keeps_the_shared_grant(gates: Rig) -> None:
    first = opened(gates, window="1h")
    second = opened(gates, targets=(f"{HUB1}:ssh", f"{HUB2}:ssh"), window="2h")
    shared, other = Grant(ALICE, HUB1, "tcp", 22), Grant(ALICE, HUB2, "tcp", 22)
    assert gates.kernel.calls[-1] == ("support", {shared: 7200.0, other: 7200.0}, [])
    gates.clock.advance(minutes=30)
    gates.service.close(second, "frank")
    assert gates.kernel.calls[-1] == ("support", {shared: 1800.0}, [other])
    gates.service.close(first, "frank")
    assert gates.kernel.calls[-1] == ("support", {}, [shared])


def test_the_kernel_refusing_leaves_the_request_as_it_was(gates: Rig) -> None:
    made = gates.service.request("alice", [f"{HUB1}:ssh"], "1h", reason="x", requester="carol")
    gates.service.approve(made.id, "dave")
    gates.kernel.fail = NftError("Error: No such file or directory", [])
    with pytest.raises(GateError) as info:
        gates.service.open(made.id, "erin")
    assert "is the policy loaded in this namespace?" in info.value.message
    assert gates.service.store.get(made.id).status == "approved"
    assert gates.events[-1].kind == "gate.approved"


def test_expiry_is_recorded_once_with_its_own_events(gates: Rig) -> None:
    number = opened(gates)
    pending = gates.service.request("bob", ["self"], "30m", reason="y", requester="carol")
    gates.clock.advance(hours=1, seconds=1)
    assert [r.status for r in gates.service.list_requests(include_all=True)] == [
        "closed",
        "expired",
    ]
    assert gates.service.list_requests() == []
    changed = gates.service.expire_due()
    assert [(r.id, r.status) for r in changed] == [(number, "closed"), (pending.id, "expired")]
    assert [(e.kind, e.fields["by"]) for e in gates.events[-2:]] == [
        ("gate.closed", "plantgate-expiry"),
        ("gate.expired", "plantgate-expiry"),
    ]
    assert gates.kernel.calls[-1] == ("support", {}, [Grant(ALICE, HUB1, "tcp", 22)])
    assert gates.service.expire_due() == []


def test_operations_bring_expiry_up_to_date_first(gates: Rig) -> None:
    made = gates.service.request("bob", ["self"], "30m", reason="y", requester="carol")
    gates.clock.advance(minutes=31)
    with pytest.raises(GateError) as info:
        gates.service.approve(made.id, "dave")
    assert info.value.message == (
        "request 1 expired at 2025-03-01 12:30:00 UTC (not opened before its window ended)"
    )
    assert [e.kind for e in gates.events] == ["gate.requested", "gate.expired"]


def test_unknown_request_and_missing_policy_are_clear(gates: Rig, tmp_path: Path) -> None:
    with pytest.raises(GateError) as info:
        gates.service.approve(9, "dave")
    assert (info.value.kind, info.value.message) == (
        "missing",
        "no gate request 9 (there are none yet)",
    )
    empty = rig(tmp_path / "other")
    (empty.state / "policy" / "current").unlink()
    with pytest.raises(GateError) as info:
        empty.service.request("alice", ["self"], "1h", reason="x", requester="carol")
    assert info.value.message.startswith("no policy is loaded")


def test_ids_keep_increasing(gates: Rig) -> None:
    ids = [
        gates.service.request("alice", ["self"], "1h", reason="x", requester="carol").id
        for _ in range(3)
    ]
    assert ids == [1, 2, 3]


def test_the_kernel_script_adds_with_exact_timeouts_and_deletes_safely() -> None:
    keep = {Grant(ALICE, HUB1, "tcp", 22): 3599.5}
    drop = [Grant(ALICE, HUB2, "tcp", 22), Grant("fd00::5", "fd00::1", "tcp", 22)]
    assert sync_script("support", keep, drop).splitlines() == [
        "add element inet plantgate gate_support_v4 { 198.18.201.5 . 198.18.10.11 . tcp . 22 "
        "timeout 59m59s500ms }",
        "delete element inet plantgate gate_support_v4 { 198.18.201.5 . 198.18.10.11 . tcp . 22 }",
        "add element inet plantgate gate_support_v4 { 198.18.201.5 . 198.18.10.11 . tcp . 22 "
        "timeout 59m59s500ms }",
        "add element inet plantgate gate_support_v4 { 198.18.201.5 . 198.18.10.12 . tcp . 22 "
        "timeout 1s }",
        "delete element inet plantgate gate_support_v4 { 198.18.201.5 . 198.18.10.12 . tcp . 22 }",
        "add element inet plantgate gate_support_v6 { fd00::5 . fd00::1 . tcp . 22 timeout 1s }",
        "delete element inet plantgate gate_support_v6 { fd00::5 . fd00::1 . tcp . 22 }",
    ]
    assert sync_script("support", {}, []) == ""


def test_nft_times_are_spelled_out() -> None:
    assert [nft_time(s) for s in (0, 0.0004, 1, 61.25, 50 * 86400)] == [
        "1ms",
        "1ms",
        "1s",
        "1m1s250ms",
        "50d",
    ]
