"""DNS anomalies: an unapproved resolver, very long names or labels, high-entropy labels,
bursts of failures.

Input: `PacketEvent`s of kind `dns` — the ruleset logs udp/53 both ways with a snaplen large
enough to decode (gateway/policy/watchlog.py, prefix `pg dns: `): what arrives or is forwarded
(prerouting) and what the appliance sends (output). `payload` starts at the IP header; the
UDP payload is found with `udp_payload` and decoded with dnspython (header and question only:
`question_only=True`, which is all the rules read and much cheaper than a full parse).
Anything that does not decode is ignored and counted in `malformed`; nothing here raises on
packet bytes. DNS over TCP is not logged by the ruleset and not looked at.

Rules:

- `PG-DNS-RESOLVER` — a query from a client other than the appliance to a resolver that is
  neither the appliance nor in `approved_resolvers`. On the shipped matrix hubs have no DNS
  at all (the appliance resolves for itself), so any hub query outside is suspect: a
  misconfigured device, or DNS used as a channel out. Key `client>resolver`.
- `PG-DNS-LONG-NAME` — a query name of `long_name_length` characters or more, or a label of
  `long_label_length` or more. Tunnels (iodine, dnscat2) pack data into names near the
  253/63 limits; ordinary names are far shorter. Key: the client.
- `PG-DNS-ENTROPY` — a label of at least `entropy_min_length` characters whose Shannon
  entropy is `entropy_threshold` bits per character or more (encoded data; random
  subdomains). Labels are lower-cased first: resolvers randomise letter case (DNS 0x20),
  which would otherwise raise the entropy of any name. Short labels never fire: the
  entropy of a short string says little (a random 16-character label averages ~3.6 bits,
  English-like 23-character labels reach ~3.9). Key: the client.
- `PG-DNS-FAILURES` — `failure_threshold` NXDOMAIN or SERVFAIL responses to one client within
  `failure_window_s`: domain-generation malware walks names that do not exist. Key: client.

Names under `ignore_suffixes` are not checked for length or entropy. Queries (QR=0, to port
53) are checked for resolver, length and entropy; responses (QR=1) for failures, so a query
and its answer never count twice.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import Counter
from collections.abc import Sequence
from typing import Annotated

import dns.exception
import dns.message
import dns.rdatatype
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.alerts import attack
from gateway.alerts.record import Evidence, Rule, Severity, Trigger, flow_network
from gateway.watch.detectors.base import PacketEvent, SiteView, WatchEvent, trigger_time
from gateway.watch.detectors.bounded import NewSourcesPerMinute, ReportEvery
from gateway.watch.detectors.components import (
    NO_TRIGGERS,
    Tally,
    endpoint,
    overflowing,
    udp_payload,
)

RESOLVER = Rule("PG-DNS-RESOLVER", "DNS query to an unapproved resolver")
LONG_NAME = Rule("PG-DNS-LONG-NAME", "Very long DNS name or label")
ENTROPY = Rule("PG-DNS-ENTROPY", "High-entropy DNS label")
FAILURES = Rule("PG-DNS-FAILURES", "Burst of DNS failures")

NXDOMAIN, SERVFAIL = 3, 2
_RCODE_NAMES = {NXDOMAIN: "NXDOMAIN", SERVFAIL: "SERVFAIL"}
_QR = 0x80  # first flags byte


def _address(value: str) -> str:
    return str(ipaddress.ip_address(value))


def _suffix(value: str) -> str:
    name = value.strip().strip(".").lower()
    if not name or len(name) > 253 or any(not label for label in name.split(".")):
        raise ValueError(f"not a domain name: {value!r}")
    return name


Address = Annotated[str, AfterValidator(_address), Field(description="An IPv4/IPv6 address.")]
Suffix = Annotated[str, AfterValidator(_suffix), Field(description="A domain, e.g. 'example.com'.")]


class DnsSettings(BaseModel):
    """Thresholds of the DNS detector (defaults for a small plant LAN)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Turn the DNS detections on or off.")
    approved_resolvers: list[Address] = Field(
        default_factory=list,
        description="Resolvers clients may query besides the appliance itself.",
    )
    long_name_length: int = Field(
        default=120,
        ge=1,
        le=255,
        description="A query name of this many characters or more is reported (PG-DNS-LONG-NAME).",
    )
    long_label_length: int = Field(
        default=50,
        ge=1,
        le=63,
        description="A label of this many characters or more is reported (PG-DNS-LONG-NAME).",
    )
    entropy_threshold: float = Field(
        default=4.0,
        gt=0,
        le=8,
        description="Shannon entropy, bits per character, at or above which a label is "
        "reported (PG-DNS-ENTROPY).",
    )
    entropy_min_length: int = Field(
        default=24,
        ge=1,
        le=63,
        description="Labels shorter than this are not judged by entropy (too short to say).",
    )
    ignore_suffixes: list[Suffix] = Field(
        default_factory=list,
        description="Names under these domains are not checked for length or entropy.",
    )
    failure_threshold: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="NXDOMAIN/SERVFAIL answers to one client within failure_window_s that "
        "make an alert (PG-DNS-FAILURES).",
    )
    failure_window_s: float = Field(
        default=60.0, gt=0, le=86_400, description="Window for failure_threshold, in seconds."
    )
    report_every_s: ReportEvery = 10.0
    new_sources_per_minute: NewSourcesPerMinute = 60
    max_tracked: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Most clients (or client-resolver pairs) tracked per rule at once.",
    )


_C_LOG_C = tuple(c * math.log2(c) if c else 0.0 for c in range(256))


def label_entropy(label: bytes) -> float:
    """Shannon entropy of a label in bits per character: log2(n) - sum(c log2 c) / n over
    the byte counts c, with c log2 c from a table (labels are at most 63 bytes)."""
    n = len(label)
    if n == 0:
        return 0.0
    table = _C_LOG_C
    return max(0.0, math.log2(n) - sum(table[c] for c in Counter(label).values()) / n)


class DnsDetector:
    """`pg dns:` packets -> DNS triggers. State: four `Tally`s of at most `max_tracked`."""

    name = "dns"
    accepts = frozenset({"packet:dns"})

    def __init__(self, settings: DnsSettings | None = None) -> None:
        self.settings = s = settings or DnsSettings()
        every, most, budget = s.report_every_s, s.max_tracked, s.new_sources_per_minute
        self._resolver = Tally(1, every, every, most, budget)
        self._long = Tally(1, every, every, most, budget)
        self._entropy = Tally(1, every, every, most, budget)
        self._failures = Tally(s.failure_threshold, s.failure_window_s, every, most)
        self._approved = frozenset(s.approved_resolvers)
        self._suffixes = tuple("." + x for x in s.ignore_suffixes)
        self._exact = frozenset(s.ignore_suffixes)
        self._shortest = min(s.long_name_length, s.long_label_length, s.entropy_min_length)
        self.malformed = 0

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if type(event) is not PacketEvent or event.kind != "dns" or not self.settings.enabled:
            return NO_TRIGGERS
        packet = event.packet
        if packet.src is None or packet.dst is None:
            return NO_TRIGGERS
        wire = udp_payload(event.payload)
        if wire is None or len(wire) < 12:
            self.malformed += 1
            return NO_TRIGGERS
        if wire[2] & _QR:
            if packet.sport != 53:
                return NO_TRIGGERS
            rcode = wire[3] & 0x0F  # the header's rcode: no need to parse the rest
            if rcode not in _RCODE_NAMES:
                return NO_TRIGGERS
            return self._failure(event, site, rcode, wire)
        if packet.dport != 53:
            return NO_TRIGGERS
        return self._query(event, site, wire)

    def tick(self, ts: float) -> Sequence[Trigger]:
        out: list[Trigger] = []
        for tally in (self._resolver, self._long, self._entropy, self._failures):
            out += tally.flush(ts)
        return out

    def state_size(self) -> int:
        return len(self._resolver) + len(self._long) + len(self._entropy) + len(self._failures)

    # ------------------------------------------------------------ decoding

    def _question(self, wire: bytes) -> tuple[str, tuple[bytes, ...], str] | None:
        """(name as text, lower-cased labels, type) of the first question, or None."""
        plain = plain_question(wire)
        if plain is not None:
            return plain
        try:
            message = dns.message.from_wire(wire, question_only=True, ignore_trailing=True)
            if not message.question:
                return None
            rrset = message.question[0]
            name = rrset.name
            labels = tuple(x.lower() for x in name.labels if x)
            return name.to_text(omit_final_dot=True)[:300], labels, _rdtype(rrset.rdtype)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
            # dnspython's own errors, and the stdlib ones its decoders can raise on junk
            self.malformed += 1
            return None

    def _ignored(self, text: str) -> bool:
        lowered = text.lower()
        return lowered in self._exact or lowered.endswith(self._suffixes)

    # ------------------------------------------------------------ rules

    def _query(self, event: PacketEvent, site: SiteView, wire: bytes) -> Sequence[Trigger]:
        packet = event.packet
        client, resolver = str(packet.src), str(packet.dst)
        count, key = 0, ""
        if (
            resolver not in self._approved
            and not site.is_appliance(resolver)
            and not site.is_appliance(client)
        ):
            key = self._resolver.admit(f"{client}>{resolver}", event.ts)
            count = self._resolver.add(key, event.ts)
        # The name sits between the 12-byte header and qtype/qclass (4), and takes 2 bytes
        # more than its labels: when that room is below every length and entropy limit, no
        # rule can fire on it, and dnspython's parse (~20 us) is skipped.
        if not count and len(wire) - 18 < self._shortest:
            return NO_TRIGGERS
        name, labels, qtype = self._question(wire) or ("?", (), "?")
        out: list[Trigger] = []
        s = self.settings
        if count:
            trigger = self._trigger(
                RESOLVER,
                key,
                Severity.MEDIUM,
                overflowing(
                    key, f"{client} queried unapproved resolver {resolver} for {name} ({qtype})"
                ),
                event,
                site,
                count,
                None,
                {"query": name, "qtype": qtype},
            )
            self._resolver.remember(key, trigger)
            out.append(trigger)
        if not labels or self._ignored(name):
            return out
        longest = max(len(x) for x in labels)
        length = sum(len(x) for x in labels) + len(labels) - 1
        if length >= s.long_name_length or longest >= s.long_label_length:
            key = self._long.admit(client, event.ts)
            count = self._long.add(key, event.ts)
            if count:
                by_name = length >= s.long_name_length
                threshold = s.long_name_length if by_name else s.long_label_length
                what = f"a {length}-character name" if by_name else f"a {longest}-character label"
                trigger = self._trigger(
                    LONG_NAME,
                    key,
                    Severity.MEDIUM,
                    overflowing(key, f"{client} queried {what} (limit {threshold}): {name}"),
                    event,
                    site,
                    count,
                    Evidence(threshold, None, float(length if by_name else longest)),
                    {"query": name, "qtype": qtype, "name_length": length},
                )
                self._long.remember(key, trigger)
                out.append(trigger)
        judged = [(label_entropy(x), x) for x in labels if len(x) >= s.entropy_min_length]
        if judged:
            entropy, label = max(judged)
            if entropy >= s.entropy_threshold:
                key = self._entropy.admit(client, event.ts)
                count = self._entropy.add(key, event.ts)
                if count:
                    shown = label.decode("ascii", "backslashreplace")
                    trigger = self._trigger(
                        ENTROPY,
                        key,
                        Severity.MEDIUM,
                        overflowing(
                            key,
                            f"{client} queried a random-looking label ({entropy:.2f} "
                            f"bits/char, limit {s.entropy_threshold:g}): {shown} in {name}",
                        ),
                        event,
                        site,
                        count,
                        Evidence(s.entropy_threshold, None, round(entropy, 3)),
                        {"query": name, "qtype": qtype},
                    )
                    self._entropy.remember(key, trigger)
                    out.append(trigger)
        return out

    def _failure(
        self, event: PacketEvent, site: SiteView, rcode: int, wire: bytes
    ) -> Sequence[Trigger]:
        client = str(event.packet.dst)
        count = self._failures.add(client, event.ts)
        if not count:
            return NO_TRIGGERS
        question = self._question(wire)
        name = question[0] if question else "?"
        s = self.settings
        total = self._failures.total(client)
        trigger = self._trigger(
            FAILURES,
            client,
            Severity.LOW,
            f"{client} got {total} failed DNS answers within {s.failure_window_s:g} s "
            f"(latest {_RCODE_NAMES[rcode]} for {name})",
            event,
            site,
            count,
            Evidence(s.failure_threshold, s.failure_window_s, float(total)),
            {"query": name, "rcode": _RCODE_NAMES[rcode]},
        )
        self._failures.remember(client, trigger)
        return (trigger,)

    def _trigger(
        self,
        rule: Rule,
        key: str,
        severity: Severity,
        summary: str,
        event: PacketEvent,
        site: SiteView,
        count: int,
        evidence: Evidence | None,
        labels: dict[str, str | int],
    ) -> Trigger:
        packet = event.packet
        source = endpoint(site, packet.src, packet.sport, event.mac)
        destination = endpoint(site, packet.dst, packet.dport)
        network = None
        if source is not None and destination is not None:
            network = flow_network(source, destination, "udp", "dns")
        return Trigger(
            rule=rule,
            key=key,
            severity=severity,
            summary=summary,
            ts=trigger_time(event.ts),
            # ATT&CK for ICS has a C2 tactic, so DNS tunnels and DGA walks map to T0869
            # rather than Enterprise T1071.004/T1568.002 (attack.py: ICS first).
            technique=attack.STANDARD_APPLICATION_LAYER_PROTOCOL,
            source=source,
            destination=destination,
            network=network,
            evidence=evidence,
            count=count,
            labels=labels,
        )


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def plain_question(wire: bytes) -> tuple[str, tuple[bytes, ...], str] | None:
    """`DnsDetector._question` without dnspython, for the common case: a standard query
    (opcode 0) with one question whose name has only letters, digits, '-' and '_' and no
    compression. Then the text, labels and type are exactly what dnspython gives (nothing to
    escape); anything else answers None, and dnspython decides. Parsing a message with
    dnspython costs tens of microseconds, the walk here a few."""
    if len(wire) < 17 or wire[2] & 0x78 or wire[4] != 0 or wire[5] != 1:
        return None
    labels: list[bytes] = []
    offset, size, plain = 12, len(wire), _PLAIN
    while True:
        if offset >= size:
            return None
        n = wire[offset]
        if n == 0:
            break
        if n > 63 or offset + 1 + n > size:
            return None  # a pointer, an extended label type, or cut short
        label = wire[offset + 1 : offset + 1 + n]
        if not plain.issuperset(label):
            return None
        labels.append(label)
        offset += 1 + n
    if not labels or offset - 12 + 1 > 255 or offset + 5 > size:
        return None  # the root, a name too long, or no type and class
    text = b".".join(labels).decode("ascii")[:300]
    return text, tuple(x.lower() for x in labels), _rdtype(wire[offset + 1] << 8 | wire[offset + 2])


@functools.lru_cache(maxsize=256)
def _rdtype(value: int) -> str:
    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(value))
    except (ValueError, dns.exception.DNSException):
        return str(value)
