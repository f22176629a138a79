"""`PolicySite`: zones and roles of the lab's addresses, as alerts show them."""

from __future__ import annotations

import pytest

from gateway.watch.site import PolicySite, tunnel_networks
from tests.unit.watch.netkit import _LAB, ALICE, GW_LAN, GW_WAN, HUB1, WORKSTATION, lab_site

GW_TUNNEL, CONCENTRATOR_INSIDE = "198.18.200.2", "198.18.200.1"


@pytest.mark.parametrize(
    ("address", "zone", "role"),
    [
        (GW_LAN, "hubs", "appliance"),
        (GW_WAN, "plant", "appliance"),
        (HUB1, "hubs", "hub"),
        (WORKSTATION, "plant", "soc-collector"),
        ("198.18.20.99", "plant", "plant"),
        ("198.19.0.53", "internet", "lab-resolver"),
        ("198.19.7.7", "internet", "upstream"),
        (ALICE, "support", "support-staff"),
        ("198.18.10.255", "hubs", "broadcast"),
    ],
)
def test_the_lab_addresses_zones_and_roles(address: str, zone: str, role: str) -> None:
    site = lab_site()
    assert (site.zone_of(address), site.role_of(address)) == (zone, role)


def test_the_tunnel_inside_is_the_support_zone_not_the_internet() -> None:
    """Found in the lab: staff SSH to the appliance's tunnel address showed its
    destination in zone "internet" (the catch-all), since no zone lists 198.18.200.0/24."""
    site = lab_site()
    assert site.zone_of(GW_TUNNEL) == "support"
    assert site.role_of(GW_TUNNEL) == "appliance"  # support_vpn.address is always local
    assert site.zone_of(CONCENTRATOR_INSIDE) == "support"
    assert tunnel_networks(_LAB.policy) == [
        ("198.18.200.0/24", "support"),
        ("198.18.201.0/24", "support"),
    ]


def test_without_a_tunnel_nothing_is_added() -> None:
    policy = _LAB.policy.model_copy(update={"support_vpn": None})
    assert tunnel_networks(policy) == []
    site = PolicySite(policy, [GW_LAN, GW_WAN])
    assert site.zone_of(GW_TUNNEL) == "internet"  # the catch-all, as before
