"""The benchmark's synthetic sites and naive rendering (pure; no root, no timing)."""

from __future__ import annotations

import ipaddress

import pytest

from bench.sites import (
    HUB_SERVICE_SET,
    hub_addresses,
    naive_rule,
    naive_table,
    per_host_rules,
    site_yaml,
)
from bench.stats import ratio, rotated, summarize
from gateway.policy.compile import compile_policy
from gateway.policy.load import load_text
from gateway.policy.ruleset import render

from .conftest import POLICIES

LAB = POLICIES / "lab.yaml"
LAB_HUBS = "198.18.10.0/24"


@pytest.fixture(scope="module")
def lab_text() -> str:
    return LAB.read_text(encoding="utf-8")


def test_hub_addresses_are_distinct_hosts_in_ten_slash_eight() -> None:
    addresses = hub_addresses(500)
    assert len(addresses) == len(set(addresses)) == 500
    assert addresses == sorted(addresses, key=lambda a: ipaddress.ip_network(a))
    ten = ipaddress.ip_network("10.0.0.0/8")
    for address in addresses:
        net = ipaddress.ip_network(address)
        assert net.prefixlen == 32 and net.subnet_of(ten)
        assert int(net.network_address) & 0xFF not in (0, 255)


def test_hub_addresses_are_reproducible() -> None:
    assert hub_addresses(50) == hub_addresses(50)
    assert hub_addresses(0) == []


@pytest.mark.parametrize("count", [0, 10, 1000])
def test_generated_site_loads_with_n_plus_one_hub_networks(lab_text: str, count: int) -> None:
    addresses = hub_addresses(count)
    loaded = load_text(site_yaml(lab_text, addresses), "site.yaml")
    networks = loaded.policy.zones["hubs"].networks
    assert len(networks) == count + 1
    assert networks[0] == LAB_HUBS
    as_networks = [ipaddress.ip_network(n) for n in networks[1:]]
    assert as_networks == [ipaddress.ip_network(a) for a in addresses]


def test_generated_site_keeps_the_rest_of_the_policy(lab_text: str) -> None:
    base = load_text(lab_text, "lab.yaml").policy
    site = load_text(site_yaml(lab_text, hub_addresses(5)), "site.yaml").policy
    assert site.rules == base.rules
    assert site.services == base.services
    assert site.zones["plant"] == base.zones["plant"]
    assert site.site.name != base.site.name


def test_site_yaml_needs_the_zone(lab_text: str) -> None:
    with pytest.raises(ValueError, match="no zone 'shopfloor'"):
        site_yaml(lab_text, ["10.0.0.1/32"], zone="shopfloor")


def test_compiled_site_puts_the_hubs_in_one_set(lab_text: str) -> None:
    addresses = hub_addresses(100)
    compiled = compile_policy(load_text(site_yaml(lab_text, addresses), "site.yaml"))
    elements = compiled.table.sets["zone_hubs_v4"].elements
    assert len(elements) == 101
    assert "ip saddr 10." not in compiled.text


def test_naive_rendering_has_one_rule_per_hub(lab_text: str) -> None:
    addresses = hub_addresses(300)
    base = compile_policy(load_text(lab_text, "lab.yaml")).table
    naive = naive_table(base, addresses)
    text = render(naive)
    assert per_host_rules(naive.chains["input"]) == 300
    assert text.count("ip saddr 10.") == 300
    assert naive_rule(addresses[0]) in text
    assert f"@{HUB_SERVICE_SET} accept" in naive_rule(addresses[0])


def test_naive_rendering_declares_the_same_sets_as_the_set_based_site(lab_text: str) -> None:
    addresses = hub_addresses(40)
    site = compile_policy(load_text(site_yaml(lab_text, addresses), "site.yaml")).table
    base = compile_policy(load_text(lab_text, "lab.yaml")).table
    naive = naive_table(base, addresses)
    assert set(naive.sets) == set(site.sets)
    assert naive.sets["zone_hubs_v4"].elements == [LAB_HUBS]
    assert set(naive.chains) == set(site.chains)


def test_naive_rules_sit_after_the_fast_path_and_before_classification(lab_text: str) -> None:
    base = compile_policy(load_text(lab_text, "lab.yaml")).table
    rules = [r.statement for r in naive_table(base, hub_addresses(3)).chains["input"].rules]
    first = next(i for i, s in enumerate(rules) if s.startswith("ip saddr 10."))
    jump = next(i for i, s in enumerate(rules) if s.startswith("jump "))
    established = rules.index("ct state established,related accept")
    assert established < first  # after the conntrack fast path (and the kill switch before it)
    assert jump == first + 3


def test_naive_rendering_leaves_the_base_table_alone(lab_text: str) -> None:
    base = compile_policy(load_text(lab_text, "lab.yaml")).table
    before = render(base)
    naive_table(base, hub_addresses(20))
    assert render(base) == before


def test_naive_rendering_needs_the_service_set(lab_text: str) -> None:
    base = compile_policy(load_text(lab_text, "lab.yaml")).table
    with pytest.raises(ValueError, match="no set 'svc_nope'"):
        naive_table(base, ["10.0.0.1/32"], service_set="svc_nope")


def test_summaries_and_rotation() -> None:
    summary = summarize([3.0, 1.0, 2.0])
    assert (summary.median, summary.low, summary.high) == (2.0, 1.0, 3.0)
    assert ratio(summarize([4.0]), summarize([2.0])) == 2.0
    assert ratio(None, summary) is None
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
