"""Revisions, commit-confirm, rollback and restore against a real kernel.

Each test gets a throwaway namespace and state directory and runs the `plantgate` CLI in it
as a user would. No plantgated runs here: the revert must happen without it.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab import netns
from tests.kernel.conftest import new_prefix

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "policies" / "lab.yaml"


class Appliance:
    """A namespace with a state directory, driven through the CLI."""

    def __init__(self, namespace: str, state: Path) -> None:
        self.namespace = namespace
        self.state = state

    def argv(self, *args: str) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            self.namespace,
            sys.executable,
            "-m",
            "gateway.cli",
            *args,
            "--state-dir",
            str(self.state),
        ]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=60, cwd=ROOT
        )

    def apply(self, policy: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        result = self.cli("policy", "apply", str(policy), "--no-resolve", *extra)
        assert result.returncode == 0, result.stderr
        return result

    def history(self) -> list[dict[str, object]]:
        revisions: list[dict[str, object]] = json.loads(
            self.cli("policy", "history", "--json").stdout
        )["revisions"]
        return revisions

    def ports_to_hubs(self) -> list[str]:
        """The live elements of the appliance->hubs service set, as 'tcp . 9100'."""
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                "nft",
                "-j",
                "list",
                "set",
                "inet",
                "plantgate",
                "svc_appliance-to-hubs",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = next(i["set"] for i in json.loads(out)["nftables"] if "set" in i)
        return sorted(" . ".join(str(v) for v in e["concat"]) for e in found.get("elem", []))


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    name = f"{new_prefix()}-rev"
    netns.create_namespace(name)
    try:
        yield Appliance(name, tmp_path / "state")
    finally:
        for pid in netns.pids_in_namespace(name):  # stray watchdogs of a failed test
            os.kill(pid, signal.SIGKILL)
        netns.delete_namespace(name)


def _variant(tmp_path: Path, name: str, ports: str) -> Path:
    path = tmp_path / name
    path.write_text(LAB.read_text().replace("allow: [hub-agent]", f"allow: [{ports}]"))
    return path


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


BASELINE = ["tcp . 9100"]
WIDER = ["tcp . 22", "tcp . 9100"]


def test_unconfirmed_apply_is_reverted_even_after_sigkill_of_the_applier(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.apply(LAB, "-m", "baseline")
    wider = _variant(tmp_path, "wider.yaml", "hub-agent, ssh")
    applier = subprocess.Popen(
        appliance.argv("policy", "apply", str(wider), "--no-resolve", "--confirm-within", "5"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,
    )
    pending_meta = appliance.state / "policy" / "revisions" / "000002" / "meta.json"
    assert _wait(pending_meta.exists, 30), "the pending revision was never recorded"
    os.killpg(applier.pid, signal.SIGKILL)  # the applier and anything in its process group
    applier.wait()
    assert appliance.ports_to_hubs() == WIDER

    assert _wait(lambda: len(appliance.history()) == 3, 12), "no automatic revert happened"
    pending, revert = appliance.history()[1:]
    assert pending["status"] == "reverted"
    assert (revert["kind"], revert["of"], revert["user"]) == ("revert", 1, "plantgate-watchdog")
    deadline = datetime.datetime.fromisoformat(str(pending["deadline"]))
    reverted_at = datetime.datetime.fromisoformat(str(revert["created"]))
    assert reverted_at - deadline < datetime.timedelta(seconds=2)
    assert appliance.ports_to_hubs() == BASELINE


# An applier that dies right after the kernel took its table, before it recorded anything:
# the steps of operations._load_as_revision up to the load, then SIGKILL of itself.
DIE_AFTER_LOAD = """
import datetime, os, signal, sys
from pathlib import Path
from gateway.events import utc_now
from gateway.policy.apply import apply_compiled
from gateway.policy.compile import compile_policy
from gateway.policy.load import load_file
from gateway.policy.nft import Nft
from gateway.policy.revisions import RevisionStore
from gateway.policy.watchdog import schedule_revert

state, policy = Path(sys.argv[1]), sys.argv[2]
loaded = load_file(policy)
store = RevisionStore(state)
with store.locked():
    deadline = utc_now() + datetime.timedelta(seconds=3)
    schedule_revert(state, store.next_number(), deadline)
    apply_compiled(compile_policy(loaded), Nft(), loaded.file, {})
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_applier_killed_between_load_and_record_is_still_reverted(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.apply(LAB, "-m", "baseline")
    wider = _variant(tmp_path, "wider.yaml", "hub-agent, ssh")
    argv = ["ip", "netns", "exec", appliance.namespace, sys.executable, "-c", DIE_AFTER_LOAD]
    died = subprocess.run(
        [*argv, str(appliance.state), str(wider)], capture_output=True, cwd=ROOT, timeout=60
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert appliance.ports_to_hubs() == WIDER  # loaded, and no revision says so
    assert len(appliance.history()) == 1

    assert _wait(lambda: len(appliance.history()) == 2, 15), "no automatic revert happened"
    revert = appliance.history()[1]
    assert (revert["kind"], revert["of"], revert["user"]) == ("revert", 1, "plantgate-watchdog")
    assert "interrupted" in str(revert["message"])
    assert appliance.ports_to_hubs() == BASELINE


REFUSED_WITH_CONFIRM = """
import sys
from pathlib import Path
from gateway.policy.apply import ApplyError
from gateway.policy.compile import compile_policy
from gateway.policy.load import load_file
from gateway.policy.nft import Nft
from gateway.policy.operations import _load_as_revision
from gateway.policy.revisions import RevisionStore
from tests.kernel.policy_lab import refused_by_the_kernel

loaded = load_file(sys.argv[2])
store = RevisionStore(Path(sys.argv[1]))
with store.locked():
    try:
        _load_as_revision(
            store, loaded, refused_by_the_kernel(compile_policy(loaded)), Nft(),
            user="alice", message="", kind="apply", confirm_within=2, resolve=False,
        )
    except ApplyError:
        sys.exit(3)
"""


def test_a_refused_confirm_apply_leaves_no_revert_behind(appliance: Appliance) -> None:
    """The watchdog, scheduled before the load, goes when the kernel refuses the table."""
    appliance.apply(LAB, "-m", "baseline")
    argv = ["ip", "netns", "exec", appliance.namespace, sys.executable, "-c"]
    refused = subprocess.run(
        [*argv, REFUSED_WITH_CONFIRM, str(appliance.state), str(LAB)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert refused.returncode == 3, refused.stderr
    assert _wait(lambda: netns.pids_in_namespace(appliance.namespace) == [], 1), "watchdog left"
    assert [r["kind"] for r in appliance.history()] == ["apply"]
    assert appliance.ports_to_hubs() == BASELINE


def test_confirm_in_time_keeps_the_revision(appliance: Appliance, tmp_path: Path) -> None:
    appliance.apply(LAB)
    # a window generous enough for two CLI calls on a loaded machine; we wait it out below
    appliance.apply(_variant(tmp_path, "wider.yaml", "hub-agent, ssh"), "--confirm-within", "15")
    status = appliance.cli("policy", "status")
    assert "PENDING: revision 2 reverts at" in status.stdout
    confirmed = appliance.cli("policy", "confirm")
    assert confirmed.returncode == 0, confirmed.stderr
    deadline = datetime.datetime.fromisoformat(str(appliance.history()[1]["deadline"]))
    now = datetime.datetime.now(datetime.UTC)
    time.sleep(max(0.0, (deadline - now).total_seconds()) + 1.5)
    assert [r["status"] for r in appliance.history()] == ["confirmed", "confirmed"]
    assert appliance.ports_to_hubs() == WIDER
    assert "PENDING" not in appliance.cli("policy", "status").stdout


def test_confirm_after_the_deadline_is_refused_and_the_revert_stands(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.apply(LAB)
    appliance.apply(_variant(tmp_path, "wider.yaml", "hub-agent, ssh"), "--confirm-within", "5")
    time.sleep(6.5)
    late = appliance.cli("policy", "confirm")
    assert late.returncode == 1
    assert "too late: the confirm window of revision 2 closed at" in late.stderr
    assert "Traceback" not in late.stderr
    assert appliance.ports_to_hubs() == BASELINE


def test_confirm_with_nothing_pending_is_refused(appliance: Appliance) -> None:
    appliance.apply(LAB)
    result = appliance.cli("policy", "confirm")
    assert result.returncode == 1
    assert result.stderr == "plantgate policy: error: nothing to confirm: no revision is pending\n"


def test_first_apply_cannot_be_a_commit_confirm(appliance: Appliance) -> None:
    result = appliance.cli("policy", "apply", str(LAB), "--no-resolve", "--confirm-within", "30")
    assert result.returncode == 1
    assert "nothing confirmed to go back to" in result.stderr
    assert appliance.history() == []


def test_rollback_to_an_older_revision_and_history(appliance: Appliance, tmp_path: Path) -> None:
    appliance.apply(LAB, "-m", "one")
    appliance.apply(_variant(tmp_path, "two.yaml", "hub-agent, ssh"), "-m", "two")
    appliance.apply(_variant(tmp_path, "three.yaml", "ssh"), "-m", "three")
    assert appliance.ports_to_hubs() == ["tcp . 22"]
    result = appliance.cli("policy", "rollback", "1")
    assert result.returncode == 0, result.stderr
    assert appliance.ports_to_hubs() == BASELINE
    history = appliance.history()
    assert [(r["number"], r["kind"], r["of"], r["message"]) for r in history] == [
        (1, "apply", None, "one"),
        (2, "apply", None, "two"),
        (3, "apply", None, "three"),
        (4, "rollback", 1, "rollback to revision 1"),
    ]
    assert appliance.cli("policy", "rollback").returncode == 0  # default: the previous one
    assert appliance.ports_to_hubs() == ["tcp . 22"]
    missing = appliance.cli("policy", "rollback", "42")
    assert missing.returncode == 1
    assert "no revision 42 (revisions: 1, 2, 3, 4, 5)" in missing.stderr


def test_restore_loads_the_last_confirmed_revision(appliance: Appliance, tmp_path: Path) -> None:
    appliance.apply(LAB)
    appliance.apply(_variant(tmp_path, "wider.yaml", "hub-agent, ssh"))
    subprocess.run(
        ["ip", "netns", "exec", appliance.namespace, "nft", "delete", "table", "inet", "plantgate"],
        check=True,
    )
    result = appliance.cli("policy", "restore")
    assert result.returncode == 0, result.stderr
    assert appliance.ports_to_hubs() == WIDER


def test_every_change_is_audited_and_the_chain_verifies(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.apply(LAB, "--user", "alice", "-m", "initial")
    appliance.apply(_variant(tmp_path, "wider.yaml", "hub-agent, ssh"), "--confirm-within", "30")
    assert appliance.cli("policy", "confirm").returncode == 0
    assert appliance.cli("policy", "rollback", "1").returncode == 0
    shown = appliance.cli("audit", "show", "--json").stdout.splitlines()
    entries = [json.loads(line) for line in shown]
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("alice", "policy.applied"),
        ("root", "policy.applied"),
        ("root", "policy.confirmed"),
        ("root", "policy.rolled_back"),
    ]
    verified = appliance.cli("audit", "verify")
    assert verified.returncode == 0
    assert "4 entries, hash chain verified" in verified.stdout


def test_status_reports_drift_and_repair_reloads_the_revision(appliance: Appliance) -> None:
    appliance.apply(LAB)
    clean = appliance.cli("policy", "status")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            appliance.namespace,
            "nft",
            "add",
            "rule",
            "inet",
            "plantgate",
            "input",
            "tcp",
            "dport",
            "23",
            "accept",
        ],
        check=True,
    )
    drifted = appliance.cli("policy", "status", "--json")
    assert drifted.returncode == 1
    report = json.loads(drifted.stdout)["drift"]
    assert report["clean"] is False
    assert "tcp dport 23 accept" in json.dumps(report)
    repaired = appliance.cli("policy", "status", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired: revision 1 loaded again" in repaired.stdout
    listing = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            appliance.namespace,
            "nft",
            "list",
            "chain",
            "inet",
            "plantgate",
            "input",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dport 23" not in listing
    actions = [
        json.loads(line)["action"]
        for line in appliance.cli("audit", "show", "--json").stdout.splitlines()
    ]
    assert actions[-1] == "policy.repaired"


def test_vpn_disable_survives_applies_and_restore_until_enabled(appliance: Appliance) -> None:
    from gateway.lab import netns as lab_netns
    from gateway.policy.operations import set_vpn_enabled

    def table() -> str:
        return subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                appliance.namespace,
                "nft",
                "list",
                "chain",
                "inet",
                "plantgate",
                "output",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    appliance.apply(LAB)
    assert "ep_support-concentrator_v4 counter" not in table()
    disabled = lab_netns.in_netns(appliance.namespace, set_vpn_enabled, appliance.state, False)
    assert disabled.revision.vpn_mode == "disabled"
    assert "ip daddr @ep_support-concentrator_v4 counter" in table()
    appliance.apply(LAB)  # a later apply keeps the VPN off
    assert appliance.history()[-1]["vpn_mode"] == "disabled"
    assert "ip daddr @ep_support-concentrator_v4 counter" in table()
    subprocess.run(
        ["ip", "netns", "exec", appliance.namespace, "nft", "delete", "table", "inet", "plantgate"],
        check=True,
    )
    assert appliance.cli("policy", "restore").returncode == 0  # as at boot
    assert "ip daddr @ep_support-concentrator_v4 counter" in table()
    lab_netns.in_netns(appliance.namespace, set_vpn_enabled, appliance.state, True)
    assert "ep_support-concentrator_v4 counter" not in table()
    actions = [
        json.loads(line)["action"]
        for line in appliance.cli("audit", "show", "--json").stdout.splitlines()
    ]
    assert "vpn.disabled" in actions and "vpn.enabled" in actions
