"""Drift: normalising and comparing real `nft list table` output, and the watcher's events.

The listings in golden/drift/ were recorded from a throwaway namespace with the lab's golden
ruleset (golden/lab.nft) loaded:

* lab-loaded.nft   `nft -s list table inet plantgate` right after the load (what apply keeps);
* lab-runtime.nft  `nft -a list table ...` after a gate grant and resolved FQDN addresses
                   were added with timeouts: handles, counters and `expires` countdowns;
* lab-tampered.nft `nft -s list table ...` after, on top of that, `nft add rule inet
                   plantgate input tcp dport 23 accept`, a network added to the hubs zone's
                   set, and a gate grant added *without* a timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.events import Bus, Event
from gateway.policy.compile import compile_policy
from gateway.policy.drift import (
    Difference,
    check_drift,
    compare,
    drift_event,
    drift_watch,
    dynamic_sets_of,
    normalize,
)
from gateway.policy.load import load_text
from gateway.policy.revisions import Revision, RevisionStore
from tests.unit.conftest import POLICIES

GOLDEN = Path(__file__).parent / "golden" / "drift"
LOADED = (GOLDEN / "lab-loaded.nft").read_text()
RUNTIME = (GOLDEN / "lab-runtime.nft").read_text()
TAMPERED = (GOLDEN / "lab-tampered.nft").read_text()
LAB_TEXT = (POLICIES / "lab.yaml").read_text()
DYNAMIC = compile_policy(load_text(LAB_TEXT, "lab.yaml")).dynamic_sets

# Recorded from a namespace: a per-source meter (flags dynamic) that the packet path filled;
# 10.0.0.1 took the set's default timeout, so the listing shows none for it.
METER = """\
table inet plantgate {
	set rl_web_v4 {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 1m
		elements = { 10.0.0.1, 10.0.0.2 timeout 5m }
	}
}
"""


def test_dynamic_sets_are_the_fqdn_and_gate_sets() -> None:
    assert set(DYNAMIC) == {
        *(f"ep_{n}_v{v}" for n in ("ntp-upstream", "account-server", "support-concentrator")
          for v in (4, 6)),
        "gate_support_v4",
        "gate_support_v6",
    }  # fmt: skip
    # and the drop log's first-drop memory, a meter the packet path fills (watchlog.py)
    meters = {"watch_drops_v4", "watch_drops_v6"}
    assert dynamic_sets_of(LAB_TEXT, "lab.yaml") == frozenset(DYNAMIC) | meters


def test_normalize_drops_counters_handles_and_countdowns() -> None:
    lines = normalize(RUNTIME, DYNAMIC)
    text = "\n".join(lines)
    for gone in ("# handle", "packets 0", "bytes 0", "expires", "198.19.0.123", "198.18.201.5"):
        assert gone not in text
    assert 'chain input: ct state invalid counter drop comment "invalid packets"' in lines
    assert "set svc_hubs-to-appliance: element tcp . 8140" in lines  # one element a line
    assert lines[:2] == [
        "table inet plantgate",
        "table inet plantgate: comment \"PlantGate policy for site 'lab-plant'\"",
    ]


def test_runtime_elements_with_timeouts_are_not_drift() -> None:
    assert normalize(RUNTIME, DYNAMIC) == normalize(LOADED, DYNAMIC)
    drift = compare(LOADED, RUNTIME, DYNAMIC, revision=4)
    assert drift.clean
    assert drift.render() == "no drift: the live table matches revision 4\n"


def test_without_the_dynamic_sets_runtime_elements_would_count() -> None:
    drift = compare(LOADED, RUNTIME, [])
    assert not drift.clean
    assert {d.container for d in drift.added} == {
        "set gate_support_v4",
        "set ep_ntp-upstream_v4",
        "set ep_ntp-upstream_v6",
        "set ep_account-server_v4",
    }


def test_manual_rule_zone_element_and_permanent_grant_are_drift() -> None:
    drift = compare(LOADED, TAMPERED, DYNAMIC, revision=4)
    assert not drift.clean and not drift.missing
    assert drift.removed == ()
    assert drift.added == (
        Difference("set zone_hubs_v4", "element 198.18.11.0/24"),
        Difference("set gate_support_v4", "element 198.18.201.6 . 198.18.10.12"),
        Difference("chain input", "tcp dport 23 accept"),
    )
    text = drift.render()
    assert text.splitlines()[0] == (
        "drift: the live table differs from revision 4: 3 line(s) added, 0 removed"
    )
    assert "  chain input\n    + tcp dport 23 accept\n" in text


def test_a_changed_zone_element_is_drift() -> None:
    live = LOADED.replace("elements = { 198.18.10.0/24 }", "elements = { 198.18.12.0/24 }")
    drift = compare(LOADED, live, DYNAMIC)
    assert drift.removed == (Difference("set zone_hubs_v4", "element 198.18.10.0/24"),)
    assert drift.added == (Difference("set zone_hubs_v4", "element 198.18.12.0/24"),)


def test_a_deleted_table_is_drift() -> None:
    drift = compare(LOADED, None, DYNAMIC, revision=4)
    assert drift.missing and not drift.clean
    assert drift.render() == "drift: table inet plantgate is missing (revision 4 loaded it)\n"
    assert drift.to_json()["table_missing"] is True


def test_element_order_does_not_matter_but_rule_order_does() -> None:
    shuffled = LOADED.replace(
        "elements = { tcp . 443,\n\t\t\t     tcp . 8140,",
        "elements = { tcp . 8140,\n\t\t\t     tcp . 443,",
    )
    assert shuffled != LOADED
    assert compare(LOADED, shuffled, DYNAMIC).clean
    first = "\t\tct state established,related accept\n\t\tct state invalid counter drop"
    swapped = "\t\tct state invalid counter drop"
    reordered = LOADED.replace(
        first + ' comment "invalid packets"\n\t\tiif "lo" accept\n\t\ticmpv6',
        swapped + ' comment "invalid packets"\n\t\tct state established,related accept\n'
        '\t\tiif "lo" accept\n\t\ticmpv6',
        1,
    )
    assert reordered != LOADED
    drift = compare(LOADED, reordered, DYNAMIC)
    assert not drift.clean
    assert {d.container for d in drift.added + drift.removed} == {"chain input"}


def test_a_removed_chain_names_itself() -> None:
    start = LOADED.index("\tchain in_plant {")
    end = LOADED.index("}\n", start) + 2
    drift = compare(LOADED, LOADED[:start] + LOADED[end:], DYNAMIC)
    assert Difference("chain in_plant", "") in drift.removed
    assert "    − (the chain itself)" in drift.render()


def test_meter_elements_are_runtime_even_without_a_listed_timeout() -> None:
    empty = METER.replace("\t\telements = { 10.0.0.1, 10.0.0.2 timeout 5m }\n", "")
    assert compare(empty, METER, []).clean


def test_json_form() -> None:
    data = compare(LOADED, TAMPERED, DYNAMIC, revision=2).to_json()
    assert data["clean"] is False and data["revision"] == 2
    assert {"container": "chain input", "line": "tcp dport 23 accept"} in data["added"]
    assert data["removed"] == []


# -- the watcher ---------------------------------------------------------------------------


def test_events_only_on_change() -> None:
    clean = compare(LOADED, RUNTIME, DYNAMIC, revision=1)
    drifted = compare(LOADED, TAMPERED, DYNAMIC, revision=1)
    gone = compare(LOADED, None, DYNAMIC, revision=1)
    state, event = drift_event(None, clean)
    assert (state, event) == ("", None)
    state, event = drift_event(state, drifted)
    assert event is not None and event.kind == "policy.drift"
    assert event.fields["added"] == 3 and event.fields["table_missing"] is False
    assert "+ chain input: tcp dport 23 accept" in event.fields["differences"]
    assert drift_event(state, drifted) == (state, None)  # same drift: said once
    state, event = drift_event(state, gone)
    assert event is not None and event.fields["table_missing"] is True
    assert drift_event(state, None) == (state, None)  # nothing to compare: no news
    state, event = drift_event(state, clean)
    assert event is not None and event.kind == "policy.drift_cleared" and state == ""


class FakeTable:
    """Stands in for libnftables: returns whatever listing the test sets."""

    def __init__(self, listing: str | None) -> None:
        self.listing = listing
        self.calls = 0

    def table_listing(self) -> str | None:
        self.calls += 1
        return self.listing


def store_revision(state: Path, kernel_view: str | None) -> Revision:
    draft = Revision(0, "2026-01-01T00:00:00+00:00", "tester", "", "0" * 64, "lab.yaml")
    return RevisionStore(state).add(draft, LAB_TEXT, "", kernel_view)


def test_check_drift_reads_the_current_revision(tmp_path: Path) -> None:
    assert check_drift(tmp_path, FakeTable(RUNTIME)) is None  # no revision yet
    store_revision(tmp_path, None)
    assert check_drift(tmp_path, FakeTable(RUNTIME)) is None  # no kernel view recorded
    revision = store_revision(tmp_path, LOADED)
    drift = check_drift(tmp_path, FakeTable(RUNTIME))
    assert drift is not None and drift.clean and drift.revision == revision.number
    tampered = check_drift(tmp_path, FakeTable(TAMPERED))
    assert tampered is not None and len(tampered.added) == 3


def test_drift_watch_publishes_once_per_change(tmp_path: Path) -> None:
    store_revision(tmp_path, LOADED)
    table = FakeTable(RUNTIME)
    bus, seen = Bus(), list[Event]()
    bus.subscribe(seen.append)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drift_watch(tmp_path, table, bus, stop, interval=0.01))

        async def until(count: int) -> None:
            while table.calls < count:
                await asyncio.sleep(0.005)

        await until(3)
        table.listing = TAMPERED
        await until(table.calls + 4)
        table.listing = RUNTIME
        await until(table.calls + 3)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    kinds = [e.kind for e in seen]
    assert kinds == ["policy.drift", "policy.drift_cleared"]
