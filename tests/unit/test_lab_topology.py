"""The lab's plan as pure data (no root): names, addresses, routes, links, validation.

Also the other pure parts of the lab: plan-vs-kernel comparison, the probe matrix and the
dnsmasq configuration.
"""

from __future__ import annotations

import ipaddress

import pytest

from gateway.lab import services
from gateway.lab.lab import Observation, compare, infer_hubs
from gateway.lab.netns import LinkInfo, RouteInfo
from gateway.lab.probe import listen_keys, matrix_probes
from gateway.lab.topology import (
    Address,
    Endpoint,
    LabPlan,
    Route,
    parse_namespace,
    plan_lab,
)

LAB_NET = ipaddress.ip_network("198.18.0.0/15")


@pytest.fixture
def plan() -> LabPlan:
    return plan_lab("pg", 3)


def sysctls(plan: LabPlan, host: str) -> dict[str, str]:
    return {s.key: s.value for s in plan.host(host).sysctls}


# ---------------------------------------------------------------- names


def test_namespaces_are_prefix_dash_host(plan: LabPlan) -> None:
    assert plan.namespaces == (
        "pg-gw",
        "pg-hubsw",
        "pg-hub1",
        "pg-hub2",
        "pg-hub3",
        "pg-plant",
        "pg-upstream",
    )
    assert plan.namespace("hub2") == "pg-hub2"


def test_unknown_host_is_a_clear_error(plan: LabPlan) -> None:
    with pytest.raises(ValueError, match="unknown lab host 'hub9'"):
        plan.host("hub9")


@pytest.mark.parametrize(
    ("namespace", "host"),
    [
        ("pg-gw", "gw"),
        ("pg-hubsw", "hubsw"),
        ("pg-plant", "plant"),
        ("pg-upstream", "upstream"),
        ("pg-hub7", "hub7"),
        ("pg-hub200", "hub200"),
        ("pgx-gw", None),  # another lab whose prefix starts like ours
        ("pg-foo", None),
        ("pg-hub0", None),
        ("pg-hub01", None),
        ("pg-hub201", None),
        ("pg", None),
        ("pg-gw-x", None),
        ("xpg-gw", None),
    ],
)
def test_parse_namespace_claims_only_our_hosts(namespace: str, host: str | None) -> None:
    assert parse_namespace("pg", namespace) == host


# ---------------------------------------------------------------- addresses and routes


def test_gw(plan: LabPlan) -> None:
    gw = plan.host("gw")
    assert gw.addresses == (Address("lan0", "198.18.10.1/24"), Address("wan0", "198.18.20.1/24"))
    assert gw.routes == (Route("default", "198.18.20.254"),)
    assert sysctls(plan, "gw")["net.ipv4.ip_forward"] == "1"


@pytest.mark.parametrize("index", [1, 2, 3])
def test_hubs(plan: LabPlan, index: int) -> None:
    hub = plan.host(f"hub{index}")
    assert hub.addresses == (Address("eth0", f"198.18.10.{10 + index}/24"),)
    assert hub.routes == (Route("default", "198.18.10.1"),)
    assert sysctls(plan, hub.name)["net.ipv4.ip_forward"] == "0"


def test_last_of_200_hubs() -> None:
    big = plan_lab("pg", 200)
    assert big.host("hub200").addresses == (Address("eth0", "198.18.10.210/24"),)
    assert len(big.namespaces) == 204


def test_plant(plan: LabPlan) -> None:
    plant = plan.host("plant")
    assert plant.addresses == (
        Address("eth0", "198.18.20.10/24"),
        Address("eth0", "198.18.20.254/24"),
        Address("up0", "198.18.255.1/30"),
    )
    assert plant.routes == (
        Route("default", "198.18.255.2"),
        Route("198.18.10.0/24", "198.18.20.1"),
    )
    assert plant.interfaces == ("eth0", "up0")
    assert sysctls(plan, "plant")["net.ipv4.ip_forward"] == "1"


def test_upstream(plan: LabPlan) -> None:
    upstream = plan.host("upstream")
    assert upstream.addresses == (
        Address("eth0", "198.18.255.2/30"),
        Address("eth0", "198.19.0.123/32"),
        Address("eth0", "198.19.0.53/32"),
        Address("eth0", "198.19.0.51/32"),
        Address("eth0", "198.19.0.43/32"),
    )
    assert upstream.routes == (Route("default", "198.18.255.1"),)


def test_switch_has_no_addresses_and_does_not_route(plan: LabPlan) -> None:
    switch = plan.host("hubsw")
    assert switch.addresses == ()
    assert switch.routes == ()
    assert sysctls(plan, "hubsw")["net.ipv4.ip_forward"] == "0"


def test_every_address_and_gateway_is_in_the_benchmark_range(plan: LabPlan) -> None:
    for host in plan.hosts:
        for addr in host.addresses:
            assert ipaddress.ip_interface(addr.cidr).ip in LAB_NET, addr
        for route in host.routes:
            assert ipaddress.ip_address(route.via) in LAB_NET, route


def test_every_host_disables_ipv6(plan: LabPlan) -> None:
    for host in plan.hosts:
        assert sysctls(plan, host.name)["net.ipv6.conf.all.disable_ipv6"] == "1"
        assert sysctls(plan, host.name)["net.ipv6.conf.default.disable_ipv6"] == "1"


# ---------------------------------------------------------------- links


def test_bridge_lives_in_the_switch_namespace_not_in_gw(plan: LabPlan) -> None:
    assert plan.bridge.host == "hubsw"
    assert plan.bridge.ports == ("to-gw", "to-hub1", "to-hub2", "to-hub3")


def test_veth_pairs(plan: LabPlan) -> None:
    pairs = {(v.a, v.b) for v in plan.veths}
    assert (Endpoint("hubsw", "to-gw"), Endpoint("gw", "lan0")) in pairs
    for i in (1, 2, 3):
        assert (Endpoint("hubsw", f"to-hub{i}"), Endpoint(f"hub{i}", "eth0")) in pairs
    assert (Endpoint("gw", "wan0"), Endpoint("plant", "eth0")) in pairs
    assert (Endpoint("plant", "up0"), Endpoint("upstream", "eth0")) in pairs
    assert len(plan.veths) == 6


def test_every_interface_is_created_exactly_once() -> None:
    plan = plan_lab("pg", 5)
    ends = [(e.host, e.ifname) for v in plan.veths for e in (v.a, v.b)]
    assert len(ends) == len(set(ends))
    for host in plan.hosts:
        for ifname in host.interfaces:
            assert (host.name, ifname) in ends
    for port in plan.bridge.ports:
        assert ("hubsw", port) in ends


def test_interface_names_fit_the_kernel_even_with_200_hubs() -> None:
    plan = plan_lab("abcdefghijkl", 200)
    names = {e.ifname for v in plan.veths for e in (v.a, v.b)} | {plan.bridge.ifname}
    assert max(len(n) for n in names) <= 15


def test_no_support_tunnel_in_the_plan(plan: LabPlan) -> None:
    names = {e.ifname for v in plan.veths for e in (v.a, v.b)}
    names |= {a.ifname for h in plan.hosts for a in h.addresses}
    assert not any(n.startswith("wg") for n in names)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("prefix", ["", "Pg", "1pg", "pg-x", "p_g", "abcdefghijklm", "pg "])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"invalid lab prefix .*lowercase letter"):
        plan_lab(prefix, 1)


@pytest.mark.parametrize("prefix", ["p", "pg", "t3x9k", "abcdefghijkl"])
def test_good_prefix(prefix: str) -> None:
    assert plan_lab(prefix, 1).prefix == prefix


@pytest.mark.parametrize("hubs", [0, -1, 201, True])
def test_bad_hub_count(hubs: int) -> None:
    with pytest.raises(ValueError, match=r"invalid hub count .* from 1 to 200"):
        plan_lab("pg", hubs)


def test_hub_count_must_be_an_int() -> None:
    with pytest.raises(ValueError, match="invalid hub count"):
        plan_lab("pg", "3")  # type: ignore[arg-type]


# ---------------------------------------------------------------- plan vs. kernel (pure)


def observed_from_plan(plan: LabPlan) -> dict[str, Observation | None]:
    """What a correctly built lab looks like to the netlink adapter."""
    result: dict[str, Observation | None] = {}
    for host in plan.hosts:
        links = [LinkInfo("lo", "loopback", True, "UNKNOWN", None, ("127.0.0.1/8",))]
        for ifname in host.interfaces:
            addrs = tuple(a.cidr for a in host.addresses if a.ifname == ifname)
            links.append(LinkInfo(ifname, "veth", True, "UP", None, addrs))
        if host.name == plan.bridge.host:
            links.append(LinkInfo(plan.bridge.ifname, "bridge", True, "UP", None))
            links += [
                LinkInfo(p, "veth", True, "UP", plan.bridge.ifname) for p in plan.bridge.ports
            ]
        routes = tuple(RouteInfo(r.dst, r.via, None) for r in host.routes)
        result[host.name] = Observation(tuple(links), routes)
    return result


def test_compare_complete_lab(plan: LabPlan) -> None:
    assert compare(plan, observed_from_plan(plan)) == []


def test_compare_reports_each_difference(plan: LabPlan) -> None:
    observed = observed_from_plan(plan)
    observed["hub2"] = None
    plant = observed["plant"]
    assert plant is not None
    observed["plant"] = Observation(
        tuple(
            LinkInfo(x.ifname, x.kind, x.admin_up, x.operstate, x.master, x.addresses[:1])
            for x in plant.links
        ),
        plant.routes[:1],
    )
    problems = compare(plan, observed, extra=["pg-hub9"])
    assert problems == [
        "unexpected namespace pg-hub9 (not in a 3-hub lab)",
        "hub2: namespace pg-hub2 missing",
        "plant: eth0 lacks address 198.18.20.254/24",
        "plant: route 198.18.10.0/24 via 198.18.20.1 missing",
    ]


def test_compare_sees_a_port_outside_the_bridge(plan: LabPlan) -> None:
    observed = observed_from_plan(plan)
    switch = observed["hubsw"]
    assert switch is not None
    links = tuple(
        LinkInfo(x.ifname, x.kind, x.ifname != "to-hub1", x.operstate, None, x.addresses)
        for x in switch.links
    )
    observed["hubsw"] = Observation(links, switch.routes)
    problems = compare(plan, observed)
    assert "hubsw: interface to-hub1 is down" in problems
    assert "hubsw: to-gw is not a port of br0" in problems


def test_infer_hubs() -> None:
    assert infer_hubs("pg", ["pg-gw", "pg-hub1", "pg-hub4"], {}) == 4
    assert infer_hubs("pg", ["pg-gw"], {}) == 1
    assert infer_hubs("pg", ["pg-hub4"], {"hubs": 7}) == 7


# ---------------------------------------------------------------- probes and services (pure)


def test_matrix_probes_cover_allowed_rows_and_forbidden_samples() -> None:
    probes = matrix_probes(3)
    allowed = {(p.src, p.addr, p.proto, p.port) for p in probes if p.expect == "accept"}
    for hub in ("hub1", "hub3"):
        for proto, port in (("tcp", 443), ("tcp", 8443), ("tcp", 8140), ("udp", 123)):
            assert (hub, "198.18.10.1", proto, port) in allowed
    assert ("gw", "198.18.10.13", "tcp", 9100) in allowed
    assert ("plant", "198.18.20.1", "tcp", 443) in allowed
    assert ("gw", "198.19.0.53", "tcp", 53) in allowed
    assert ("gw", "198.19.0.53", "udp", 53) in allowed
    dropped = {(p.src, p.addr, p.proto, p.port) for p in probes if p.expect == "drop"}
    assert ("hub1", "198.19.0.53", "udp", 53) in dropped
    assert ("upstream", "198.18.20.1", "tcp", 22) in dropped
    assert all(p.src_addr == "198.18.20.10" for p in probes if p.src == "plant")
    assert not {(p.src, p.addr, p.proto, p.port) for p in probes} & {
        ("hub1", "198.18.10.12", "tcp", 22)  # same segment: never crosses gw
    }


def test_matrix_with_one_hub_and_listener_dedup() -> None:
    probes = matrix_probes(1)
    assert not any(p.src == "hub2" or p.dst == "hub2" for p in probes)
    keys = listen_keys(probes)
    assert len(keys) == len(set(keys))
    assert len(keys) < len(probes)  # e.g. gw 198.18.20.1 tcp/22 serves two sources


def test_dnsmasq_config_answers_only_lab_names() -> None:
    text = services.dnsmasq_config()
    lines = text.splitlines()
    for line in ("no-resolv", "no-hosts", "listen-address=198.19.0.53", "local=/test/"):
        assert line in lines
    assert "local-ttl=60" in lines
    assert "host-record=ntp.upstream.test,198.19.0.123" in lines
    assert "host-record=gw.plant.test,198.18.20.1" in lines
    assert "host-record=plant.test,198.18.20.10" in lines
    assert not any(line.startswith("server=") for line in lines)


def test_resolv_conf_for_gw_hubs_and_plant(plan: LabPlan) -> None:
    assert services.resolved_hosts(plan) == ["gw", "hub1", "hub2", "hub3", "plant"]
    assert "nameserver 198.19.0.53" in services.resolv_conf()
