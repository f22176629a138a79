"""Drift against a real kernel: a revision stored the way apply stores it, then hands on the table.

Each test gets its own throwaway namespace (no lab) and state directory. Everything that
touches nftables runs inside that namespace: libnftables contexts are created in a thread
that has entered it (a context keeps the namespace it was created in), and `nft` commands run
through `ip netns exec`. The namespace is removed in `finally`, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.events import Bus, Event
from gateway.lab import netns
from gateway.policy.apply import apply_compiled
from gateway.policy.compile import compile_policy
from gateway.policy.drift import Difference, Drift, check_drift, drift_watch
from gateway.policy.load import load_file
from gateway.policy.nft import Nft
from gateway.policy.revisions import Revision, RevisionStore
from tests.kernel.conftest import new_prefix

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "policies" / "lab.yaml"


class Space:
    """A throwaway namespace and the libnftables context that lives in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nft: Nft = netns.in_netns(name, self._inside)
        self.listings = 0

    def _inside(self) -> Nft:
        here = os.stat("/proc/thread-self/ns/net")
        there = netns.namespace_path(self.name).stat()
        assert (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino), "not in the namespace"
        return Nft()

    def table_listing(self) -> str | None:
        """What drift reads; counted, so tests can wait for the watcher's rounds."""
        self.listings += 1
        return netns.in_netns(self.name, self.nft.table_listing)

    def nft_cmd(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, "nft", *args], check=True, timeout=30)


@pytest.fixture
def space() -> Iterator[Space]:
    name = f"{new_prefix()}-drift"
    netns.create_namespace(name)
    try:
        yield Space(name)
    finally:
        netns.delete_namespace(name)


def store_applied(space: Space, state: Path) -> Revision:
    """Load the lab policy and record it as a revision, as `policy apply` does."""
    loaded = load_file(LAB)
    compiled = compile_policy(loaded)
    netns.in_netns(space.name, apply_compiled, compiled, space.nft, loaded.file)
    draft = Revision(0, "2026-01-01T00:00:00+00:00", "tester", "", "0" * 64, loaded.file)
    return RevisionStore(state).add(draft, loaded.source.text, compiled.text, space.table_listing())


def drift_of(space: Space, state: Path) -> Drift:
    drift = check_drift(state, space)
    assert drift is not None
    return drift


def test_drift_after_manual_changes(space: Space, tmp_path: Path) -> None:
    revision = store_applied(space, tmp_path)
    assert drift_of(space, tmp_path).clean

    space.nft_cmd(
        "add", "element", "inet", "plantgate", "gate_support_v4",
        "{ 198.18.201.5 . 198.18.10.11 . tcp . 22 timeout 10m }",
    )  # fmt: skip
    space.nft_cmd(
        "add", "element", "inet", "plantgate", "ep_ntp-upstream_v4", "{ 198.19.0.123 timeout 1h }"
    )
    assert drift_of(space, tmp_path).clean, "run-time elements are not drift"

    space.nft_cmd("add", "rule", "inet", "plantgate", "input", "tcp", "dport", "23", "accept")
    drift = drift_of(space, tmp_path)
    assert not drift.clean and drift.revision == revision.number
    assert drift.added == (Difference("chain input", "tcp dport 23 accept"),)
    assert drift.removed == ()
    assert "  chain input\n    + tcp dport 23 accept\n" in drift.render()

    space.nft_cmd("delete", "table", "inet", "plantgate")
    gone = drift_of(space, tmp_path)
    assert gone.missing
    assert gone.summary().startswith("drift: table inet plantgate is missing")


def test_drift_watch_publishes_one_event_per_change(space: Space, tmp_path: Path) -> None:
    store_applied(space, tmp_path)
    bus, events = Bus(), list[Event]()
    bus.subscribe(events.append)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drift_watch(tmp_path, space, bus, stop, interval=0.05))

        async def rounds(count: int) -> None:
            target = space.listings + count
            deadline = time.monotonic() + 20
            while space.listings < target and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert space.listings >= target, "the watcher stopped checking"

        try:
            await rounds(3)
            assert events == []
            space.nft_cmd(
                "add", "rule", "inet", "plantgate", "input", "tcp", "dport", "23", "accept"
            )
            await rounds(5)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    kinds = [e.kind for e in events]
    assert kinds == ["policy.drift"]
    assert events[0].fields["differences"] == ["+ chain input: tcp dport 23 accept"]
    assert events[0].source == "plantgated"


def test_plan_cli_warns_about_drift_before_the_plan(space: Space, tmp_path: Path) -> None:
    """End to end: `policy apply`, a hand-made rule, then `policy plan` in the namespace."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", space.name, sys.executable, "-m", "gateway.cli", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)

    state = ("--state-dir", str(tmp_path))
    applied = cli("policy", "apply", str(LAB), "--no-resolve", *state)
    assert applied.returncode == 0, applied.stderr
    clean = cli("policy", "plan", str(LAB), *state)
    assert clean.returncode == 0, clean.stderr
    assert "WARNING" not in clean.stdout and "note:" not in clean.stdout
    assert clean.stdout.endswith("No changes: this is the policy that is loaded.\n")

    space.nft_cmd("add", "rule", "inet", "plantgate", "input", "tcp", "dport", "23", "accept")
    drifted = cli("policy", "plan", str(LAB), *state)
    assert drifted.returncode == 0, drifted.stderr
    lines = drifted.stdout.splitlines()
    assert lines[1].startswith("WARNING: the live table has drifted")
    assert "      + tcp dport 23 accept" in lines
