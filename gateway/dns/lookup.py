"""Resolve FQDN endpoints with dnspython and keep their nftables sets filled.

Only the policy's own resolver endpoint is asked (never the host's resolv.conf), so what the
firewall allows depends on nothing outside the policy. `resolve_all` is the one-shot form
used by `policy apply`; `install` refreshes elements in the live table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from gateway.dns.schedule import Answer, Schedule
from gateway.policy.addresses import parse_net
from gateway.policy.compile import FqdnBinding
from gateway.policy.model import Policy
from gateway.policy.nft import Element, Nft
from gateway.policy.ruleset import TABLE_FAMILY, TABLE_NAME

log = logging.getLogger(__name__)
RDTYPE = {4: dns.rdatatype.A, 6: dns.rdatatype.AAAA}
NEGATIVE_TTL_DEFAULT = 300


class LookupFailed(Exception):
    """No usable answer (timeout, SERVFAIL, refused): try again later."""


def resolver_addresses(policy: Policy) -> list[str]:
    """The host addresses of the policy's resolver endpoint."""
    name = policy.site.resolver
    if name is None:
        return []
    nets = [parse_net(a) for a in policy.endpoints[name].addresses]
    return [str(n) for n in nets if n.first == n.last]


class DnsLookup:
    """A dnspython resolver that asks only the given servers, with a short deadline."""

    def __init__(self, servers: list[str], timeout: float = 2.0) -> None:
        self._resolver = dns.resolver.Resolver(configure=False)
        self._resolver.nameservers = servers
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout / 2
        self._resolver.cache = None

    def lookup(self, name: str, version: int) -> Answer:
        try:
            answer = self._resolver.resolve(name, RDTYPE[version], raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = exc.kwargs.get("responses") or {}
            response = next(iter(responses.values()), None)
            return Answer(name, version, (), _negative_ttl(response))
        except (dns.exception.DNSException, OSError) as exc:
            raise LookupFailed(f"{name} ({RDTYPE[version].name}): {exc}") from None
        if answer.rrset is None:
            return Answer(name, version, (), _negative_ttl(answer.response))
        addresses = tuple(sorted(r.address for r in answer.rrset))
        return Answer(name, version, addresses, answer.rrset.ttl)


def _negative_ttl(response: dns.message.Message | None) -> int:
    """RFC 2308: the SOA minimum (bounded by the SOA's TTL) of a negative answer."""
    if response is not None:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(min(rrset.ttl, rrset[0].minimum))
    return NEGATIVE_TTL_DEFAULT


def resolve_due(schedule: Schedule, lookup: DnsLookup, now: float) -> dict[str, list[Element]]:
    """Make every due lookup, concurrently; return the elements to install, per set.

    Concurrent so that a dead resolver costs one timeout, not one per name: an apply or a
    revert must not wait 2 s for each of a dozen names.
    """
    due = schedule.due(now)
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(due)))) as pool:
        outcomes = list(pool.map(lambda key: _lookup_or_error(lookup, *key), due))
    elements: dict[str, list[Element]] = {}
    for (name, version), outcome in zip(due, outcomes, strict=True):
        if isinstance(outcome, LookupFailed):
            retry = schedule.record_failure(now, name, version)
            log.warning("could not resolve %s; retrying in %.0f s", outcome, retry - now)
            continue
        for set_name, items in schedule.record(now, outcome).items():
            elements.setdefault(set_name, []).extend(items)
    return elements


def _lookup_or_error(lookup: DnsLookup, name: str, version: int) -> Answer | LookupFailed:
    try:
        return lookup.lookup(name, version)
    except LookupFailed as exc:
        return exc


def resolve_all(bindings: Iterable[FqdnBinding], policy: Policy) -> dict[str, list[Element]]:
    """One pass over every FQDN endpoint (for apply); names that fail stay empty."""
    schedule = Schedule.for_bindings(bindings)
    servers = resolver_addresses(policy)
    if not schedule.entries or not servers:
        return {}
    return resolve_due(schedule, DnsLookup(servers), time.monotonic())


def refresh_script(elements: Mapping[str, list[Element]]) -> str:
    """Add, delete and re-add each element in one transaction.

    The add makes the delete safe (the element may have just expired); the delete and
    re-add reset its timeout on kernels that do not update a timeout on plain re-add.
    """
    lines = []
    for set_name in sorted(elements):
        for element in elements[set_name]:
            target = f"{TABLE_FAMILY} {TABLE_NAME} {set_name}"
            lines += [
                f"add element {target} {{ {element.text()} }}",
                f"delete element {target} {{ {element.value} }}",
                f"add element {target} {{ {element.text()} }}",
            ]
    return "\n".join(lines) + "\n" if lines else ""


def install(nft: Nft, elements: Mapping[str, list[Element]]) -> None:
    script = refresh_script(elements)
    if script:
        nft.run_script(script)
