"""Every class of loader error, with its exact location and message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyError
from gateway.policy.load import load_file
from tests.unit.conftest import BASE, POLICIES, load, problems


def test_base_policy_loads() -> None:
    assert problems(BASE) == []


@pytest.mark.parametrize("name", ["site.yaml", "lab.yaml"])
def test_shipped_policies_load_without_warnings(name: str) -> None:
    loaded = load_file(POLICIES / name)
    assert loaded.warnings == ()
    assert loaded.policy.defaults.input == "drop"


CASES = {
    "yaml syntax": (
        BASE.replace("allow: [https, ntp]", "allow: [https, ntp"),
        [
            "p.yaml:24:1: error: YAML syntax: did not find expected ',' or ']' (while parsing "
            "a flow sequence started at line 23, column 12)"
        ],
    ),
    "unknown key with suggestion": (
        BASE.replace("    to: self\n", "    to: self\n    lgo: true\n"),
        ["p.yaml:23:5: error: unknown key 'lgo' in rules[0] (did you mean 'log'?)"],
    ),
    "misspelled required key is one error, not two": (
        BASE.replace("    from: hubs", "    form: hubs"),
        ["p.yaml:21:5: error: unknown key 'form' in rules[0] (did you mean 'from'?)"],
    ),
    "unknown section": (
        BASE + "defualts: {}\n",
        ["p.yaml:24:1: error: unknown section 'defualts' (did you mean 'defaults'?)"],
    ),
    "missing section": (
        BASE.replace("version: 1\n", ""),
        ["p.yaml:1:1: error: missing required section 'version'"],
    ),
    "wrong type": (
        BASE.replace("allow: [https, ntp]", "allow: https"),
        ["p.yaml:23:12: error: rules[0].allow: expected a list, got string 'https'"],
    ),
    "no coercion of quoted booleans": (
        BASE.replace("    to: self\n", "    to: self\n    log: 'yes'\n"),
        ["p.yaml:23:10: error: rules[0].log: expected true or false, got string 'yes'"],
    ),
    "undefined zone": (
        BASE.replace("from: hubs", "from: hbus"),
        ["p.yaml:21:11: error: undefined zone or endpoint 'hbus' (did you mean 'hubs'?)"],
    ),
    "undefined service": (
        BASE.replace("[https, ntp]", "[https, ntpp]"),
        ["p.yaml:23:20: error: undefined service 'ntpp' (did you mean 'ntp'?)"],
    ),
    "undefined endpoint": (
        BASE.replace("to: self", "to: resolver"),
        ["p.yaml:22:9: error: undefined zone or endpoint 'resolver'"],
    ),
    "undefined gate": (
        BASE.replace("    to: self\n", "    to: self\n    gate: suport\n"),
        ["p.yaml:23:11: error: undefined gate 'suport' (no gate is defined)"],
    ),
    "undefined interface role": (
        BASE.replace("interfaces: [hub-lan]", "interfaces: [hub-lna]"),
        ["p.yaml:9:18: error: undefined interface role 'hub-lna' (did you mean 'hub-lan'?)"],
    ),
    "duplicate rule name": (
        BASE + "  - name: hubs-in\n    from: hubs\n    to: self\n    allow: [https]\n",
        ["p.yaml:24:11: error: rule name 'hubs-in' is already used on line 20"],
    ),
    "duplicate mapping key": (
        BASE.replace("  ntp: {udp: [123]}\n", "  ntp: {udp: [123]}\n  ntp: {udp: [124]}\n"),
        [
            "p.yaml:19:3: error: duplicate key 'ntp' (the mapping starts at line 17): names must "
            "be unique"
        ],
    ),
    "ports out of range and bad ranges": (
        BASE.replace("tcp: [443]", "tcp: [0, 65536, '9000-8000', 'abc', 1.5, true]"),
        [
            "p.yaml:17:17: error: services.https.tcp[0]: port 0 is out of range (1-65535)",
            "p.yaml:17:20: error: services.https.tcp[1]: port 65536 is out of range (1-65535)",
            "p.yaml:17:27: error: services.https.tcp[2]: range '9000-8000' is empty or reversed "
            "(write LOW-HIGH, LOW < HIGH)",
            "p.yaml:17:40: error: services.https.tcp[3]: 'abc' is not a port or a range like "
            "'8000-8100'",
            "p.yaml:17:47: error: services.https.tcp[4]: expected a port number or a range, got "
            "decimal number 1.5",
            "p.yaml:17:52: error: services.https.tcp[5]: expected a port number or a range, got "
            "boolean True",
        ],
    ),
    "bad address and prefix": (
        BASE.replace("10.10.0.0/24", "10.10.0.1/24").replace("10.20.0.0/16", "10.20.0.0/33"),
        [
            "p.yaml:10:16: error: zones.hubs.networks[0]: '10.10.0.1/24' has host bits set "
            "(did you mean '10.10.0.0/24'?)",
            "p.yaml:13:16: error: zones.plant.networks[0]: '10.20.0.0/33' has an invalid prefix "
            "length (0-32)",
        ],
    ),
    "not an address": (
        BASE.replace("10.10.0.0/24", "10.10.0.300"),
        [
            "p.yaml:10:16: error: zones.hubs.networks[0]: '10.10.0.300' is not an IP address or "
            "CIDR network"
        ],
    ),
    "overlapping zone networks on one interface": (
        BASE.replace(
            "  internet:\n    interfaces: [plant-lan]\n",
            "  office:\n    interfaces: [plant-lan]\n    networks: [10.20.5.0/24]\n",
        ),
        [
            "p.yaml:16:16: error: 10.20.5.0/24 overlaps 10.20.0.0/16 of zone 'plant' (line 13); "
            "a packet could belong to both zones"
        ],
    ),
    "rule that can never match: zone to itself on one interface": (
        BASE.replace("to: self", "to: hubs"),
        [
            "p.yaml:22:9: error: rule 'hubs-in' can never match from 'hubs' to 'hubs': traffic "
            "within zone 'hubs' stays on interface role 'hub-lan' and never passes through the "
            "appliance"
        ],
    ),
    "rule that can never match: self to self": (
        BASE.replace("from: hubs", "from: self"),
        [
            "p.yaml:22:9: error: rule 'hubs-in' can never match from 'self' to 'self': the "
            "appliance's own loopback traffic is always allowed and never filtered"
        ],
    ),
    "rule that can never match: IPv4 zone to IPv6 endpoint": (
        BASE.replace("to: self", "to: v6host")
        + "endpoints:\n  v6host: {addresses: ['2001:db8::1']}\n",
        [
            "p.yaml:22:9: error: rule 'hubs-in' can never match from 'hubs' to 'v6host': 'hubs' "
            "is IPv4 only and 'v6host' is IPv6 only"
        ],
    ),
    "rule that can never match: ICMPv6 only between IPv4 zones": (
        BASE.replace("allow: [https, ntp]", "allow: [ping6]").replace(
            "  ntp: {udp: [123]}", "  ntp: {udp: [123]}\n  ping6: {icmpv6: [echo-request]}"
        ),
        [
            "p.yaml:23:9: error: rule 'hubs-in' can never match from 'hubs' to 'self': its "
            "services are IPv6 only, but 'hubs' and 'self' are IPv4"
        ],
    ),
    "endpoint outside its zone": (
        BASE + "endpoints:\n  printer: {zone: hubs, addresses: [10.99.0.5]}\n",
        [
            "p.yaml:25:37: error: 10.99.0.5 is outside zone 'hubs' (10.10.0.0/24): this "
            "endpoint can never match there"
        ],
    ),
    "endpoint claimed by another zone": (
        BASE + "endpoints:\n  far: {zone: internet, addresses: [10.20.1.1]}\n",
        [
            "p.yaml:25:37: error: 10.20.1.1 lies in zone 'plant', so traffic to it is never in "
            "zone 'internet'"
        ],
    ),
    "empty allow": (
        BASE.replace("allow: [https, ntp]", "allow: []"),
        ["p.yaml:23:12: error: rules[0].allow: must not be empty (list at least one entry)"],
    ),
    "invalid name": (
        BASE.replace("name: hubs-in", "name: Hubs_In"),
        [
            "p.yaml:20:11: error: rules[0].name: 'Hubs_In' is not a valid name: use lowercase "
            "letters, digits and '-', starting with a letter (40 characters at most)"
        ],
    ),
    "reserved zone name": (
        BASE.replace("  internet:\n", "  self:\n"),
        ["p.yaml:14:3: error: 'self' is reserved; pick another zone name"],
    ),
    "zone matching nothing": (
        BASE.replace("  internet:\n    interfaces: [plant-lan]\n", "  internet: {}\n"),
        [
            "p.yaml:14:3: error: zone 'internet' has neither interfaces nor networks: it matches "
            "nothing"
        ],
    ),
    "one interface, two catch-all zones": (
        BASE.replace("services:", "  outside:\n    interfaces: [plant-lan]\nservices:"),
        [
            "p.yaml:17:18: error: interface 'plant-lan' already catches everything else as zone "
            "'internet'; give one of the two zones networks"
        ],
    ),
    "two roles for one kernel interface": (
        BASE.replace("  plant-lan: wan0", "  plant-lan: lan0"),
        [
            "p.yaml:6:14: error: interface 'lan0' is already role 'hub-lan' (line 5); give each "
            "role its own interface"
        ],
    ),
    "bad interface name": (
        BASE.replace("plant-lan: wan0", "plant-lan: a-very-long-interface"),
        [
            "p.yaml:6:14: error: interfaces.plant-lan: 'a-very-long-interface' is not a valid "
            "interface name (1-15 characters, no spaces or '/')"
        ],
    ),
    "unsupported version": (
        BASE.replace("version: 1", "version: 2"),
        ["p.yaml:1:10: error: unsupported policy version 2: this PlantGate reads version 1"],
    ),
    "literal with suggestion": (
        BASE + "defaults: {input: dorp}\n",
        [
            "p.yaml:24:19: error: defaults.input: expected 'drop' or 'reject', got 'dorp' "
            "(did you mean 'drop'?)"
        ],
    ),
    "bad rate": (
        BASE + "defaults: {log_rate: 10/sec}\n",
        [
            "p.yaml:24:22: error: defaults.log_rate: '10/sec' is not a rate: write it like "
            "'10/second', '600/minute' or '50/hour'"
        ],
    ),
    "unknown ICMP type": (
        BASE.replace("  ntp: {udp: [123]}", "  ntp: {udp: [123]}\n  ping: {icmp: [echo-requst]}"),
        [
            "p.yaml:19:17: error: services.ping.icmp[0]: unknown ICMP type 'echo-requst' "
            "(did you mean 'echo-request'?)"
        ],
    ),
    "empty service": (
        BASE.replace("  ntp: {udp: [123]}", "  ntp: {}"),
        ["p.yaml:18:3: error: service 'ntp' lists no tcp, udp, icmp or icmpv6 entries"],
    ),
    "fqdn without a resolver": (
        BASE + "endpoints:\n  up: {zone: internet, fqdn: [ntp.example.org]}\n",
        [
            "p.yaml:25:30: error: endpoint 'up' has names to resolve but site.resolver names no "
            "resolver endpoint"
        ],
    ),
    "resolver needs fixed addresses": (
        BASE.replace("  name: t\n", "  name: t\n  resolver: dns\n")
        + "endpoints:\n  dns: {zone: internet, fqdn: [dns.example.org]}\n",
        [
            "p.yaml:4:13: error: resolver endpoint 'dns' needs fixed addresses: it cannot "
            "resolve its own name"
        ],
    ),
    "not a host name": (
        BASE.replace("  name: t\n", "  name: t\n  resolver: dns\n")
        + "endpoints:\n  dns: {zone: internet, addresses: [9.9.9.9]}\n"
        + "  up: {zone: internet, fqdn: ['https://x.example.org']}\n",
        [
            "p.yaml:27:31: error: endpoints.up.fqdn[0]: 'https://x.example.org' is not a host name "
            "(write the name alone, no scheme or port)"
        ],
    ),
    "empty file": (
        "",
        [
            "p.yaml:1:1: error: a policy is a mapping of sections (version, site, "
            "...); this file is empty"
        ],
    ),
    "list at top": (
        "- a\n",
        [
            "p.yaml:1:1: error: a policy is a mapping of sections (version, "
            "site, ...); this file is a list"
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_error_is_located_and_explained(case: str) -> None:
    text, expected = CASES[case]
    assert problems(text) == expected


def test_every_problem_is_reported_at_once() -> None:
    text = (
        BASE.replace("from: hubs", "from: hbus")
        .replace("tcp: [443]", "tcp: [70000]")
        .replace("version: 1", "version: 3")
    )
    found = problems(text)
    assert [line.split(": error:")[0] for line in found] == [
        "p.yaml:1:10",
        "p.yaml:17:17",
        "p.yaml:21:11",
    ]


def test_broken_definition_is_not_also_reported_as_undefined() -> None:
    text = BASE.replace("ntp: {udp: [123]}", "ntp: {udp: [99999]}")
    assert problems(text) == [
        "p.yaml:18:15: error: services.ntp.udp[0]: port 99999 is out of range (1-65535)"
    ]


def test_warnings_do_not_stop_a_load() -> None:
    loaded = load(BASE.replace("[https, ntp]", "[https, ntp, https]"))
    assert [w.render() for w in loaded.warnings] == [
        "p.yaml:23:25: warning: service 'https' is listed twice"
    ]


def test_cross_interface_overlap_is_a_warning() -> None:
    loaded = load(
        BASE.replace("networks: [10.20.0.0/16]", "networks: [10.20.0.0/16, 10.10.0.0/25]")
    )
    assert [w.render() for w in loaded.warnings] == [
        "p.yaml:13:30: warning: 10.10.0.0/25 overlaps 10.10.0.0/24 of zone 'hubs' (line 10) "
        "behind another interface: the same addresses in two places"
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_file(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}:1:1: error: no such file"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError) as info:
        load_file(path)
    assert "not UTF-8 text" in str(info.value)


def test_rule_lines_point_at_the_rule_item() -> None:
    loaded = load(BASE)
    assert loaded.rule_line(0) == 20


TIME = "time:\n  upstreams: [up]\n"
WITH_UP = BASE.replace("  name: t\n", "  name: t\n  resolver: dns\n") + (
    "endpoints:\n  dns: {zone: internet, addresses: [9.9.9.9]}\n"
    "  up: {zone: internet, fqdn: [ntp.example.org]}\n"
)


def test_time_section_derives_the_relay_rules() -> None:
    loaded = load(WITH_UP + TIME)
    rules = {r.name: r for r in loaded.policy.rules}
    assert (rules["time-serve"].from_, rules["time-serve"].to) == (["hubs"], ["self"])
    assert (rules["time-upstream"].from_, rules["time-upstream"].to) == (["self"], ["up"])
    assert loaded.policy.services["ntp-relay"].udp == [123]
    names = [r.name for r in loaded.policy.rules]
    # no `serve:` written: the rule cites the time section itself (its first line)
    assert loaded.rule_line(names.index("time-serve")) == 29
    assert loaded.rule_line(names.index("time-upstream")) == 29


def test_nts_adds_the_key_exchange_port_upstream() -> None:
    loaded = load(WITH_UP + TIME + "  nts: true\n")
    upstream = next(r for r in loaded.policy.rules if r.name == "time-upstream")
    assert upstream.allow == ["ntp-relay", "ntp-relay-nts"]
    assert loaded.policy.services["ntp-relay-nts"].tcp == [4460]


TIME_CASES = {
    "undefined upstream": (
        WITH_UP + "time:\n  upstreams: [upp]\n",
        ["p.yaml:29:15: error: undefined endpoint 'upp' (did you mean 'up'?)"],
    ),
    "undefined served zone": (
        WITH_UP + TIME + "  serve: [hbus]\n",
        ["p.yaml:30:11: error: undefined zone 'hbus' (did you mean 'hubs'?)"],
    ),
    "thresholds the wrong way round": (
        WITH_UP + TIME + "  offset_warn: 2\n  offset_high: 1\n",
        ["p.yaml:30:16: error: offset_warn (2 s) must be below offset_high (1 s)"],
    ),
    "orphan stratum out of range": (
        WITH_UP + TIME + "  orphan_stratum: 16\n",
        ["p.yaml:30:19: error: time.orphan_stratum: 16 is out of range (must be at most 15)"],
    ),
    "reserved rule name": (
        WITH_UP.replace("name: hubs-in", "name: time-serve") + TIME,
        [
            "p.yaml:21:11: error: rule name 'time-serve' is reserved: the time section makes "
            "that rule"
        ],
    ),
    "reserved service name": (
        WITH_UP.replace("  ntp: {udp: [123]}", "  ntp-relay: {udp: [123]}").replace(
            "[https, ntp]", "[https, ntp-relay]"
        )
        + TIME,
        ["p.yaml:19:3: error: service name 'ntp-relay' is reserved for the time section"],
    ),
}


@pytest.mark.parametrize("case", list(TIME_CASES), ids=list(TIME_CASES))
def test_time_section_errors_are_located(case: str) -> None:
    text, expected = TIME_CASES[case]
    assert problems(text) == expected
