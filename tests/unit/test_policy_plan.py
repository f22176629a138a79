"""`policy plan`: a catalogue of policy edits and what the plan says about each.

Every risk flag is triggered by at least one edit (asserting its id and the YAML location that
causes it), and a list of harmless edits raises none. The baseline is the lab policy as the
current revision would hold it (file name `lab.yaml`); candidates are edited copies of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli import app
from gateway.policy import cli_plan
from gateway.policy.cli_plan import DriftCheck
from gateway.policy.drift import Difference, Drift
from gateway.policy.load import LoadedPolicy, load_text
from gateway.policy.plan import Plan, Where, plan
from gateway.policy.revisions import Revision, RevisionStore
from tests.unit.conftest import POLICIES

LAB = (Path(__file__).parent / "fixtures" / "plan-base.yaml").read_text(encoding="utf-8")
OLD = load_text(LAB, "lab.yaml")
NEW_FILE = "candidate.yaml"

PLANT_HOST = "198.18.20.10"
HUB_HOST = "198.18.10.11"

MANAGE_PAGE = """\
  - name: manage-page
    from: plant
    to: self
    allow: [https]
    comment: The Manage Page, from the plant's office network
"""
SUPPORT_SSH_GATE = """\
    allow: [ssh]
    gate: support
    log: true
"""


def edit(*pairs: tuple[str, str], text: str = LAB) -> str:
    """Replace each `old` (which must occur exactly once) with `new`."""
    for old, new in pairs:
        assert text.count(old) == 1, f"edit target not unique: {old!r}"
        text = text.replace(old, new)
    return text


def add_rule(body: str, text: str = LAB) -> str:
    return edit(("\ndefaults:\n", body + "\ndefaults:\n"), text=text)


def add_endpoint(body: str, text: str = LAB) -> str:
    return edit(("\nservices:\n", body + "\nservices:\n"), text=text)


def candidate(text: str) -> LoadedPolicy:
    return load_text(text, NEW_FILE)


def plan_of(text: str, caller: str | None = None, old: LoadedPolicy | None = OLD) -> Plan:
    return plan(old, candidate(text), caller=caller)


def line_of(text: str, needle: str, after: str = "") -> int:
    """1-based line of the first line containing `needle` (after one containing `after`)."""
    seen = not after
    for number, line in enumerate(text.splitlines(), start=1):
        seen = seen or after in line
        if seen and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


MANAGE_LINE = line_of(LAB, "- name: manage-page")


@dataclass(frozen=True)
class Case:
    """An edit, the flag it must raise, and where (needle in the new file, or the old)."""

    name: str
    text: str
    flag: str
    needle: str
    side: str = "new"
    caller: str | None = None
    after: str = ""  # the needle is the first one after a line with this

    def where(self) -> tuple[str, str, int]:
        """(side, file, line) of the cause; columns are checked elsewhere."""
        source = LAB if self.side == "old" else self.text
        file = "lab.yaml" if self.side == "old" else NEW_FILE
        return self.side, file, line_of(source, self.needle, self.after)


PLANT_ADMIN = "  plant-admin:\n    zone: plant\n    addresses: [198.18.20.10]\n"
HUB_PRINTER = "  hub-printer:\n    zone: hubs\n    addresses: [198.18.10.50]\n"

RISKY = [
    Case(
        "manage-page removed",
        edit((MANAGE_PAGE, "")),
        "removes-management-path",
        "- name: manage-page",
        side="old",
    ),
    Case(
        "manage-page behind a gate",
        edit(
            (
                "    allow: [https]\n    comment: The Manage",
                "    allow: [https]\n    gate: support\n    comment: The Manage",
            )
        ),
        "removes-management-path",
        "gate: support",
        after="- name: manage-page",
    ),
    Case(
        "https moved to another port",
        edit(("https: {tcp: [443]}", "https: {tcp: [4443]}")),
        "removes-management-path",
        "https: {tcp: [4443]}",
    ),
    Case(
        "plant network renumbered",
        edit(("networks: [198.18.20.0/24]", "networks: [198.18.21.0/24]")),
        "removes-management-path",
        "  plant:",
    ),
    Case(
        "plant interface moved to another device",
        edit(("  plant-lan: wan0", "  plant-lan: wan1")),
        "removes-management-path",
        "  plant-lan: wan1",
    ),
    Case(
        "manage-page narrowed to one workstation",
        add_endpoint(
            PLANT_ADMIN,
            edit((MANAGE_PAGE, MANAGE_PAGE.replace("from: plant", "from: plant-admin"))),
        ),
        "removes-management-path",
        "from: plant-admin",
    ),
    Case(
        "new rule from the plant to the hubs",
        add_rule("  - name: plant-print\n    from: plant\n    to: hubs\n    allow: [hub-agent]\n"),
        "opens-hubs",
        "- name: plant-print",
    ),
    Case(
        "manage-page also to the hubs",
        edit((MANAGE_PAGE, MANAGE_PAGE.replace("to: self", "to: [self, hubs]"))),
        "opens-hubs",
        "to: [self, hubs]",
        after="- name: manage-page",
    ),
    Case(
        "an internet endpoint to the hubs",
        add_rule(
            "  - name: resolver-to-hubs\n    from: lab-resolver\n    to: hubs\n    allow: [dns]\n"
        ),
        "opens-hubs",
        "- name: resolver-to-hubs",
    ),
    Case(
        "the internet to one hub",
        add_endpoint(
            HUB_PRINTER,
            add_rule(
                "  - name: print-in\n    from: internet\n    to: hub-printer\n"
                "    allow: [hub-agent]\n"
            ),
        ),
        "opens-hubs",
        "- name: print-in",
    ),
    Case(
        "any to the hubs",
        add_rule("  - name: everyone\n    from: any\n    to: hubs\n    allow: [https]\n"),
        "opens-hubs",
        "- name: everyone",
    ),
    Case(
        "support-ssh without its gate",
        edit((SUPPORT_SSH_GATE, "    allow: [ssh]\n    log: true\n")),
        "support-outside-gate",
        "- name: support-ssh",
    ),
    Case(
        "new ungated rule from support",
        add_rule("  - name: support-web\n    from: support\n    to: self\n    allow: [https]\n"),
        "support-outside-gate",
        "- name: support-web",
    ),
    Case(
        "any to the appliance reaches support too",
        add_rule("  - name: web-for-all\n    from: any\n    to: self\n    allow: [https]\n"),
        "support-outside-gate",
        "- name: web-for-all",
    ),
    Case(
        "drop logging off",
        edit(("  log_burst: 20\n", "  log_burst: 20\n  log_drops: false\n")),
        "logging-off",
        "log_drops: false",
    ),
    Case(
        "support-ssh no longer logs",
        edit((SUPPORT_SSH_GATE, "    allow: [ssh]\n    gate: support\n")),
        "logging-off",
        "- name: support-ssh",
    ),
    Case(
        "support-ssh renamed and unlogged",
        edit(
            ("- name: support-ssh", "- name: remote-help"),
            (SUPPORT_SSH_GATE, "    allow: [ssh]\n    gate: support\n    log: false\n"),
        ),
        "logging-off",
        "- name: support-ssh",
        side="old",
    ),
    Case(
        "manage-page from any zone",
        edit((MANAGE_PAGE, MANAGE_PAGE.replace("from: plant", "from: [plant, any]"))),
        "widens-to-any",
        "from: [plant, any]",
    ),
    Case(
        "new rule to any zone",
        add_rule("  - name: dns-anywhere\n    from: self\n    to: any\n    allow: [dns]\n"),
        "widens-to-any",
        "to: any",
    ),
    Case(
        "caller in the plant loses the Manage Page",
        edit((MANAGE_PAGE, "")),
        "lockout-risk",
        "- name: manage-page",
        side="old",
        caller=PLANT_HOST,
    ),
]


@pytest.mark.parametrize("case", RISKY, ids=[c.name for c in RISKY])
def test_risky_edit_raises_its_flag_at_the_cause(case: Case) -> None:
    result = plan_of(case.text, caller=case.caller)
    found = [(f.id, (f.where.side, f.where.file, f.where.line)) for f in result.flags]
    assert (case.flag, case.where()) in found, result.render()


def test_every_flag_id_is_in_the_catalogue() -> None:
    ids = {c.flag for c in RISKY}
    assert ids == {
        "removes-management-path",
        "opens-hubs",
        "support-outside-gate",
        "logging-off",
        "widens-to-any",
        "lockout-risk",
    }


HARMLESS = {
    "the same file": LAB,
    "a rule comment": edit(("comment: Raw print jobs and the hub agent", "comment: Print jobs")),
    "a zone description": edit(
        ("description: Shop-floor hubs; the appliance is their only peer", "description: Hubs")
    ),
    "YAML comments": edit(("# endpoint the appliance asks", "# the resolver we ask")),
    "rules reordered": edit((MANAGE_PAGE, "")).replace("rules:\n", "rules:\n" + MANAGE_PAGE, 1),
    "a rule renamed": edit(("- name: manage-page", "- name: plant-manage-page")),
    "a zone renamed": edit(
        ("  plant:\n    kind: plant", "  office:\n    kind: plant"),
        ("from: plant\n", "from: office\n"),
    ),
    "a hub address added": edit(
        ("networks: [198.18.10.0/24]", "networks: [198.18.10.0/24, 198.18.11.7/32]")
    ),
    "a port added to a hubs->self service": edit(
        ("hub-api: {tcp: [8443]}", "hub-api: {tcp: [8443, 8444]}")
    ),
    "an unused service added": edit(
        ("  ssh: {tcp: [22]}", "  ssh: {tcp: [22]}\n  ldap: {tcp: [389]}")
    ),
    "the drop log rate": edit(("log_rate: 10/second", "log_rate: 20/second")),
}


@pytest.mark.parametrize("text", HARMLESS.values(), ids=list(HARMLESS))
def test_harmless_edit_raises_no_flag(text: str) -> None:
    result = plan_of(text, caller=PLANT_HOST)
    assert result.flags == (), result.render()


def test_adding_a_hub_is_harmless_even_where_the_plant_already_reaches_the_hubs() -> None:
    base = add_rule(
        "  - name: plant-print\n    from: plant\n    to: hubs\n    allow: [hub-agent]\n"
    )
    old = load_text(base, "lab.yaml")
    grown = edit(
        ("networks: [198.18.10.0/24]", "networks: [198.18.10.0/24, 198.18.11.7/32]"), text=base
    )
    assert plan_of(grown, old=old).flags == ()
    wider = edit(
        ("    allow: [hub-agent]\n\ndefaults", "    allow: [hub-agent, https]\n\ndefaults"),
        text=base,
    )
    assert [f.id for f in plan_of(wider, old=old).flags] == ["opens-hubs"]


def test_lockout_only_for_an_address_that_loses_its_way_in() -> None:
    text = edit((MANAGE_PAGE, ""))
    assert "lockout-risk" not in {f.id for f in plan_of(text, caller=HUB_HOST).flags}
    assert "lockout-risk" not in {f.id for f in plan_of(text).flags}
    assert "lockout-risk" not in {f.id for f in plan_of(text, caller="not-an-address").flags}


def test_lockout_checks_ssh_as_well() -> None:
    base = add_rule("  - name: plant-ssh\n    from: plant\n    to: self\n    allow: [ssh]\n")
    old = load_text(base, "lab.yaml")
    flags = plan_of(LAB, caller=PLANT_HOST, old=old).flags
    assert [f.id for f in flags] == ["lockout-risk"]
    assert "tcp 22" in flags[0].message
    assert flags[0].where == Where("old", "lab.yaml", line_of(base, "- name: plant-ssh"), 5)


def test_management_path_is_kept_while_any_management_port_is() -> None:
    moved = edit((MANAGE_PAGE, MANAGE_PAGE.replace("allow: [https]", "allow: [ssh]")))
    assert "removes-management-path" not in {f.id for f in plan_of(moved).flags}


def test_flag_sentences_name_what_and_where() -> None:
    result = plan_of(edit((MANAGE_PAGE, "")))
    (flag,) = [f for f in result.flags if f.id == "removes-management-path"]
    assert flag.message.startswith(
        "zone 'plant' could reach the appliance on tcp 443 through rule 'manage-page'"
    )
    opened = plan_of(
        add_rule("  - name: plant-print\n    from: plant\n    to: hubs\n    allow: [hub-agent]\n")
    )
    assert [f.message for f in opened.flags] == [
        "zone 'plant' can now reach zone 'hubs' on tcp 9100 through rule 'plant-print'"
    ]


def test_partial_sources_are_described_with_addresses() -> None:
    text = edit(("networks: [198.18.20.0/24]", "networks: [198.18.20.0/25]"))
    (flag,) = plan_of(text).flags
    assert "part of zone 'plant' (198.18.20.128/25 on wan0)" in flag.message


# -- first apply ---------------------------------------------------------------------------


def test_first_apply_lists_everything_as_added() -> None:
    result = plan_of(LAB, old=None)
    assert {c.change for c in result.rules} == {"added"}
    assert len(result.rules) == len(OLD.policy.rules)
    assert result.flags == ()
    assert result.to_json()["old"] is None


def test_first_apply_flags_what_an_empty_kernel_allowed_and_loses() -> None:
    no_manage = edit((MANAGE_PAGE, ""))
    ids = [f.id for f in plan_of(no_manage, old=None, caller=PLANT_HOST).flags]
    assert ids == ["lockout-risk", "removes-management-path"]
    opened = add_rule(
        "  - name: plant-print\n    from: plant\n    to: hubs\n    allow: [hub-agent]\n"
    )
    assert [f.id for f in plan_of(opened, old=None).flags] == ["opens-hubs"]


# -- rule and definition diffs -------------------------------------------------------------


def test_rule_changes_with_fields_and_locations() -> None:
    text = add_rule(
        "  - name: plant-print\n    from: plant\n    to: hubs\n    allow: [hub-agent]\n",
        edit(
            (MANAGE_PAGE, ""),
            (SUPPORT_SSH_GATE, "    allow: [ssh]\n    gate: support\n"),
            ("- name: account-sync", "- name: sync-accounts"),
        ),
    )
    result = plan_of(text)
    changes = {c.name: c for c in result.rules}
    assert changes["plant-print"].change == "added"
    assert changes["plant-print"].summary == "from plant to hubs, allow hub-agent"
    assert changes["manage-page"].change == "removed"
    assert changes["manage-page"].where == Where("old", "lab.yaml", MANAGE_LINE, 5)
    assert changes["support-ssh"].change == "changed"
    assert [(f.field, f.old, f.new) for f in changes["support-ssh"].fields] == [
        ("log", "true", "false")
    ]
    assert changes["sync-accounts"].change == "renamed"
    assert changes["sync-accounts"].old_name == "account-sync"
    assert [c.change for c in result.rules] == ["changed", "renamed", "added", "removed"]


def test_rules_show_the_changed_definitions_they_use() -> None:
    text = edit(("networks: [198.18.10.0/24]", "networks: [198.18.10.0/24, 198.18.11.7/32]"))
    result = plan_of(text)
    assert {c.name: c.via for c in result.rules} == {
        "hubs-to-appliance": ("zone hubs",),
        "appliance-to-hubs": ("zone hubs",),
        "time-serve": ("zone hubs",),
        "support-ssh": ("zone hubs",),
    }
    (zone,) = result.definitions
    assert (zone.section, zone.name, zone.change) == ("zones", "hubs", "changed")
    assert zone.elements[0].added == ("198.18.11.7",)


def test_large_set_changes_are_counted_and_sampled() -> None:
    added = [f"10.{i // 250}.{i % 250}.1/32" for i in range(9_850)]
    removed = [f"198.18.20.{i}/32" for i in range(1, 13)]
    old_text = edit(
        ("networks: [198.18.10.0/24]", f"networks: [198.18.10.0/24, {', '.join(removed)}]")
    )
    new_text = edit(
        ("networks: [198.18.10.0/24]", f"networks: [198.18.10.0/24, {', '.join(added)}]")
    )
    old_text = old_text.replace("networks: [198.18.20.0/24]", "networks: [198.18.30.0/24]")
    new_text = new_text.replace("networks: [198.18.20.0/24]", "networks: [198.18.30.0/24]")
    result = plan_of(new_text, old=load_text(old_text, "lab.yaml"))
    (zone,) = [c for c in result.definitions if c.name == "hubs"]
    element = zone.elements[0]
    assert (len(element.added), len(element.removed)) == (9_850, 12)
    assert element.counts() == "+9,850 networks, −12 (showing 10)"
    text = result.render()
    assert "+9,850 networks, −12 (showing 10)" in text
    assert text.count("\n        + 10.") == 10
    assert text.count("\n        − 198.18.20.") == 10
    data = result.to_json()["definitions"][0]["elements"][0]
    assert (data["added_count"], data["removed_count"], len(data["added"])) == (9_850, 12, 9_850)
    assert data["added"][:2] == ["10.0.0.1", "10.0.1.1"]  # address order, not text order


def test_definition_changes_of_every_kind() -> None:
    text = edit(
        ("  plant-lan: wan0", "  plant-lan: wan1"),
        ("dns: {udp: [53], tcp: [53]}", "dns: {udp: [53]}"),
        (
            "  lab-resolver:\n    zone: internet\n    addresses: [198.19.0.53]\n",
            "  lab-resolver:\n    zone: internet\n    addresses: [198.19.0.54]\n",
        ),
        ("site:\n  name: lab-plant", "site:\n  name: lab-plant-2"),
        ("log_burst: 20", "log_burst: 40"),
    )
    result = plan_of(text)
    got = {(c.section, c.name): c for c in result.definitions}
    assert got[("interfaces", "plant-lan")].fields[0].new == "wan1"
    assert got[("services", "dns")].elements[0].removed == ("tcp 53",)
    assert got[("endpoints", "lab-resolver")].elements[0].added == ("198.19.0.54",)
    assert got[("site", "site")].fields[0].new == "lab-plant-2"
    assert [(f.field, f.old, f.new) for f in got[("defaults", "defaults")].fields] == [
        ("log_burst", "20", "40")
    ]


def test_no_change_says_so() -> None:
    assert plan_of(LAB).render().endswith("No changes: this is the policy that is loaded.\n")
    commented = edit(("comment: Raw print jobs and the hub agent", "comment: Print jobs"))
    assert "differs only in comments" in plan_of(commented).render()
    assert not plan_of(commented).changed


# -- output --------------------------------------------------------------------------------


def test_text_puts_flags_first() -> None:
    text = plan_of(edit((MANAGE_PAGE, ""))).render()
    lines = text.splitlines()
    assert lines[0] == "RISKS (1)"
    assert lines[1] == f"  !! removes-management-path  was lab.yaml:{MANAGE_LINE}"
    assert "RULES (1 removed)" in lines
    assert f"  − rule manage-page  was lab.yaml:{MANAGE_LINE}" in lines


def test_json_shape() -> None:
    data = plan_of(edit((SUPPORT_SSH_GATE, "    allow: [ssh]\n    log: true\n"))).to_json()
    assert set(data) == {"old", "new", "changed", "flags", "rules", "definitions", "summary"}
    assert data["old"] == {"file": "lab.yaml"} and data["new"] == {"file": NEW_FILE}
    flag = data["flags"][0]
    assert flag["id"] == "support-outside-gate"
    line = line_of(LAB, "- name: support-ssh")
    assert flag["where"] == {"side": "new", "file": NEW_FILE, "line": line, "column": 5}
    rule = data["rules"][0]
    assert rule["change"] == "changed" and rule["name"] == "support-ssh"
    assert rule["fields"] == [{"field": "gate", "old": "support", "new": "none"}]
    assert data["summary"]["flags"] == 1 and data["summary"]["rules_changed"] == 1
    json.dumps(data)


def test_output_is_deterministic() -> None:
    text = add_rule(
        "  - name: everyone\n    from: any\n    to: [self, hubs]\n    allow: [https, ssh]\n",
        edit((MANAGE_PAGE, ""), ("log_burst: 20", "log_burst: 20\n  log_drops: false")),
    )
    first, second = plan_of(text, caller=PLANT_HOST), plan_of(text, caller=PLANT_HOST)
    assert first.render() == second.render()
    assert json.dumps(first.to_json()) == json.dumps(second.to_json())
    ids = [f.id for f in first.flags]
    assert ids == sorted(ids, key=ids.index)  # stable order: by location, then id
    assert {"opens-hubs", "support-outside-gate", "widens-to-any", "logging-off"} <= set(ids)


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> list[DriftCheck]:
    """The live-table check returns what the test puts first in the list (default: none)."""
    checks: list[DriftCheck] = []
    monkeypatch.setattr(
        cli_plan, "live_drift", lambda state, policy=None: checks[0] if checks else DriftCheck(None)
    )
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    return checks


def stored(state: Path, text: str = LAB) -> Revision:
    draft = Revision(0, "2026-01-01T00:00:00+00:00", "alice", "", "0" * 64, "lab.yaml")
    return RevisionStore(state).add(draft, text, "", None)


def run_plan(*args: str) -> Result:
    return CliRunner().invoke(app, ["policy", "plan", *args])


def test_cli_invalid_file_exits_2_with_located_errors(
    tmp_path: Path, no_kernel: list[DriftCheck]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB.replace("allow: [hub-agent]", "allow: [hub-agnet]"))
    result = run_plan(str(bad), "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    line = line_of(LAB, "allow: [hub-agent]")
    assert result.stderr.startswith(f"{bad}:{line}:13: error: undefined service 'hub-agnet'")
    assert result.stdout == ""


def test_cli_against_nothing_applied(tmp_path: Path, no_kernel: list[DriftCheck]) -> None:
    result = run_plan(str(POLICIES / "lab.yaml"), "--state-dir", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].endswith(
        "lab.yaml against nothing applied yet (no revision)"
    )
    assert "RULES (10 added)" in result.stdout  # 6 written, 4 implied (time, support_vpn)


def test_cli_against_the_current_revision(tmp_path: Path, no_kernel: list[DriftCheck]) -> None:
    stored(tmp_path)
    candidate_file = tmp_path / "candidate.yaml"
    candidate_file.write_text(edit((MANAGE_PAGE, "")))
    result = run_plan(str(candidate_file), "--state-dir", str(tmp_path), "--caller", PLANT_HOST)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"plan: {candidate_file} against revision 1 (lab.yaml, applied "
        "2026-01-01T00:00:00+00:00 by alice)"
    )
    assert lines[2] == "RISKS (2)"
    assert f"  !! lockout-risk  was lab.yaml:{MANAGE_LINE}" in lines


def test_cli_caller_from_ssh_connection(
    tmp_path: Path, no_kernel: list[DriftCheck], monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(tmp_path)
    candidate_file = tmp_path / "candidate.yaml"
    candidate_file.write_text(edit((MANAGE_PAGE, "")))
    monkeypatch.setenv("SSH_CONNECTION", f"{PLANT_HOST} 50022 198.18.20.1 22")
    result = run_plan(str(candidate_file), "--state-dir", str(tmp_path))
    assert "lockout-risk" in result.stdout
    assert cli_plan.session_address({}) is None
    assert (
        cli_plan.session_address({"SSH_CONNECTION": "2001:db8::5 1 2001:db8::1 22"})
        == "2001:db8::5"
    )


def test_cli_json(tmp_path: Path, no_kernel: list[DriftCheck]) -> None:
    stored(tmp_path)
    candidate_file = tmp_path / "candidate.yaml"
    candidate_file.write_text(edit((SUPPORT_SSH_GATE, "    allow: [ssh]\n    log: true\n")))
    result = run_plan(str(candidate_file), "--state-dir", str(tmp_path), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["baseline"] == {
        "revision": 1,
        "file": "lab.yaml",
        "drift": None,
        "drift_error": None,
    }
    assert [f["id"] for f in data["flags"]] == ["support-outside-gate"]


def test_cli_says_first_when_the_live_table_drifted(
    tmp_path: Path, no_kernel: list[DriftCheck]
) -> None:
    stored(tmp_path)
    drift = Drift(1, missing=False, added=(Difference("chain input", "tcp dport 23 accept"),))
    no_kernel.append(DriftCheck(drift))
    same = tmp_path / "lab.yaml"
    same.write_text(LAB)
    result = run_plan(str(same), "--state-dir", str(tmp_path))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1].startswith("WARNING: the live table has drifted")
    assert "      + tcp dport 23 accept" in lines
    assert lines[-1] == "No changes: this is the policy that is loaded."
    data = json.loads(run_plan(str(same), "--state-dir", str(tmp_path), "--json").stdout)
    assert data["baseline"]["drift"]["added"] == [
        {"container": "chain input", "line": "tcp dport 23 accept"}
    ]


def test_cli_notes_an_unchecked_live_table(tmp_path: Path, no_kernel: list[DriftCheck]) -> None:
    no_kernel.append(DriftCheck(None, "live table not checked: Operation not permitted"))
    result = run_plan(str(POLICIES / "lab.yaml"), "--state-dir", str(tmp_path))
    assert result.stdout.splitlines()[1] == "note: live table not checked: Operation not permitted"


def test_cli_unreadable_revision_exits_1(tmp_path: Path, no_kernel: list[DriftCheck]) -> None:
    stored(tmp_path, LAB.replace("version: 1", "version: 2"))
    result = run_plan(str(POLICIES / "lab.yaml"), "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "cannot read the current revision" in result.stderr
