"""`support.connection` records from conntrack messages (the pure pairing), and the grant
guard the compiler adds for gated support."""

from __future__ import annotations

import datetime
from pathlib import Path

from gateway.audit import AuditLog
from gateway.events import Event
from gateway.policy.compile import compile_policy
from gateway.vpn.connections import (
    Directory,
    Flow,
    SupportConnections,
    name_record,
    record_connection,
)
from gateway.vpn.gate import Grant
from tests.unit.conftest import POLICIES, load

T0 = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
ALICE, HUB1 = "198.18.201.5", "198.18.10.11"
DIRECTORY = Directory({ALICE: "alice"}, {Grant(ALICE, HUB1, "tcp", 22): 7})


def flow(kind: str, seconds: float = 0, src: str = ALICE, **extra: object) -> Flow:
    return Flow(
        kind=kind,  # type: ignore[arg-type]
        ct_id=41,
        proto="tcp",
        src=src,
        dst=HUB1,
        sport=50000,
        dport=22,
        at=T0 + datetime.timedelta(seconds=seconds),
        **extra,  # type: ignore[arg-type]
    )


def test_a_staff_flow_gives_a_start_and_an_end_record() -> None:
    pairing = SupportConnections()
    started = pairing.feed(flow("new"), DIRECTORY)
    assert started is not None
    assert name_record(started, DIRECTORY) == {
        "state": "started",
        "staff": "alice",
        "staff_address": ALICE,
        "target": HUB1,
        "proto": "tcp",
        "port": 22,
        "start": T0.isoformat(),
        "end": None,
        "request": 7,
        "conntrack_id": 41,
    }
    assert pairing.feed(flow("update", 5, tcp_state="ESTABLISHED"), DIRECTORY) is None
    assert pairing.feed(flow("update", 90, tcp_state="TIME_WAIT"), DIRECTORY) is None
    ended = pairing.feed(flow("destroy", 210, bytes_orig=3000, bytes_reply=9000), DIRECTORY)
    assert ended is not None
    assert (ended["state"], ended["end"], ended["duration_s"]) == (
        "ended",
        (T0 + datetime.timedelta(seconds=90)).isoformat(),  # TIME_WAIT, not the destroy
        90.0,
    )
    assert (ended["bytes_from_staff"], ended["bytes_to_staff"]) == (3000, 9000)
    assert pairing.open == {}


def test_each_record_is_published_and_written_to_the_hash_chained_audit_log(
    tmp_path: Path,
) -> None:
    """What plantgated does with a record (issue 5, Record): a `support.connection` event
    and an audit entry in the staff member's name, the chain intact."""
    published: list[Event] = []
    sink = record_connection(tmp_path, published.append)
    pairing = SupportConnections()
    for fed in (flow("new"), flow("destroy", 60, bytes_orig=10, bytes_reply=20)):
        record = pairing.feed(fed, DIRECTORY)
        assert record is not None
        sink(name_record(record, DIRECTORY))
    assert [(e.kind, e.fields["state"]) for e in published] == [
        ("support.connection", "started"),
        ("support.connection", "ended"),
    ]
    audit = AuditLog(tmp_path)
    entries = [(e.actor, e.action, e.details["state"]) for e in audit.entries()]
    assert entries == [
        ("alice", "support.connection", "started"),
        ("alice", "support.connection", "ended"),
    ]
    assert audit.entries()[1].details["target"] == HUB1
    assert audit.verify().ok


def test_other_flows_are_not_support_connections() -> None:
    pairing = SupportConnections()
    assert pairing.feed(flow("new", src="198.18.10.12"), DIRECTORY) is None
    assert pairing.feed(flow("destroy", 1, src="198.18.10.12"), DIRECTORY) is None
    assert pairing.open == {}


def test_a_flow_first_seen_at_its_end_still_gets_a_record() -> None:
    pairing = SupportConnections()
    started = T0 - datetime.timedelta(minutes=5)
    ended = pairing.feed(flow("destroy", 0, started=started, bytes_orig=1), DIRECTORY)
    assert ended is not None
    assert (ended["start"], ended["duration_s"]) == (started.isoformat(), 300.0)


def test_an_update_of_an_unknown_staff_flow_starts_it() -> None:
    pairing = SupportConnections()
    record = pairing.feed(flow("update", 3, tcp_state="ESTABLISHED"), DIRECTORY)
    assert record is not None and record["state"] == "started"


def test_gated_support_compiles_a_grant_guard_before_conntrack() -> None:
    lab = (POLICIES / "lab.yaml").read_text()
    text = compile_policy(load(lab, "lab.yaml")).text
    at = next(i for i, t in enumerate(lab.splitlines(), 1) if t.startswith("support_vpn:"))
    origin = f'comment "support_vpn @ lab.yaml:{at}"'
    forward = text[text.index("chain forward {") : text.index("chain output {")]
    guard = [line.strip() for line in forward.splitlines() if "@gate_support_v4" in line]
    assert guard == [
        'iifname "wg-support" ip saddr @ep_support-staff_v4 tcp flags & (syn | rst) == 0 '
        "ip saddr . ip daddr . meta l4proto . th dport != @gate_support_v4 counter reject "
        f"with tcp reset {origin}",
        'iifname "wg-support" ip saddr @ep_support-staff_v4 ct state established meta l4proto '
        "udp ip saddr . ip daddr . meta l4proto . th dport != @gate_support_v4 counter drop "
        f"{origin}",
        'oifname "wg-support" ip daddr @ep_support-staff_v4 tcp flags & (syn | rst) == 0 '
        "ip daddr . ip saddr . meta l4proto . th sport != @gate_support_v4 counter reject "
        f"with tcp reset {origin}",
        'oifname "wg-support" ip daddr @ep_support-staff_v4 ct state established meta l4proto '
        "udp ip daddr . ip saddr . meta l4proto . th sport != @gate_support_v4 counter drop "
        f"{origin}",
    ]
    assert forward.index("@gate_support_v4 counter drop") < forward.index(
        "ct state established,related accept"
    )


def test_no_guard_without_a_gate() -> None:
    lab = (POLICIES / "lab.yaml").read_text()
    always_on = lab.replace("mode: gated", "mode: always-on")
    text = compile_policy(load(always_on, "lab.yaml")).text
    assert "!= @gate_support" not in text


def _tunnel_source_rules(policy_text: str) -> list[str]:
    text = compile_policy(load(policy_text, "lab.yaml")).text
    output = text[text.index("chain output {") :]
    output = output[: output.index("\n\t}")]
    return [
        line.strip().split(" counter ")[0]
        for line in output.splitlines()
        if "ip saddr @support_inner_v4" in line
    ]


def test_only_the_guards_resets_may_leave_toward_the_hubs_from_a_staff_address() -> None:
    """The grant guard's reset to a hub leaves through output with the staff address as its
    source; everything else from a tunnel address stays off every interface but the tunnel
    (tests/kernel/test_gate.py fails when the reset is dropped too)."""
    lab = (POLICIES / "lab.yaml").read_text()
    assert _tunnel_source_rules(lab) == [
        'ip saddr @support_inner_v4 oifname != { "wg-support", "lo", "lan0" }',
        'ip saddr @support_inner_v4 oifname { "lan0" } ip saddr != @ep_support-staff_v4',
        'ip saddr @support_inner_v4 oifname { "lan0" } meta l4proto != tcp',
        'ip saddr @support_inner_v4 oifname { "lan0" } tcp flags & rst == 0',
    ]
    for mode in ("always-on", "disabled"):  # no guard, so no reset to let through
        assert _tunnel_source_rules(lab.replace("mode: gated", f"mode: {mode}")) == [
            'ip saddr @support_inner_v4 oifname != { "wg-support", "lo" }'
        ]
