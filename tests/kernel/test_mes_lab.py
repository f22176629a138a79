"""The MES in the lab: `lab up` starts it on gw as the appliance does (TLS on 443 of the hub
and plant addresses); hubs and the plant workstation reach it through the firewall with the
lab CA, the internet does not."""

from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab import lab as lab_ops
from gateway.lab import services, topology
from gateway.lab.netns import socket_in_netns
from mes import tls
from tests.kernel.conftest import Lab, new_prefix, teardown_lab
from tests.kernel.policy_lab import LAB_POLICY


@pytest.fixture(scope="module")
def mes_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        yield Lab(prefix, root, lab_ops.up(prefix, hubs=2, policy=LAB_POLICY, root=root))
    finally:
        teardown_lab(prefix, root)


def ca_of(lab: Lab) -> Path:
    return services.mes_ca(lab_ops.lab_paths(lab.prefix, lab.root))


def get(lab: Lab, host: str, addr: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """HTTPS GET from inside `host`, trusting only the lab MES CA, checking the address."""
    context = ssl.create_default_context(cafile=str(ca_of(lab)))
    sock = socket_in_netns(lab.ns(host), socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((addr, 443))
    conn = http.client.HTTPSConnection(addr, 443, timeout=timeout, context=context)
    conn.sock = context.wrap_socket(sock, server_hostname=addr)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_mes_runs_in_gw(mes_lab: Lab) -> None:
    running = {s.name: s for s in mes_lab.status.services}
    assert running["mes"].running and running["mes"].host == "gw"


@pytest.mark.parametrize(
    ("host", "addr"),
    [("hub1", topology.GW_LAN), ("hub2", topology.GW_LAN), ("plant", topology.GW_WAN)],
)
def test_hubs_and_plant_reach_the_mes(mes_lab: Lab, host: str, addr: str) -> None:
    status, body = get(mes_lab, host, addr, "/openapi.json")
    assert status == 200
    assert b'"openapi"' in body


def test_the_internet_cannot_reach_the_mes(mes_lab: Lab) -> None:
    with pytest.raises(OSError):
        get(mes_lab, "upstream", topology.GW_WAN, "/openapi.json", timeout=2.0)


def test_a_foreign_ca_is_not_enough(mes_lab: Lab, tmp_path: Path) -> None:
    other = tls.TlsPaths(tmp_path / "ca")
    tls.ensure_ca(other, datetime.datetime.now(datetime.UTC))
    context = ssl.create_default_context(cafile=str(other.ca_cert))
    sock = socket_in_netns(mes_lab.ns("hub1"), socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect((topology.GW_LAN, 443))
    with pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(sock, server_hostname=topology.GW_LAN)
    sock.close()
