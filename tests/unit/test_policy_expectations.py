"""Policy tests: loading expectation files (located errors), the model runner, the command,
and the pure planning of the kernel testbed. The kernel run itself is in tests/kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.policy import policytest
from gateway.policy.errors import PolicyError
from gateway.policy.expectations import ExpectationFile, load_tests, load_tests_text
from gateway.policy.explain import Explainer
from gateway.policy.load import load_file
from gateway.policy.testbed import host_cidr, plan_bed
from tests.unit.conftest import BASE, POLICIES, load

runner = CliRunner()
LAB = POLICIES / "lab.yaml"
LAB_TESTS = POLICIES / "tests" / "lab.yaml"
SITE = POLICIES / "site.yaml"
SITE_TESTS = POLICIES / "tests" / "site.yaml"

GOOD = """\
appliance:
  lan0: 198.18.10.1/24
  wan0: 198.18.20.1/24
hosts:
  staff: 198.18.201.5
names:
  ntp.upstream.test: [198.19.0.123]
expect:
  - {from: hub1, to: gw, tcp: 443, expect: accept}
  - {from: gw, to: 198.19.0.123, udp: 123, expect: accept}
"""


@pytest.fixture(scope="module")
def lab() -> Explainer:
    return Explainer(load_file(LAB))


def problems(text: str, explainer: Explainer) -> list[str]:
    try:
        load_tests_text(text, "t.yaml", explainer)
    except PolicyError as exc:
        return [p.render() for p in exc.problems]
    return []


# ---------------------------------------------------------------- loading


def test_good_file_resolves_lab_names_and_gw(lab: Explainer) -> None:
    tests = load_tests_text(GOOD, "t.yaml", lab)
    first, second = tests.cases
    assert (first.flow.src, first.flow.dst, first.flow.proto, first.flow.dport) == (
        "198.18.10.11",
        "198.18.10.1",
        "tcp",
        443,
    )
    assert second.flow.src == "198.18.20.1"  # gw faces the NTP server through wan0
    assert first.where == "t.yaml:9:5"
    assert first.label == "hub1 → gw tcp/443"
    assert tests.names == {"ntp.upstream.test": ("198.19.0.123",)}


LOADER_ERRORS = {
    "unknown host": (
        ("from: hub1", "from: hbu1"),
        ["t.yaml:9:12: error: unknown host 'hbu1' (did you mean 'hub1'?)"],
    ),
    "unknown section": (
        ("expect:\n", "expct:\n"),
        [
            "t.yaml:1:1: error: missing required section 'expect'",
            "t.yaml:8:1: error: unknown section 'expct' (did you mean 'expect'?)",
        ],
    ),
    "two services": (
        ("tcp: 443,", "tcp: 443, udp: 123,"),
        ["t.yaml:9:5: error: expect[0]: give exactly one of tcp, udp or icmp (got tcp, udp)"],
    ),
    "no service": (
        ("tcp: 443, ", ""),
        ["t.yaml:9:5: error: expect[0]: give exactly one of tcp, udp or icmp (got none)"],
    ),
    "quoted port": (
        ("tcp: 443,", "tcp: '443',"),
        ["t.yaml:9:31: error: expect[0].tcp: expected a whole number, got string '443'"],
    ),
    "port out of range": (
        ("tcp: 443,", "tcp: 0,"),
        ["t.yaml:9:31: error: expect[0].tcp: 0 is out of range (must be at least 1)"],
    ),
    "misspelled key": (
        ("expect: accept}\n  - {from: gw", "expcet: accept}\n  - {from: gw"),
        ["t.yaml:9:36: error: unknown key 'expcet' in expect[0] (did you mean 'expect'?)"],
    ),
    "unknown verdict": (
        ("expect: accept}\n  - {from: gw", "expect: allow}\n  - {from: gw"),
        ["t.yaml:9:44: error: expect[0].expect: expected 'accept' or 'drop', got 'allow'"],
    ),
    "appliance interface not in the policy": (
        ("  lan0: 198.18", "  lan1: 198.18"),
        ["t.yaml:2:3: error: 'lan1' is not an interface of the policy (did you mean 'lan0'?)"],
    ),
    "bad appliance address": (
        ("198.18.10.1/24", "198.18.10.1/33"),
        ["t.yaml:2:9: error: '198.18.10.1/33' is not an address/prefix like '198.18.10.1/24'"],
    ),
    "lab name redefined": (
        ("  staff:", "  plant:"),
        ["t.yaml:5:3: error: 'plant' is a lab host (198.18.20.10); pick another name"],
    ),
    "host with a prefix": (
        ("198.18.201.5", "198.18.201.0/24"),
        [
            "t.yaml:5:10: error: hosts.staff: '198.18.201.0/24' is not an IP address "
            "(one host, no prefix)"
        ],
    ),
    "name no endpoint has": (
        ("ntp.upstream.test:", "ntp.upstream.tset:"),
        [
            "t.yaml:7:3: error: 'ntp.upstream.tset' is not a name of any endpoint in the "
            "policy (did you mean 'ntp.upstream.test'?)"
        ],
    ),
    "unknown gate": (
        ("tcp: 443,", "tcp: 443, gate: suport,"),
        ["t.yaml:9:42: error: unknown gate 'suport' (did you mean 'support'?)"],
    ),
    "unknown interface": (
        ("tcp: 443,", "tcp: 443, iif: lan9,"),
        ["t.yaml:9:41: error: unknown interface 'lan9' (did you mean 'lan0'?)"],
    ),
    "gw on an interface without addresses": (
        ("to: gw,", "to: gw@wan9,"),
        [
            "t.yaml:9:22: error: 'gw@wan9': the appliance has no addresses on 'wan9' "
            "(did you mean 'wan0'?)"
        ],
    ),
    "unknown icmp type": (
        ("tcp: 443,", "icmp: echo-requets,"),
        ["t.yaml:9:32: error: unknown ICMP type 'echo-requets' (did you mean 'echo-request'?)"],
    ),
    "appliance on both ends": (
        ("from: hub1", "from: self"),
        [
            "t.yaml:9:5: error: expect[0]: from and to are both the appliance; write one of "
            "them as an address"
        ],
    ),
    "gw facing a leg with no address": (
        ("from: hub1", "from: staff"),
        [
            "t.yaml:9:5: error: expect[0]: the appliance has no IPv4 address on wg-support "
            "(see appliance:)"
        ],
    ),
}


@pytest.mark.parametrize("name", LOADER_ERRORS)
def test_loader_errors_are_located(lab: Explainer, name: str) -> None:
    (old, new), expected = LOADER_ERRORS[name]
    assert old in GOOD
    assert problems(GOOD.replace(old, new, 1), lab) == expected


def test_one_broken_definition_is_reported_once(lab: Explainer) -> None:
    text = GOOD.replace("198.18.201.5", "198.18.201.500").replace("from: hub1", "from: staff")
    assert problems(text.replace("  lan0: 198.18", "  lan1: 198.18"), lab) == [
        "t.yaml:2:3: error: 'lan1' is not an interface of the policy (did you mean 'lan0'?)",
        "t.yaml:5:10: error: hosts.staff: '198.18.201.500' is not an IP address "
        "(one host, no prefix)",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "",
            "a test file is a mapping of sections (appliance, hosts, names, expect); this is empty",
        ),
        (
            "- a\n",
            "a test file is a mapping of sections (appliance, hosts, names, expect); "
            "this is not a mapping",
        ),
    ],
)
def test_a_file_that_is_not_a_mapping(lab: Explainer, text: str, message: str) -> None:
    assert problems(text, lab) == [f"t.yaml:1:1: error: {message}"]


def test_yaml_syntax_error_is_located(lab: Explainer) -> None:
    found = problems(
        GOOD.replace("expect: accept}\n  - {from: gw", "expect: accept\n  - {from: gw"), lab
    )
    assert len(found) == 1
    assert found[0].startswith("t.yaml:10:") and "YAML syntax" in found[0]


def test_missing_file(lab: Explainer, tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_tests(tmp_path / "none.yaml", lab)
    assert [p.render() for p in info.value.problems] == [
        f"{tmp_path / 'none.yaml'}:1:1: error: no such file"
    ]


def test_an_expectation_the_model_cannot_place_is_a_located_error() -> None:
    two = BASE.replace(
        "  internet:\n    interfaces: [plant-lan]\n",
        "  internet:\n    interfaces: [plant-lan]\n  guests:\n    interfaces: [hub-lan]\n",
    )
    text = "appliance: {lan0: 10.10.0.1/24, wan0: 10.20.0.1/16}\nexpect:\n"
    text += "  - {from: 192.0.2.5, to: gw@lan0, tcp: 443, expect: drop}\n"
    assert problems(text, Explainer(load(two))) == [
        "t.yaml:3:5: error: expect[0]: cannot tell which interface 192.0.2.5 arrives on: it "
        "could be lan0 or wan0 (the default route, through catch-all zones 'guests' and "
        "'internet') (add `iif:` to the expectation)"
    ]


# ---------------------------------------------------------------- the model runner


@pytest.mark.parametrize(("policy", "tests"), [(LAB, LAB_TESTS), (SITE, SITE_TESTS)])
def test_shipped_expectations_pass_on_the_model(policy: Path, tests: Path) -> None:
    report = policytest.run(policy, [tests])
    assert [line for r in report.results for line in r.lines()] == []
    assert report.ok
    assert len(report.results) >= 50


def test_shipped_lab_file_covers_every_matrix_rule_and_its_negative_space(lab: Explainer) -> None:
    tests = load_tests(LAB_TESTS, lab)
    results = policytest.run_model(tests, lab.explain)
    deciders = {r.explanation.decision.rule.name for r in results if r.explanation.decision.rule}
    assert deciders == {rule.name for rule in lab.policy.rules}
    kinds = {r.explanation.decision.kind for r in results}
    assert {"rule", "default", "strict-destination", "reverse-path"} <= kinds
    gated = [r for r in results if r.case.gates]
    assert {r.model for r in gated} == {"accept", "drop"}
    drops = sum(r.case.expect == "drop" for r in results)
    assert drops > 3 * (len(results) - drops)  # the negative space is most of the file


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _flipped(tmp_path: Path) -> tuple[Path, int]:
    """The lab tests with the first Manage Page expectation turned into a drop."""
    lines = LAB_TESTS.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "note: Manage Page}" in line)
    lines[index] = lines[index].replace("expect: accept", "expect: drop")
    path = tmp_path / "lab.yaml"
    path.write_text("".join(lines))
    return path, index + 1


def test_a_wrong_expectation_fails_with_a_located_report(tmp_path: Path) -> None:
    path, line = _flipped(tmp_path)
    report = policytest.run(LAB, [path])
    assert not report.ok
    failures = [text for r in report.results for text in r.lines()]
    assert failures == [
        f"{path}:{line}:5: fail: expected drop, model says accept — plant → gw tcp/443: "
        f"accept: rule 'manage-page' allows zone 'plant' → the appliance, tcp/443 "
        f"({LAB}:{_line_of(LAB, '- name: manage-page')})"
    ]
    assert report.counts()["failed"] == 1


def test_cli_test_defaults_to_the_tests_beside_the_policy() -> None:
    result = runner.invoke(app, ["policy", "test", str(LAB)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{LAB}: 99 expectations: 99 passed, 0 failed")


def test_cli_test_failure_exits_1_with_the_located_line(tmp_path: Path) -> None:
    path, line = _flipped(tmp_path)
    result = runner.invoke(app, ["policy", "test", str(LAB), str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line}:5: fail: expected drop, model says accept" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"{LAB}: 99 expectations: 98 passed, 1 failed")


def test_cli_test_verbose_and_json() -> None:
    verbose = runner.invoke(app, ["policy", "test", str(LAB), str(LAB_TESTS), "-v"])
    assert (
        f"{LAB_TESTS}:31:5: ok: hub1 → gw tcp/443 (operator screens): expected accept, model accept"
        in verbose.stdout
    )
    data = json.loads(runner.invoke(app, ["policy", "test", str(LAB), "--json"]).stdout)
    assert data["ok"] is True
    assert data["counts"]["expectations"] == 99
    assert data["results"][0]["explanation"]["decision"]["rule"]["name"] == "hubs-to-appliance"


def test_cli_test_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("from: hub1", "from: hbu1"))
    result = runner.invoke(app, ["policy", "test", str(LAB), str(bad)])
    assert result.exit_code == 2
    assert result.stderr == f"{bad}:9:12: error: unknown host 'hbu1' (did you mean 'hub1'?)\n"
    timeout = runner.invoke(app, ["policy", "test", str(LAB), "--timeout", "0"])
    assert timeout.exit_code == 2
    assert (
        timeout.stderr
        == "plantgate policy test: error: --timeout: 0 is out of range (0-10 seconds)\n"
    )
    missing = runner.invoke(app, ["policy", "test", str(tmp_path / "p.yaml")])
    assert missing.exit_code == 2
    assert missing.stderr == f"{tmp_path / 'p.yaml'}:1:1: error: no such file\n"


def test_cli_kernel_without_root_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policytest.os, "geteuid", lambda: 1000)
    result = runner.invoke(app, ["policy", "test", str(LAB), "--kernel"])
    assert result.exit_code == 1
    assert result.stderr == (
        "plantgate policy test: kernel test failed: --kernel needs root: it builds network "
        "namespaces and loads nftables\n"
    )


# ---------------------------------------------------------------- kernel planning (pure)


def test_hosts_inside_a_connected_network_keep_its_prefix() -> None:
    import ipaddress

    lan = [ipaddress.IPv4Network("198.18.10.0/24")]
    assert host_cidr("198.18.10.11", lan) == "198.18.10.11/24"
    assert host_cidr("198.18.201.5", lan) == "198.18.201.5/32"


def test_plan_bed_routes_what_is_not_connected() -> None:
    appliance = {"lan0": ("198.18.10.1/24",), "wan0": ("198.18.20.1/24",), "wg-support": ()}
    homes = {"198.18.10.11": "lan0", "198.19.0.123": "wan0", "198.18.20.10": "wan0"}
    plan = plan_bed("ptab12", appliance, ("lan0", "wan0", "wg-support"), homes)
    assert plan.dut == "ptab12-gw"
    assert plan.namespaces == (
        "ptab12-gw",
        "ptab12-on-lan0",
        "ptab12-on-wan0",
        "ptab12-on-wg-support",
    )
    assert plan.peers == {
        "lan0": ("198.18.10.11/24",),
        "wan0": ("198.19.0.123/32", "198.18.20.10/24"),
        "wg-support": (),
    }
    assert plan.routes == (("198.19.0.123", "wan0"),)
    assert plan.gateways == {"lan0": "198.18.10.1", "wan0": "198.18.20.1"}


def _shots(lab: Explainer, tests: ExpectationFile) -> list[policytest.Shot]:
    explanations = [lab.explain(c.flow, tests.context(c)) for c in tests.cases]
    return policytest.plan_shots(lab, tests, explanations)[0]


def test_shots_for_the_lab_file(lab: Explainer) -> None:
    tests = load_tests(LAB_TESTS, lab)
    shots = _shots(lab, tests)
    assert all(s.probe is not None for s in shots)  # the lab file is probed whole
    spoofed = {tests.cases[s.index].origin: s.spoof_on for s in shots if s.spoof_on}
    assert spoofed == {
        "hub1": "wan0",
        "plant": "lan0",
        "staff": "wan0",
        "ntp": "lan0",
        "hub2": "wg-support",
    }
    first = shots[0].probe
    assert first is not None
    assert (first.src, first.dst, first.addr, first.src_addr) == (
        "on-lan0",
        "gw",
        "198.18.10.1",
        "198.18.10.11",
    )


def test_shots_skip_what_the_kernel_cannot_be_asked(lab: Explainer) -> None:
    text = GOOD + (
        "  - {from: hub1, to: hub2, tcp: 22, expect: drop}\n"
        "  - {from: hub1, to: gw, icmp: timestamp-request, expect: drop}\n"
        "  - {from: gw, to: 198.19.0.123, oif: lan0, udp: 123, expect: drop}\n"
    )
    tests = load_tests_text(text, "t.yaml", lab)
    skipped = [s.skip for s in _shots(lab, tests)[2:]]
    assert skipped == [
        "both ends live behind lan0: the peer would deliver it without the appliance",
        "only ICMP echo-request can be sent, not timestamp-request",
        "the kernel routes 198.19.0.123 through wan0, not lan0",
    ]
