"""`plantgate policy test --kernel`: the model checked against the real ruleset, real packets.

Each test builds its own throwaway namespaces under a fresh prefix (`t` + 5 characters) and
checks that none is left behind. The edge-case policy below exists to catch places where
`explain` and the compiler part ways: `any`, zone-less endpoints, a zone bound to no interface,
a zone with networks and no rules, catch-alls, port ranges, gates, a per-source rate limit and
an interface with no zone, under the default and the relaxed base chains.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.lab import netns
from gateway.policy import policytest
from gateway.policy.explain import Context, Explainer, Explanation, Flow
from gateway.policy.load import load_file
from tests.kernel.conftest import new_prefix

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "policies" / "lab.yaml"
LAB_TESTS = ROOT / "policies" / "tests" / "lab.yaml"

EDGE_POLICY = """\
version: 1
site: {name: edge}
interfaces: {side-a: veth-a, side-b: veth-b, side-c: veth-c}
zones:
  alpha: {interfaces: [side-a], networks: [198.18.1.0/24]}
  alpha-rest: {interfaces: [side-a]}
  beta: {interfaces: [side-b], networks: [198.18.2.0/24]}
  quiet: {interfaces: [side-b], networks: [198.18.3.0/24]}
  beta-rest: {interfaces: [side-b]}
  floating: {networks: [198.18.9.0/24]}
endpoints:
  pinned: {addresses: [198.18.2.50]}
  beta-host: {zone: beta, addresses: [198.18.2.60]}
services:
  web: {tcp: [80, "8000-8010"]}
  ping: {icmp: [echo-request]}
  dns: {udp: [53]}
gates:
  g: {}
rules:
  - {name: alpha-web, from: alpha, to: beta, allow: [web]}
  - {name: to-pinned, from: any, to: pinned, allow: [dns]}
  - {name: rest-ping, from: beta-rest, to: self, allow: [ping]}
  - {name: floating-web, from: floating, to: self, allow: [web]}
  - {name: out-rest, from: self, to: alpha-rest, allow: [dns]}
  - {name: alpha-beta-host, from: alpha, to: beta-host, allow: [dns]}
  - name: any-dns
    from: any
    to: self
    allow: [dns]
    rate_limit: {rate: 100/second, per_source: true}
  - {name: gated-dns, from: alpha-rest, to: beta, allow: [dns], gate: g}
"""
RELAXED = "defaults:\n  reverse_path_filter: false\n  strict_destination: false\n  input: reject\n"

# `expect` here is what the model says under the default base chains; the tests compare the
# model with the kernel, so they hold under both variants.
EDGE_TESTS = """\
appliance:
  veth-a: 198.18.1.1/24
  veth-b: 198.18.2.1/24
  veth-c: 198.18.200.1/24
hosts:
  a1: 198.18.1.10
  arest: 198.18.5.5
  b1: 198.18.2.20
  pinned: 198.18.2.50
  bhost: 198.18.2.60
  quiet1: 198.18.3.3
  brest: 198.18.7.7
  float: 198.18.9.9
  c1: 198.18.200.9
expect:
  - {from: a1, to: b1, tcp: 80, expect: accept}
  - {from: a1, to: b1, tcp: 8005, expect: accept}
  - {from: a1, to: b1, tcp: 8011, expect: drop}
  - {from: a1, to: b1, udp: 53, expect: drop}
  - {from: a1, to: pinned, udp: 53, expect: accept}
  - {from: arest, to: pinned, iif: veth-a, udp: 53, expect: accept}
  - {from: c1, to: pinned, udp: 53, expect: accept}
  - {from: quiet1, to: gw, icmp: echo-request, expect: drop}
  - {from: brest, to: gw, iif: veth-b, icmp: echo-request, expect: accept}
  - {from: float, to: gw, iif: veth-a, tcp: 8000, expect: accept}
  - {from: gw, to: arest, oif: veth-a, udp: 53, expect: accept}
  - {from: gw, to: a1, udp: 53, expect: drop}
  - {from: a1, to: bhost, udp: 53, expect: accept}
  - {from: a1, to: gw, udp: 53, expect: accept}
  - {from: c1, to: gw, udp: 53, expect: accept}
  - {from: c1, to: gw, tcp: 80, expect: drop}
  - {from: quiet1, to: gw, udp: 53, expect: accept}
  - {from: arest, to: b1, iif: veth-a, udp: 53, gate: open, expect: accept}
  - {from: arest, to: b1, iif: veth-a, udp: 53, expect: drop}
  - {from: a1, to: b1, udp: 53, gate: open, expect: drop}
  - {from: b1, to: a1, tcp: 80, expect: drop}
  - {from: brest, to: arest, iif: veth-b, oif: veth-a, udp: 53, expect: drop}
  - {from: a1, to: gw@veth-b, udp: 53, expect: drop}
  - {from: a1, to: gw, iif: veth-b, icmp: echo-request, expect: drop}
  - {from: b1, to: gw, iif: veth-a, tcp: 80, expect: drop}
"""


def _namespaces(prefix: str) -> list[str]:
    return [n for n in netns.list_all_namespaces() if n.startswith(f"{prefix}-")]


def _root_ruleset() -> str:
    """The machine's own ruleset, read only: nothing here may change it."""
    return subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, timeout=30
    ).stdout


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway.cli", "policy", "test", *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def _flipped(tmp_path: Path) -> tuple[Path, int]:
    lines = LAB_TESTS.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "note: Manage Page}" in line)
    lines[index] = lines[index].replace("expect: accept", "expect: drop")
    path = tmp_path / "lab.yaml"
    path.write_text("".join(lines))
    return path, index + 1


def test_shipped_lab_tests_pass_in_the_kernel() -> None:
    prefix, before = new_prefix(), _root_ruleset()
    done = _cli(str(LAB), str(LAB_TESTS), "--kernel", "--prefix", prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.splitlines()[-1]
    assert "99 passed, 0 failed" in summary
    assert "kernel: 99 agree with the model, 0 disagree, 0 not probed, 0 errors" in summary
    assert _namespaces(prefix) == []
    assert _root_ruleset() == before


def test_a_wrong_expectation_fails_with_a_clear_report(tmp_path: Path) -> None:
    path, line = _flipped(tmp_path)
    prefix = new_prefix()
    done = _cli(str(LAB), str(path), "--kernel", "--prefix", prefix)
    assert done.returncode == 1
    assert (
        f"{path}:{line}:5: fail: expected drop, model says accept — plant → gw tcp/443: "
        "accept: rule 'manage-page'" in done.stdout
    )
    assert "explain disagrees" not in done.stdout  # the kernel sides with the model
    assert "98 passed, 1 failed; kernel: 99 agree with the model, 0 disagree" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert _namespaces(prefix) == []


def test_a_model_kernel_disagreement_is_reported_as_an_explain_failure() -> None:
    explainer = Explainer(load_file(LAB))

    def wrong(flow: Flow, ctx: Context) -> Explanation:
        """The real model, except that it gets operator screens from hub1 wrong."""
        result = explainer.explain(flow, ctx)
        if (flow.src, flow.dport) == ("198.18.10.11", 443) and flow.dst == "198.18.10.1":
            return dataclasses.replace(result, verdict="drop")
        return result

    prefix = new_prefix()
    report = policytest.run(LAB, [LAB_TESTS], kernel=True, prefix=prefix, explain_fn=wrong)
    broken = [r for r in report.results if r.disagrees]
    assert [r.case.label for r in broken] == ["hub1 → gw tcp/443"]
    lines = broken[0].lines()
    assert any(
        "fail: explain disagrees with the kernel: model says drop, kernel says accept" in line
        and line.endswith("this is a bug in PlantGate's explain, not in the policy")
        for line in lines
    ), lines
    assert report.counts()["kernel_disagrees"] == 1
    assert not report.ok
    assert _namespaces(prefix) == []


@pytest.mark.parametrize("relaxed", [False, True], ids=["default-base-chains", "relaxed"])
def test_explain_agrees_with_the_kernel_on_edge_cases(tmp_path: Path, relaxed: bool) -> None:
    policy = tmp_path / "edge.yaml"
    policy.write_text(EDGE_POLICY + (RELAXED if relaxed else ""))
    tests = tmp_path / "edge-tests.yaml"
    tests.write_text(EDGE_TESTS)
    prefix = new_prefix()
    report = policytest.run(policy, [tests], kernel=True, prefix=prefix)
    problems = [line for r in report.results for line in r.lines() if "fail: expected" not in line]
    assert problems == []
    kernel = {r.case.label: r.kernel.verdict for r in report.results if r.kernel}
    assert set(kernel.values()) == {"accept", "drop"}  # every case was probed
    spoofed_ping = kernel["a1 → gw icmp echo-request"]  # a1 sent from veth-b
    wrong_leg = kernel["a1 → gw@veth-b udp/53"]
    assert (spoofed_ping, wrong_leg) == (("accept", "accept") if relaxed else ("drop", "drop"))
    assert _namespaces(prefix) == []
