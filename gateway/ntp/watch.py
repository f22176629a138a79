"""The monitor's adapters: ntplib queries, the upstreams' addresses, and the asyncio task.

`ntp_watch` runs inside plantgated. Every `time.monitor_interval` seconds it asks each
upstream address and the relay (at its serving address) with ntplib, feeds the answers to
the pure `Monitor`, and publishes what comes out on the daemon's bus.

- Upstream FQDNs are resolved through the policy's own resolver (`gateway.dns.lookup`), as
  the firewall resolves them: the monitor asks exactly the addresses the relay may reach.
  A record is reused until its TTL runs out; at most four addresses per name are asked, and
  only A records (IPv6 upstreams are asked when the policy lists their addresses).
- The relay is asked at most once per `RELAY_SPACING` seconds, the spacing its own rate
  limit grants one client; a shorter monitor interval would be answered "too often".
- The first round waits one interval, so a relay that has just started (and serves from
  its local reference until its first sync) is not reported as orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ntplib

from gateway.dns.lookup import DnsLookup, LookupFailed, resolver_addresses
from gateway.events import Bus
from gateway.ntp.monitor import Monitor, RelaySample, Round, Thresholds, UpstreamSample
from gateway.policy.addresses import parse_net
from gateway.policy.model import Policy, TimeService

log = logging.getLogger("plantgated.ntp")
QUERY_TIMEOUT = 1.0
RELAY_SPACING = 8.0  # 2**3 s: `ratelimit interval 3`
MAX_ADDRESSES_PER_NAME = 4
IDLE_S = 2.0


@dataclass(frozen=True)
class Target:
    """An upstream address to ask, or a name that gave none (`error`)."""

    label: str
    address: str | None
    error: str | None = None


@dataclass(frozen=True)
class WatchSetup:
    """What the monitor needs from the current revision."""

    policy: Policy
    time: TimeService
    relay: str | None  # the relay's serving address, None when it has none


# ---------------------------------------------------------------- ntplib


def ask(address: str, timeout: float = QUERY_TIMEOUT) -> ntplib.NTPStats:
    """One NTPv4 client request; ntplib.NTPException when nothing answers in time."""
    stats: ntplib.NTPStats = ntplib.NTPClient().request(address, version=4, timeout=timeout)
    return stats


def upstream_sample(target: Target, stats: ntplib.NTPStats) -> UpstreamSample:
    return UpstreamSample(
        label=target.label,
        address=target.address,
        offset=float(stats.offset),
        delay=float(stats.delay),
        stratum=int(stats.stratum),
        leap=int(stats.leap),
        ref_id=int(stats.ref_id),
    )


def relay_sample(stats: ntplib.NTPStats) -> RelaySample:
    return RelaySample(
        stratum=int(stats.stratum),
        ref_id=int(stats.ref_id),
        offset=float(stats.offset),
        leap=int(stats.leap),
    )


def query_upstream(target: Target, timeout: float = QUERY_TIMEOUT) -> UpstreamSample:
    if target.address is None:
        return UpstreamSample(target.label, None, error=target.error or "no address")
    try:
        return upstream_sample(target, ask(target.address, timeout))
    except (ntplib.NTPException, OSError) as exc:
        return UpstreamSample(target.label, target.address, error=_reason(exc, timeout))


def query_relay(address: str, timeout: float = QUERY_TIMEOUT) -> RelaySample:
    try:
        return relay_sample(ask(address, timeout))
    except (ntplib.NTPException, OSError) as exc:
        return RelaySample(error=_reason(exc, timeout))


def _reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, ntplib.NTPException) and "No response" in str(exc):
        return f"no answer within {timeout:g} s"
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------- upstream addresses


Resolve = Callable[[str], tuple[list[str], float]]  # name -> (addresses, ttl seconds)


def upstream_targets(policy: Policy, time_: TimeService, resolve: Resolve | None) -> list[Target]:
    """Every address the monitor asks, in policy order; a name without any is a failed
    target, so that a dead resolver counts as a lost upstream."""
    targets: list[Target] = []
    for name in time_.upstreams:
        endpoint = policy.endpoints[name]
        for text in endpoint.addresses:
            net = parse_net(text)
            if net.is_host:
                targets.append(Target(f"{name} ({net})", str(net)))
        for fqdn in endpoint.fqdn:
            targets += _name_targets(name, fqdn, resolve)
    return targets


def _name_targets(endpoint: str, fqdn: str, resolve: Resolve | None) -> list[Target]:
    if resolve is None:
        return [Target(f"{endpoint} {fqdn}", None, "the policy names no resolver")]
    try:
        addresses, _ttl = resolve(fqdn)
    except LookupFailed as exc:
        return [Target(f"{endpoint} {fqdn}", None, f"could not resolve: {exc}")]
    if not addresses:
        return [Target(f"{endpoint} {fqdn}", None, "the name has no address")]
    chosen = addresses[:MAX_ADDRESSES_PER_NAME]
    return [Target(f"{endpoint} {fqdn} ({a})", a) for a in chosen]


@dataclass
class CachedResolver:
    """A records through the policy's resolver, kept for their TTL."""

    lookup: DnsLookup
    clock: Callable[[], float] = time.monotonic
    cache: dict[str, tuple[float, list[str], float]] = field(default_factory=dict)

    def __call__(self, name: str) -> tuple[list[str], float]:
        now = self.clock()
        cached = self.cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        answer = self.lookup.lookup(name, 4)
        addresses, ttl = list(answer.addresses), float(max(answer.ttl, 30))
        self.cache[name] = (now + ttl, addresses, ttl)
        return addresses, ttl


def resolver_for(policy: Policy) -> CachedResolver | None:
    servers = resolver_addresses(policy)
    return CachedResolver(DnsLookup(servers)) if servers else None


# ---------------------------------------------------------------- the task


async def ntp_watch(
    setup: Callable[[], WatchSetup | None], bus: Bus, stopping: asyncio.Event
) -> None:
    """Monitor the relay and its upstreams until `stopping` is set.

    `setup()` gives the current revision's time section and the relay's address (None
    while there is no relay); a new time section starts a fresh `Monitor`.
    """
    current: WatchSetup | None = None
    monitor = Monitor()
    resolve: CachedResolver | None = None
    relay_asked = 0.0
    while not stopping.is_set():
        wanted = setup()
        if wanted is not current:  # the service hands over a new setup only on change
            current, relay_asked = wanted, time.monotonic()  # the first relay query waits too
            if wanted is not None:
                monitor = Monitor(Thresholds.from_time(wanted.time))
                resolve = resolver_for(wanted.policy)
                log.info("NTP monitor: every %g s", wanted.time.monitor_interval)
            if await _pause(stopping, wanted.time.monitor_interval if wanted else IDLE_S):
                return
            continue
        if current is None:
            if await _pause(stopping, IDLE_S):
                return
            continue
        ask_relay = current.relay is not None and time.monotonic() - relay_asked >= RELAY_SPACING
        if ask_relay:
            relay_asked = time.monotonic()
        round_ = await monitor_round(current, resolve, ask_relay)
        for event in monitor.feed(round_):
            await bus.publish(event)
        if await _pause(stopping, current.time.monitor_interval):
            return


async def monitor_round(setup: WatchSetup, resolve: Resolve | None, ask_relay: bool) -> Round:
    """Ask every upstream address (and the relay, if `ask_relay`) concurrently."""
    targets = await asyncio.to_thread(upstream_targets, setup.policy, setup.time, resolve)
    relay = None
    if ask_relay and setup.relay is not None:
        relay = asyncio.create_task(asyncio.to_thread(query_relay, setup.relay))
    samples = await asyncio.gather(*(asyncio.to_thread(query_upstream, t) for t in targets))
    return Round(tuple(samples), await relay if relay is not None else None)


async def _pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until stopping; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()
