"""The support gate's pure machine: every transition and refusal, eligibility, expiry."""

from __future__ import annotations

import datetime

import pytest

from gateway.policy.model import Policy
from gateway.vpn import gate
from gateway.vpn.gate import GateRequest, Grant, format_duration, parse_duration
from gateway.vpn.targets import GateError, Target, parse_spec
from tests.unit.conftest import POLICIES, load

LAB = (POLICIES / "lab.yaml").read_text()
T0 = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
HUB1, HUB2, SELF_ADDR = "198.18.10.11", "198.18.10.12", "198.18.200.2"


def minutes(n: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=n)


def policy(*edits: tuple[str, str]) -> Policy:
    text = LAB
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return load(text, "lab.yaml").policy


LAB_POLICY = policy()
TWO_APPROVALS = policy(("approvals_required: 1", "approvals_required: 2"))


def make(
    staff: str = "alice",
    targets: tuple[str, ...] = (f"{HUB1}:ssh",),
    window: str = "2h",
    *,
    on: Policy = LAB_POLICY,
    now: datetime.datetime = T0,
    start: datetime.datetime | None = None,
    reason: str = "PLC firmware check",
) -> GateRequest:
    return gate.new_request(
        on,
        id=1,
        staff=staff,
        targets=targets,
        window_s=parse_duration(window),
        reason=reason,
        requester="carol",
        now=now,
        start=start,
        ticket="INC-42",
    )


def approved(request: GateRequest | None = None, *, on: Policy = LAB_POLICY) -> GateRequest:
    return gate.approve(request or make(on=on), on, "dave", T0 + minutes(1))


def refusal(action: object, kind: str = "refused") -> str:
    with pytest.raises(GateError) as info:
        action()  # type: ignore[operator]
    assert info.value.kind == kind, info.value.message
    return info.value.message


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("2d", 172800)]
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "", "h", "0s", "1.5h", "-1h", "2x"])
def test_malformed_durations_are_bad_input(text: str) -> None:
    message = refusal(lambda: parse_duration(text), "invalid")
    assert "duration" in message


def test_durations_format_compactly() -> None:
    assert [format_duration(s) for s in (0, 59, 3600, 5400, 90061)] == [
        "0s",
        "59s",
        "1h",
        "1h30m",
        "1d1h1m1s",
    ]


# -- request ------------------------------------------------------------------------------------


def test_a_request_resolves_its_targets_and_window() -> None:
    request = make(targets=(f"{HUB1}:ssh", "self", f"{HUB1}"))
    assert request.status == "requested"
    assert request.address == "198.18.201.5"
    assert request.targets == (
        Target(address=HUB1, service="ssh", proto="tcp", port=22),
        Target(address=SELF_ADDR, service="ssh", proto="tcp", port=22),
    )  # duplicates collapse
    assert (request.start, request.end) == (T0, T0 + datetime.timedelta(hours=2))
    assert request.expires == T0 + datetime.timedelta(hours=8)  # request_ttl default
    assert (request.requester, request.ticket, request.gate) == ("carol", "INC-42", "support")
    assert request.grants() == [
        Grant("198.18.201.5", HUB1, "tcp", 22),
        Grant("198.18.201.5", SELF_ADDR, "tcp", 22),
    ]


def test_target_specs_parse() -> None:
    assert parse_spec("198.18.10.11:ssh").service == "ssh"
    assert parse_spec("self").address == "self"
    assert parse_spec("[fd00::1]:ssh").address == "fd00::1"
    assert parse_spec("fd00::1").service is None


def test_staff_not_on_the_list_is_bad_input_with_a_suggestion() -> None:
    assert refusal(lambda: make("eve"), "invalid") == "not on the staff list: eve"
    assert "(did you mean 'alice'?)" in refusal(lambda: make("alcie"), "invalid")


def test_no_us_person_attestation_is_refused() -> None:
    message = refusal(lambda: make("mallory"))
    assert message == "mallory has no US-person attestation: support access needs one"


def test_a_window_longer_than_the_persons_maximum_is_refused() -> None:
    assert refusal(lambda: make("bob", window="2h")) == "bob may get at most 1h; asked for 2h"
    assert make("bob", window="1h").window_s == 3600


def test_targets_outside_what_the_policy_grants_are_refused() -> None:
    message = refusal(lambda: make(targets=("198.18.20.10:ssh",)))
    assert message.startswith("198.18.20.10 is not a support target (the gate grants access to")
    assert "zone 'hubs'" in message and "self (198.18.200.2)" in message
    service = refusal(lambda: make(targets=(f"{HUB1}:hub-agent",)))
    assert service == f"the gate does not grant 'hub-agent' on {HUB1} (it grants 'ssh')"


def test_malformed_or_unknown_targets_are_bad_input() -> None:
    assert "is not a target" in refusal(lambda: make(targets=("hub1",)), "invalid")
    unknown = refusal(lambda: make(targets=(f"{HUB1}:shh",)), "invalid")
    assert unknown == "unknown service 'shh' (did you mean 'ssh'?)"
    assert "network" in refusal(lambda: make(targets=("198.18.10.0/24",)), "invalid")
    assert "at least one target" in refusal(lambda: make(targets=()), "invalid")


def test_ipv6_targets_need_the_policy_to_allow_ipv6() -> None:
    assert "ipv6 is off" in refusal(lambda: make(targets=("[fd00::1]:ssh",)))


def test_a_reason_is_required() -> None:
    assert "reason" in refusal(lambda: make(reason="  "), "invalid")


def test_the_window_may_not_start_in_the_past_or_after_the_request_expires() -> None:
    past = refusal(lambda: make(start=T0 - minutes(30)), "invalid")
    assert "cannot start in the past" in past
    assert make(start=T0 - minutes(2)).start == T0 - minutes(2)  # clock skew grace
    late = refusal(lambda: make(start=T0 + datetime.timedelta(hours=9)))
    assert "after the request would expire" in late and "request_ttl 8h" in late


@pytest.mark.parametrize(
    ("mode", "words"), [("disabled", "disabled"), ("always-on", "need no gate")]
)
def test_no_gate_to_request_unless_the_vpn_is_gated(mode: str, words: str) -> None:
    other = policy(("mode: gated", f"mode: {mode}"))
    assert words in refusal(lambda: make(on=other))


# -- approve ------------------------------------------------------------------------------------


def test_one_approval_by_someone_else_approves() -> None:
    request = approved()
    assert request.status == "approved"
    assert [(a.who, a.at) for a in request.approvals] == [("dave", T0 + minutes(1))]


def test_self_approval_is_refused() -> None:
    message = refusal(lambda: gate.approve(make(), LAB_POLICY, "carol", T0))
    assert message == (
        "carol cannot approve request 1: they requested it (an approver must be someone else)"
    )


def test_the_staff_member_cannot_approve_their_own_access() -> None:
    message = refusal(lambda: gate.approve(make(), LAB_POLICY, "alice", T0))
    assert message == "alice cannot approve access for themselves (request 1)"


def test_approvals_must_come_from_distinct_people() -> None:
    once = gate.approve(make(on=TWO_APPROVALS), TWO_APPROVALS, "dave", T0)
    assert once.status == "requested"
    again = refusal(lambda: gate.approve(once, TWO_APPROVALS, "dave", T0))
    assert again == "dave has already approved request 1"
    twice = gate.approve(once, TWO_APPROVALS, "erin", T0 + minutes(2))
    assert twice.status == "approved"
    assert [a.who for a in twice.approvals] == ["dave", "erin"]


# -- open ---------------------------------------------------------------------------------------


def test_an_approved_request_opens_and_keeps_who_and_when() -> None:
    opened = gate.open_request(approved(), LAB_POLICY, "frank", T0 + minutes(2))
    assert (opened.status, opened.opened_by, opened.opened_at) == (
        "open",
        "frank",
        T0 + minutes(2),
    )
    assert opened.end == T0 + datetime.timedelta(hours=2)  # the window is not moved


def test_opening_without_the_required_approvals_is_refused() -> None:
    assert refusal(lambda: gate.open_request(make(), LAB_POLICY, "frank", T0)) == (
        "request 1 needs 1 approval, has 0"
    )
    one = gate.approve(make(on=TWO_APPROVALS), TWO_APPROVALS, "dave", T0)
    assert refusal(lambda: gate.open_request(one, TWO_APPROVALS, "frank", T0)) == (
        "request 1 needs 2 approvals, has 1"
    )


def test_approvals_are_counted_against_the_policy_in_force_at_open() -> None:
    once = approved()
    assert "needs 2 approvals, has 1" in refusal(
        lambda: gate.open_request(once, TWO_APPROVALS, "frank", T0 + minutes(2))
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("    - {name: alice, address: 198.18.201.5, us_person: true, max_window: 4h}\n", ""),
            "not on the staff list: alice",
        ),
        (
            ("{name: alice, address: 198.18.201.5, us_person: true,", "{name: alice, "
             "address: 198.18.201.5, us_person: false,"),
            "alice has no US-person attestation: support access needs one",
        ),
        (
            ("198.18.201.5, us_person: true, max_window: 4h}", "198.18.201.5, us_person: true, "
             "max_window: 1h}"),
            "alice may get at most 1h; asked for 2h",
        ),
    ],
)  # fmt: skip
def test_eligibility_is_checked_again_at_open(edit: tuple[str, str], message: str) -> None:
    changed = policy(edit)
    refused = refusal(lambda: gate.open_request(approved(), changed, "frank", T0 + minutes(2)))
    assert refused == message  # refused (exit 1) at open, even for a name no longer listed


def test_targets_are_checked_again_at_open() -> None:
    changed = policy(("    - {to: [self, hubs], allow: [ssh]}", "    - {to: [self], allow: [ssh]}"))
    message = refusal(lambda: gate.open_request(approved(), changed, "frank", T0 + minutes(2)))
    assert message.startswith(f"request 1 can no longer be opened: {HUB1} is not a support target")


def test_open_takes_the_staff_address_the_policy_holds_now() -> None:
    moved = policy(("address: 198.18.201.5,", "address: 198.18.201.7,"))
    opened = gate.open_request(approved(), moved, "frank", T0 + minutes(2))
    assert opened.address == "198.18.201.7"
    assert opened.grants()[0].staff == "198.18.201.7"


def test_a_window_that_has_not_started_cannot_open_yet() -> None:
    later = approved(make(start=T0 + datetime.timedelta(hours=1)))
    message = refusal(lambda: gate.open_request(later, LAB_POLICY, "frank", T0 + minutes(2)))
    assert message == (
        "request 1's window starts at 2025-03-01 13:00:00 UTC (in 58m); open it then"
    )


def test_an_open_request_cannot_be_opened_twice() -> None:
    opened = gate.open_request(approved(), LAB_POLICY, "frank", T0 + minutes(2))
    assert "already open" in refusal(lambda: gate.open_request(opened, LAB_POLICY, "x", T0))


# -- expiry -------------------------------------------------------------------------------------


def test_a_pending_request_expires_after_request_ttl() -> None:
    request = make(window="4h")
    assert gate.due(request, T0 + datetime.timedelta(hours=3)) is None
    request = make(start=T0 + datetime.timedelta(hours=7), window="4h")
    expired = gate.due(request, T0 + datetime.timedelta(hours=8))
    assert expired is not None
    assert (expired.status, expired.note, expired.closed_at) == (
        "expired",
        "not opened within request_ttl",
        T0 + datetime.timedelta(hours=8),
    )


def test_a_pending_request_expires_when_its_window_ends_first() -> None:
    expired = gate.due(approved(), T0 + datetime.timedelta(hours=2))
    assert expired is not None
    assert (expired.status, expired.note) == ("expired", "not opened before its window ended")


def test_an_expired_request_can_be_neither_approved_nor_opened() -> None:
    late = T0 + datetime.timedelta(hours=2, seconds=1)
    for action in (
        lambda: gate.approve(make(), LAB_POLICY, "dave", late),
        lambda: gate.open_request(approved(), LAB_POLICY, "frank", late),
    ):
        assert refusal(action) == (
            "request 1 expired at 2025-03-01 14:00:00 UTC (not opened before its window ended)"
        )
    stored = gate.due(make(), late)
    assert stored is not None
    assert refusal(lambda: gate.approve(stored, LAB_POLICY, "dave", late)).startswith(
        "request 1 expired at"
    )


def test_an_open_gate_closes_at_the_end_of_its_window() -> None:
    opened = gate.open_request(approved(), LAB_POLICY, "frank", T0 + minutes(2))
    assert gate.due(opened, T0 + minutes(119)) is None
    closed = gate.due(opened, T0 + minutes(120))
    assert closed is not None
    assert (closed.status, closed.closed_by, closed.note, closed.closed_at) == (
        "closed",
        "expiry",
        "window ended",
        opened.end,
    )
    assert gate.current(opened, T0 + minutes(121)).status == "closed"


# -- close and deny -----------------------------------------------------------------------------


def test_close_ends_an_open_gate_early() -> None:
    opened = gate.open_request(approved(), LAB_POLICY, "frank", T0 + minutes(2))
    closed = gate.close(opened, "gina", T0 + minutes(10))
    assert (closed.status, closed.closed_by, closed.closed_at) == (
        "closed",
        "gina",
        T0 + minutes(10),
    )
    assert "already closed" in refusal(lambda: gate.close(closed, "gina", T0 + minutes(11)))


def test_close_after_the_window_records_the_expiry() -> None:
    opened = gate.open_request(approved(), LAB_POLICY, "frank", T0 + minutes(2))
    assert gate.close(opened, "gina", T0 + minutes(130)).closed_by == "expiry"


def test_a_pending_request_is_denied_not_closed() -> None:
    assert "deny it to withdraw it" in refusal(lambda: gate.close(approved(), "gina", T0))
    denied = gate.deny(approved(), "gina", "no ticket yet", T0 + minutes(3))
    assert (denied.status, denied.closed_by, denied.note) == ("denied", "gina", "no ticket yet")
    assert "it is denied" in refusal(lambda: gate.approve(denied, LAB_POLICY, "dave", T0))
    assert "reason" in refusal(lambda: gate.deny(make(), "gina", "", T0), "invalid")


def test_an_open_gate_is_closed_not_denied() -> None:
    opened = gate.open_request(approved(), LAB_POLICY, "frank", T0 + minutes(2))
    assert refusal(lambda: gate.deny(opened, "gina", "x", T0)) == (
        "request 1 is open: close it instead"
    )


# -- grants held in the kernel ----------------------------------------------------------------


def test_held_grants_take_the_latest_end_of_overlapping_windows() -> None:
    first = gate.open_request(approved(), LAB_POLICY, "f", T0 + minutes(2))
    longer = make(window="4h", targets=(f"{HUB1}:ssh", f"{HUB2}:ssh")).model_copy(update={"id": 2})
    second = gate.open_request(approved(longer), LAB_POLICY, "f", T0 + minutes(2))
    held = gate.held_grants([first, second], T0 + minutes(60))
    assert held == {
        Grant("198.18.201.5", HUB1, "tcp", 22): 3 * 3600,
        Grant("198.18.201.5", HUB2, "tcp", 22): 3 * 3600,
    }
    closed = gate.close(second, "g", T0 + minutes(61))
    assert gate.held_grants([first, closed], T0 + minutes(62)) == {
        Grant("198.18.201.5", HUB1, "tcp", 22): 58 * 60
    }
    assert gate.held_grants([first], T0 + minutes(120)) == {}
