"""Real-packet probes between lab hosts: does traffic X get through, or not?

Used by `plantgate lab up --probe` (the port matrix, row by row) and by kernel tests.

For each distinct (host, address, protocol, port) a listener runs inside the destination
namespace for the duration of the run: TCP accepts and closes, UDP echoes. If the port is already
bound there (EADDRINUSE) a real service owns it, and the probe speaks that service's protocol
instead: a DNS query (udp/53) or an NTP client request (udp/123); any TCP service just has to
accept the connection. A UDP service that answers nothing it does not understand (the lab's
WireGuard concentrator on udp/51820) is watched instead: a raw socket in the destination sees
the probe's datagram arrive, which is what the firewall decided. Sources may bind a specific
address (`src_addr`), e.g. the plant workstation rather than the plant router.

Verdicts: `accept` (connected / reply came back), `drop` (timeout), `refused` (an RST or ICMP
port-unreachable came back: the packet got through but nothing listened — or a firewall
rejected), `error` (anything else, such as no route). All probes run concurrently, so a run
takes about one `timeout` however many probes time out.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import dns.exception
import dns.message

from gateway.lab import topology
from gateway.lab.netns import socket_in_netns

Proto = Literal["tcp", "udp", "icmp"]  # icmp: `port` is the ICMP type (8 = echo request)
Expect = Literal["accept", "drop"]
Verdict = Literal["accept", "drop", "refused", "error"]

MAX_WORKERS = 64
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMP_UNREACHABLE = 8, 0, 3
NTP_PACKET = 48
POLL = 0.05


@dataclass(frozen=True)
class Probe:
    """Send `proto`/`port` from host `src` to `addr` (on host `dst`); `expect` the verdict."""

    src: str
    dst: str
    addr: str
    proto: Proto
    port: int
    expect: Expect
    label: str
    src_addr: str | None = None

    @property
    def service(self) -> str:
        if self.proto == "icmp":
            return "icmp/echo" if self.port == ICMP_ECHO_REQUEST else f"icmp/{self.port}"
        return f"{self.proto}/{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    verdict: Verdict
    detail: str
    elapsed: float

    @property
    def matched(self) -> bool:
        return self.verdict == self.probe.expect


@dataclass(frozen=True)
class ListenKey:
    host: str
    addr: str
    proto: Proto
    port: int


@dataclass
class _Listener:
    """A probe listener, or the note that a real service owns the port (`sock` is None)."""

    key: ListenKey
    sock: socket.socket | None
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    observer: socket.socket | None = None  # raw socket watching a silent real UDP service
    seen: set[bytes] = field(default_factory=set)  # payloads that arrived there

    @property
    def real_service(self) -> bool:
        return self.sock is None and not self.error


# ---------------------------------------------------------------- the matrix


def matrix_probes(hubs: int) -> list[Probe]:
    """DESIGN §1 rows that exist in the lab (allowed), and a sample of forbidden traffic.

    Hub rows are probed from the first and the last hub, which keeps the table short for
    large labs while still covering both ends of the segment.
    """
    topology.validate_hubs(hubs)
    sample = [1] if hubs == 1 else [1, hubs]
    return [*_allowed(sample), *_forbidden()]


def _allowed(sample: Sequence[int]) -> list[Probe]:
    gw_lan, gw_wan = topology.GW_LAN, topology.GW_WAN
    probes: list[Probe] = []
    for i in sample:
        hub = topology.hub_name(i)
        probes += [
            Probe(hub, "gw", gw_lan, "tcp", 443, "accept", "operator screens"),
            Probe(hub, "gw", gw_lan, "tcp", 8443, "accept", "hub device API"),
            Probe(hub, "gw", gw_lan, "tcp", 8140, "accept", "enrollment"),
            Probe(hub, "gw", gw_lan, "udp", 123, "accept", "NTP relay"),
        ]
    for i in sample:
        hub = topology.hub_name(i)
        addr = topology.hub_address(i)
        probes.append(Probe("gw", hub, addr, "tcp", 9100, "accept", "hub agent"))
    workstation = topology.PLANT_WORKSTATION
    probes += [
        Probe(
            "plant",
            "gw",
            gw_wan,
            "tcp",
            443,
            "accept",
            "Manage Page",
            workstation,
        ),
        Probe("gw", "upstream", topology.NTP_ADDR, "udp", 123, "accept", "upstream time"),
        Probe("gw", "upstream", topology.DNS_ADDR, "udp", 53, "accept", "name resolution"),
        Probe("gw", "upstream", topology.DNS_ADDR, "tcp", 53, "accept", "name resolution"),
        Probe(
            "gw",
            "upstream",
            topology.ACCOUNT_ADDR,
            "tcp",
            443,
            "accept",
            "user-list sync",
        ),
        Probe("gw", "upstream", topology.SUPPORT_ADDR, "udp", 51820, "accept", "support tunnel"),
    ]
    return probes


def _forbidden() -> list[Probe]:
    hub, hub_addr = topology.hub_name(1), topology.hub_address(1)
    workstation, gw_wan = topology.PLANT_WORKSTATION, topology.GW_WAN
    return [
        Probe(hub, "plant", workstation, "tcp", 443, "drop", "hub to plant network"),
        Probe(hub, "plant", workstation, "tcp", 22, "drop", "hub to plant network"),
        Probe(hub, "upstream", topology.NTP_ADDR, "udp", 123, "drop", "hub to internet"),
        Probe(hub, "upstream", topology.DNS_ADDR, "udp", 53, "drop", "hub to internet"),
        Probe("plant", hub, hub_addr, "tcp", 9100, "drop", "plant to hub", workstation),
        Probe("plant", hub, hub_addr, "tcp", 22, "drop", "ssh to hub, gate closed", workstation),
        *_support_closed(hub, hub_addr),
        Probe("plant", "gw", gw_wan, "tcp", 22, "drop", "plant ssh to appliance", workstation),
        Probe("plant", "gw", gw_wan, "tcp", 8443, "drop", "device API from plant", workstation),
        Probe("upstream", "gw", gw_wan, "tcp", 443, "drop", "internet to Manage Page"),
        Probe("upstream", "gw", gw_wan, "tcp", 22, "drop", "internet ssh"),
    ]


def _support_closed(hub: str, hub_addr: str) -> list[Probe]:
    """Support staff through the real tunnel, with the gate closed: nothing gets through.

    The lab's `staff` host exists in labs with a policy; the gate opens only by request.
    """
    alice = topology.STAFF_ADDRESSES[0]
    return [
        Probe(
            "staff", "gw", topology.GW_TUNNEL, "tcp", 22, "drop", "support ssh, gate closed", alice
        ),
        Probe("staff", hub, hub_addr, "tcp", 22, "drop", "support ssh, gate closed", alice),
    ]


# ---------------------------------------------------------------- listeners


def _open_listener(prefix: str, key: ListenKey) -> _Listener:
    namespace = topology.namespace_name(prefix, key.host)
    if key.proto == "icmp":
        return _Listener(key, None)  # the destination's kernel answers echo requests itself
    kind = socket.SOCK_STREAM if key.proto == "tcp" else socket.SOCK_DGRAM
    try:
        sock = socket_in_netns(namespace, socket.AF_INET, kind)
    except OSError as exc:
        return _Listener(key, None, error=f"no host {key.host} in lab {prefix}: {exc.strerror}")
    try:
        if key.proto == "tcp":
            # lets us bind over TIME_WAIT left by an earlier run, never over a listening service
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((key.addr, key.port))
        if key.proto == "tcp":
            sock.listen(128)
        sock.settimeout(POLL)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return _real_service(namespace, key)
        return _Listener(
            key, None, error=f"cannot listen on {key.addr}:{key.port} in {key.host}: {exc.strerror}"
        )
    listener = _Listener(key, sock)
    serve = _serve_tcp if key.proto == "tcp" else _serve_udp
    listener.thread = threading.Thread(target=serve, args=(listener,), daemon=True)
    listener.thread.start()
    return listener


def _real_service(namespace: str, key: ListenKey) -> _Listener:
    """A real service owns the port; for a UDP one that answers no probe, watch arrivals."""
    if key.proto != "udp" or key.port in (53, 123):
        return _Listener(key, None)
    raw = socket_in_netns(namespace, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.settimeout(POLL)
    listener = _Listener(key, None, observer=raw)
    listener.thread = threading.Thread(target=_observe_udp, args=(listener,), daemon=True)
    listener.thread.start()
    return listener


def udp_arrival(packet: bytes, addr: str, port: int) -> bytes | None:
    """The payload of an IPv4 UDP datagram for addr:port, from a raw socket's read (pure)."""
    if len(packet) < 28 or packet[9] != socket.IPPROTO_UDP:
        return None
    header_len = (packet[0] & 0x0F) * 4
    if socket.inet_ntoa(packet[16:20]) != addr or len(packet) < header_len + 8:
        return None
    if struct.unpack("!H", packet[header_len + 2 : header_len + 4])[0] != port:
        return None
    return packet[header_len + 8 :]


def _observe_udp(listener: _Listener) -> None:
    assert listener.observer is not None
    key = listener.key
    while not listener.stop.is_set():
        try:
            packet = listener.observer.recv(65535)
        except (TimeoutError, OSError):
            continue
        payload = udp_arrival(packet, key.addr, key.port)
        if payload is not None:
            listener.seen.add(payload)


def _serve_tcp(listener: _Listener) -> None:
    assert listener.sock is not None
    while not listener.stop.is_set():
        try:
            conn, _ = listener.sock.accept()
        except (TimeoutError, OSError):
            continue
        conn.close()


def _serve_udp(listener: _Listener) -> None:
    assert listener.sock is not None
    while not listener.stop.is_set():
        try:
            data, peer = listener.sock.recvfrom(2048)
            listener.sock.sendto(data, peer)
        except (TimeoutError, OSError):
            continue


def _close_listener(listener: _Listener) -> None:
    listener.stop.set()
    if listener.thread is not None:
        listener.thread.join(timeout=2.0)
    if listener.sock is not None:
        listener.sock.close()
    if listener.observer is not None:
        listener.observer.close()


def listen_keys(probes: Iterable[Probe]) -> list[ListenKey]:
    """The distinct listeners a set of probes needs, in first-seen order."""
    keys = (ListenKey(p.dst, p.addr, p.proto, p.port) for p in probes)
    return list(dict.fromkeys(keys))


# ---------------------------------------------------------------- clients


def _client_socket(prefix: str, probe: Probe) -> socket.socket:
    namespace = topology.namespace_name(prefix, probe.src)
    if probe.proto == "icmp":
        return _bound(
            socket_in_netns(namespace, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), probe
        )
    kind = socket.SOCK_STREAM if probe.proto == "tcp" else socket.SOCK_DGRAM
    return _bound(socket_in_netns(namespace, socket.AF_INET, kind), probe)


def _bound(sock: socket.socket, probe: Probe) -> socket.socket:
    if probe.src_addr:
        sock.bind((probe.src_addr, 0))
    return sock


def _probe_tcp(sock: socket.socket, probe: Probe, timeout: float) -> tuple[Verdict, str]:
    sock.settimeout(timeout)
    try:
        sock.connect((probe.addr, probe.port))
    except TimeoutError:
        return "drop", f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return "refused", "connection refused (RST)"
    except OSError as exc:
        return _os_error_verdict(exc)
    return "accept", f"connected from {sock.getsockname()[0]}"


def _udp_request(probe: Probe, real_service: bool) -> tuple[bytes, str]:
    """Payload to send and what identifies the answer (kind:token)."""
    if real_service and probe.port == 53:
        query = dns.message.make_query("ntp.upstream.test", "A")
        return query.to_wire(), f"dns:{query.id}"
    if real_service and probe.port == 123:
        stamp = os.urandom(8)
        return bytes([0x23]) + bytes(39) + stamp, "ntp:" + stamp.hex()
    token = f"plantgate-probe {uuid.uuid4().hex}".encode()
    return token, "echo:" + token.hex()


def _reply_matches(data: bytes, expected: str) -> bool:
    kind, _, token = expected.partition(":")
    if kind == "dns":
        try:
            return dns.message.from_wire(data).id == int(token)
        except dns.exception.DNSException:
            return False
    if kind == "ntp":
        return len(data) >= NTP_PACKET and data[24:32].hex() == token
    return data.hex() == token


def _probe_udp(
    sock: socket.socket, probe: Probe, timeout: float, listener: _Listener
) -> tuple[Verdict, str]:
    if listener.observer is not None:
        return _probe_udp_silent(sock, probe, timeout, listener)
    payload, expected = _udp_request(probe, listener.real_service)
    deadline = time.monotonic() + timeout
    try:
        sock.connect((probe.addr, probe.port))
        sock.send(payload)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if _reply_matches(sock.recv(4096), expected):
                return "accept", f"{expected.partition(':')[0]} reply"
    except TimeoutError:
        pass
    except ConnectionRefusedError:
        return "refused", "ICMP port unreachable"
    except OSError as exc:
        return _os_error_verdict(exc)
    return "drop", f"no reply within {timeout:g} s"


def _probe_udp_silent(
    sock: socket.socket, probe: Probe, timeout: float, listener: _Listener
) -> tuple[Verdict, str]:
    """A service that answers nothing: the datagram's arrival is the verdict."""
    token = f"plantgate-probe {uuid.uuid4().hex}".encode()
    deadline = time.monotonic() + timeout
    try:
        sock.connect((probe.addr, probe.port))
        sock.send(token)
    except OSError as exc:
        return _os_error_verdict(exc)
    while time.monotonic() < deadline:
        if token in listener.seen:
            return "accept", "arrived (the service answers no probe)"
        time.sleep(0.01)
    return "drop", f"did not arrive within {timeout:g} s"


def icmp_echo(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request with its checksum (RFC 792)."""
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return header[:2] + struct.pack("!H", _checksum(header + payload)) + header[4:] + payload


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (len(data) % 2)
    total: int = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_answer(packet: bytes, addr: str, ident: int, payload: bytes) -> Verdict | None:
    """What a raw-socket packet (IP header included) says about our echo, if it is about it."""
    if len(packet) < 20:
        return None
    header_len = (packet[0] & 0x0F) * 4
    icmp = packet[header_len:]
    if len(icmp) < 8:
        return None
    kind, _code, _sum, their_id = struct.unpack("!BBHH", icmp[:6])
    source = socket.inet_ntoa(packet[12:16])
    if kind == ICMP_ECHO_REPLY and source == addr and their_id == ident:
        return "accept" if icmp[8:] == payload else None
    if kind == ICMP_UNREACHABLE and len(icmp) >= 36:
        inner = icmp[8:]
        inner_len = (inner[0] & 0x0F) * 4
        quoted = inner[inner_len : inner_len + 8]
        if socket.inet_ntoa(inner[16:20]) == addr and len(quoted) >= 6:
            return "refused" if struct.unpack("!H", quoted[4:6])[0] == ident else None
    return None


def _probe_icmp(sock: socket.socket, probe: Probe, timeout: float) -> tuple[Verdict, str]:
    ident, payload = int.from_bytes(os.urandom(2), "big"), os.urandom(16)
    deadline = time.monotonic() + timeout
    try:
        sock.sendto(icmp_echo(ident, 1, payload), (probe.addr, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            verdict = icmp_answer(sock.recv(2048), probe.addr, ident, payload)
            if verdict is not None:
                return verdict, "echo reply" if verdict == "accept" else "ICMP unreachable"
    except TimeoutError:
        pass
    except OSError as exc:
        return _os_error_verdict(exc)
    return "drop", f"no reply within {timeout:g} s"


def _os_error_verdict(exc: OSError) -> tuple[Verdict, str]:
    """EPERM on send/connect is the source host's own firewall dropping the packet."""
    if exc.errno == errno.EPERM:
        return "drop", "dropped by the source's own firewall (EPERM)"
    return "error", _describe(exc)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return f"{name}: {exc.strerror or exc}"


def _run_one(prefix: str, probe: Probe, listener: _Listener, timeout: float) -> ProbeResult:
    started = time.monotonic()
    if listener.error:
        return ProbeResult(probe, "error", listener.error, 0.0)
    try:
        sock = _client_socket(prefix, probe)
    except OSError as exc:
        return ProbeResult(probe, "error", f"source socket: {_describe(exc)}", 0.0)
    with sock:
        if probe.proto == "tcp":
            verdict, detail = _probe_tcp(sock, probe, timeout)
        elif probe.proto == "icmp":
            verdict, detail = _probe_icmp(sock, probe, timeout)
        else:
            verdict, detail = _probe_udp(sock, probe, timeout, listener)
    if listener.real_service:
        detail += " (real service)"
    return ProbeResult(probe, verdict, detail, time.monotonic() - started)


def run_probes(prefix: str, probes: Sequence[Probe], timeout: float = 1.0) -> list[ProbeResult]:
    """Run `probes` in lab `prefix` concurrently; results in the order of `probes`."""
    topology.validate_prefix(prefix)
    listeners: dict[ListenKey, _Listener] = {}
    try:
        for key in listen_keys(probes):
            listeners[key] = _open_listener(prefix, key)
        workers = max(1, min(MAX_WORKERS, len(probes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
            futures = [
                pool.submit(
                    _run_one,
                    prefix,
                    p,
                    listeners[ListenKey(p.dst, p.addr, p.proto, p.port)],
                    timeout,
                )
                for p in probes
            ]
            return [f.result() for f in futures]
    finally:
        for listener in listeners.values():
            listener.stop.set()  # all first: each join then waits for at most one poll
        for listener in listeners.values():
            _close_listener(listener)
