"""chrony.conf for the relay, rendered from the policy's `time` section (pure).

The renderer reads nothing from the system: the appliance's own addresses on the serving
interfaces, the state directory and whether chronyd may move the clock are parameters, so
the same policy always gives the same text (golden-tested in tests/unit/golden/ntp/).

What the text says, and why (docs/decisions/0005-ntp-relay.md):

- Upstreams: an address becomes `server ADDR iburst`. Names are NOT given to chronyd: it
  would resolve them itself and, for a pool, pick servers the firewall never allowed.
  Instead chronyd reads `sourcedir`, where plantgated writes `server ADDR` lines chosen from
  the addresses the policy's resolver put in the endpoint's firewall set, and keeps those
  pinned in the set while chronyd uses them (upstreams.py, service.py). With `nts`, names
  stay (NTS checks the server's certificate against its name) and a directory holds cookies.
- Clients: `allow` each served zone's networks, nothing else. chrony denies every client it
  was not told to allow, so no `deny` line is needed and no `allow all` is ever written.
- Listening: `bindaddress` to the single serving address of each IP family. chrony takes
  one per family; with several serving addresses it listens on all of them and `allow` and
  the firewall decide who is answered (`binddevice` takes one interface and would stop the
  relay answering its own monitor over loopback).
- Control: no UDP command port; chronyc talks to a Unix socket in the state directory (the
  default under /run is shared by every network namespace, so labs and a host chronyd
  would collide).
- `ratelimit interval 3 burst 8 leak 2`: a hub's chronyd polls every 64-1024 s and sends at
  most 8 requests in its start-up burst; a hub polling in a loop gets one answer per 8 s plus
  one in four of the rest (the leak keeps a spoofed flood from silencing a real hub).
- `local stratum N orphan`: keep serving when every upstream is lost, at a stratum clients
  recognise as "not synchronised to real time".
- Clock limits: `makestep 1 3` (only while disciplining the clock) lets a box that booted
  far off step in its first three updates, then only slew, so running services never see
  time jump; `maxchange 1000 1 2` ignores two later updates of more than 1000 s and then
  makes chronyd exit (plantgated restarts it without the start-up step, and logs it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.policy.model import Policy, TimeService

RATELIMIT = "ratelimit interval 3 burst 8 leak 2"
MAKESTEP = "makestep 1 3"
MAXCHANGE = "maxchange 1000 1 2"
LEAPSECTZ = "right/UTC"
LEAPSECTZ_FILE = Path("/usr/share/zoneinfo/right/UTC")
CLIENTLOG_BYTES_PER_CLIENT = 128  # chrony: 524288 bytes (its default) hold 4096 clients
CLIENTLOG_DEFAULT_CLIENTS = 4096
CLIENTLOG_MAX_CLIENTS = 1 << 24
LOOPBACK = {4: "127.0.0.1", 6: "::1"}


class NtpConfigError(ValueError):
    """The policy has no `time` section, or nothing the relay could serve from."""


@dataclass(frozen=True)
class Timing:
    """How often the relay polls and how long it trusts its last sync (chrony defaults)."""

    poll: int | None = None  # minpoll = maxpoll = 2**poll s; None: chrony's 64-1024 s
    orphan_distance: float | None = None  # s of root distance before orphan; None: 1 s
    max_clock_error: float | None = None  # ppm the clock may drift on its own; None: 1 ppm


APPLIANCE_TIMING = Timing()
# The lab's upstream is ours: poll it every 2 s, and let the estimated error grow fast
# enough that losing it turns into orphan mode within a minute instead of days.
LAB_TIMING = Timing(poll=1, orphan_distance=0.05, max_clock_error=2000.0)


@dataclass(frozen=True)
class ChronyPaths:
    """The relay's files under `<state>/ntp/` (a private directory chronyd insists on)."""

    directory: Path

    @classmethod
    def under(cls, state: Path) -> ChronyPaths:
        return cls(state / "ntp")

    @property
    def conf(self) -> Path:
        return self.directory / "chrony.conf"

    @property
    def socket(self) -> Path:
        return self.directory / "chronyd.sock"

    @property
    def pidfile(self) -> Path:
        return self.directory / "chronyd.pid"

    @property
    def driftfile(self) -> Path:
        return self.directory / "chronyd.drift"

    @property
    def logdir(self) -> Path:
        return self.directory / "log"

    @property
    def ntsdir(self) -> Path:
        return self.directory / "nts"

    @property
    def sources_dir(self) -> Path:
        """Upstream servers chosen from the firewall's resolved sets (`sourcedir`)."""
        return self.directory / "sources"

    @property
    def relay_file(self) -> Path:
        """What plantgated is serving (orphan stratum, addresses), for `ntp status`."""
        return self.directory / "relay.json"


def render_chrony_conf(
    policy: Policy,
    *,
    serve_addresses: Mapping[str, Sequence[str]],
    state: Path,
    discipline_clock: bool,
    leapsectz: bool = False,
    timing: Timing = APPLIANCE_TIMING,
    source: str = "the policy",
) -> str:
    """chrony.conf for `policy.time`.

    `serve_addresses` maps kernel interface names to the appliance's addresses on them
    (`198.18.10.1` or `198.18.10.1/24`); only the serving interfaces' entries are used.
    `leapsectz`: whether the right/UTC zone file exists on this machine.
    """
    time = policy.time
    if time is None:
        raise NtpConfigError("the policy has no `time` section: nothing to serve")
    paths = ChronyPaths.under(state)
    sections = [
        _header(source, discipline_clock),
        _upstreams(policy, time, timing, paths),
        _clients(policy, time, serve_addresses),
        _listening(policy, time, serve_addresses),
        _control(paths),
        _files(paths, time),
        _limits(time, timing, discipline_clock, leapsectz),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


def serving_interfaces(policy: Policy, time: TimeService) -> list[str]:
    """Kernel names of the interfaces the served zones are behind, in policy order."""
    roles = [role for zone in time.serve for role in policy.zones[zone].interfaces]
    return list(dict.fromkeys(policy.interfaces[role] for role in roles))


def serving_addresses(
    policy: Policy, time: TimeService, serve_addresses: Mapping[str, Sequence[str]]
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The appliance's addresses on the serving interfaces (IPv6 link-local left out)."""
    found: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for ifname in serving_interfaces(policy, time):
        for text in serve_addresses.get(ifname, ()):
            address = ipaddress.ip_interface(text)
            if not address.ip.is_link_local and address not in found:
                found.append(address)
    return found


def relay_address(
    policy: Policy, time: TimeService, serve_addresses: Mapping[str, Sequence[str]]
) -> str | None:
    """Where the monitor asks the relay: its first serving IPv4 address (else IPv6)."""
    addresses = serving_addresses(policy, time, serve_addresses)
    ordered = sorted(addresses, key=lambda a: a.version)
    return str(ordered[0].ip) if ordered else None


# ---------------------------------------------------------------- sections


def _header(source: str, discipline_clock: bool) -> list[str]:
    clock = (
        "chronyd disciplines the system clock"
        if discipline_clock
        else "chronyd runs with -x: it never touches the system clock"
    )
    return [
        f"# Generated by PlantGate from {source} (the `time` section). Do not edit:",
        "# plantgated rewrites this file and restarts chronyd whenever the policy changes.",
        f"# {clock}.",
    ]


def upstream_options(time: TimeService, timing: Timing) -> str:
    """The options of every upstream server line (also used for the sourcedir files)."""
    options = "iburst" + (" nts" if time.nts else "")
    if timing.poll is not None:
        options += f" minpoll {timing.poll} maxpoll {timing.poll}"
    return options


def _upstreams(policy: Policy, time: TimeService, timing: Timing, paths: ChronyPaths) -> list[str]:
    lines = ["# Upstreams: the only servers the relay syncs from (policy rule time-upstream)."]
    options = upstream_options(time, timing)
    names = False
    for name in time.upstreams:
        endpoint = policy.endpoints[name]
        lines.append(f"# endpoint {name}")
        for fqdn in endpoint.fqdn:
            if time.nts:  # NTS verifies the server's certificate against this name
                lines.append(f"server {fqdn} {options}")
            else:
                names = True
                lines.append(f"# {fqdn}: addresses from the firewall's set, in {paths.sources_dir}")
        for address in endpoint.addresses:
            network = ipaddress.ip_network(address)
            if network.num_addresses == 1:
                lines.append(f"server {network.network_address} {options}")
            else:
                lines.append(f"# {address} is a network, not a server: not polled")
    if names:
        lines.append(f"sourcedir {paths.sources_dir}")
    return lines


def _clients(
    policy: Policy, time: TimeService, serve_addresses: Mapping[str, Sequence[str]]
) -> list[str]:
    lines = ["# Clients: the served zones only; chrony refuses every client not allowed here."]
    for zone_name in time.serve:
        zone = policy.zones[zone_name]
        networks = list(zone.networks) or _connected_networks(policy, zone_name, serve_addresses)
        lines.append(f"# zone {zone_name}")
        lines += [f"allow {network}" for network in networks]
        if not networks:
            lines.append(f"# zone {zone_name} has no networks and no addresses yet: none allowed")
    limit = _clientlog_limit(policy, time)
    if limit is not None:
        lines.append("# room to rate-limit every served address, not just chrony's 4096")
        lines.append(f"clientloglimit {limit}")
    lines.append(
        "# Rate limit per client: 1 answer per 8 s on average, bursts of 8 (a hub's iburst),"
    )
    lines.append("# and 1 in 4 of the excess so a spoofed flood cannot silence a real hub.")
    lines.append(RATELIMIT)
    return lines


def _connected_networks(
    policy: Policy, zone_name: str, serve_addresses: Mapping[str, Sequence[str]]
) -> list[str]:
    """A zone with interfaces but no networks is the rest of its interfaces: allow what
    those interfaces are connected to (the firewall still confines it to the zone)."""
    networks: list[str] = []
    for role in policy.zones[zone_name].interfaces:
        for text in serve_addresses.get(policy.interfaces[role], ()):
            address = ipaddress.ip_interface(text)
            if not address.ip.is_link_local and address.network.prefixlen < address.max_prefixlen:
                networks.append(str(address.network))
    return list(dict.fromkeys(networks))


def _clientlog_limit(policy: Policy, time: TimeService) -> int | None:
    """Bytes for chrony's per-client table when the served zones hold more than 4096
    IPv4 addresses (a power of two, as chrony rounds it); None when the default suffices."""
    clients = 0
    for zone_name in time.serve:
        for text in policy.zones[zone_name].networks:
            network = ipaddress.ip_network(text)
            if network.version == 4:
                clients += network.num_addresses
    if clients <= CLIENTLOG_DEFAULT_CLIENTS:
        return None
    slots = 1 << (min(clients, CLIENTLOG_MAX_CLIENTS) - 1).bit_length()
    return slots * CLIENTLOG_BYTES_PER_CLIENT


def _listening(
    policy: Policy, time: TimeService, serve_addresses: Mapping[str, Sequence[str]]
) -> list[str]:
    interfaces = serving_interfaces(policy, time)
    addresses = serving_addresses(policy, time, serve_addresses)
    lines = [f"# Listen on the serving interfaces: {', '.join(interfaces) or 'none'}."]
    for version in (4, 6):
        mine = [a for a in addresses if a.version == version]
        lines += _bind_lines(version, mine)
    return lines


def _bind_lines(
    version: int, addresses: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
) -> Iterator[str]:
    if len(addresses) == 1:
        yield f"bindaddress {addresses[0].ip}"
    elif addresses:
        listed = ", ".join(str(a.ip) for a in addresses)
        yield f"# IPv{version}: {listed}: chrony binds one address per family, so it"
        yield "# listens on all and `allow` plus the firewall decide who is answered."
    else:
        yield f"# IPv{version}: no serving address: loopback only (no client is allowed anyway)."
        yield f"bindaddress {LOOPBACK[version]}"


def _control(paths: ChronyPaths) -> list[str]:
    return [
        "# No remote control: no UDP command port, a Unix socket private to this instance.",
        "cmdport 0",
        f"bindcmdaddress {paths.socket}",
    ]


def _files(paths: ChronyPaths, time: TimeService) -> list[str]:
    lines = [
        "# State and logs, under the PlantGate state directory.",
        f"pidfile {paths.pidfile}",
        f"driftfile {paths.driftfile}",
        f"logdir {paths.logdir}",
        "log measurements statistics tracking",
    ]
    if time.nts:
        lines.append(f"ntsdumpdir {paths.ntsdir}")
    return lines


def _limits(
    time: TimeService, timing: Timing, discipline_clock: bool, leapsectz: bool
) -> list[str]:
    local = f"local stratum {time.orphan_stratum} orphan"
    if timing.orphan_distance is not None:
        local += f" distance {timing.orphan_distance:g}"
    lines = [
        "# Without upstream, keep serving at a stratum that says so (orphan mode).",
        local,
    ]
    if timing.max_clock_error is not None:
        lines.append(f"maxclockerror {timing.max_clock_error:g}")
    lines.append("# Never accept an upstream jump of more than 1000 s after the first update.")
    lines.append(MAXCHANGE)
    if discipline_clock:
        lines.append("# Step a clock that booted far off, in the first three updates only.")
        lines.append(MAKESTEP)
    if leapsectz:
        lines.append(f"leapsectz {LEAPSECTZ}")
    return lines
