"""Synthetic sites for the benchmarks, and the naive rule-list rendering they are compared with.

Pure functions only: text in, text (or ruleset objects) out.

* `site_yaml` grows the lab policy into a site with N extra hubs: N `/32` addresses from
  10.0.0.0/8 are appended to the `hubs` zone's networks, after the lab's own 198.18.10.0/24
  (kept, so the lab's real hubs still match). The addresses are a seeded random sample, not a
  contiguous run: a real plant's hubs are scattered, and contiguous /32s would give the kernel's
  interval tree an unusually easy shape.
* `naive_table` is what a firewall without sets would load for the same site: the lab table
  (hubs zone = the lab network only) plus one rule per extra hub address in the `input`
  chain, ahead of the set-based classification. It only covers the hubs -> appliance path
  (no per-host rules for output or forward), so it *understates* what a complete rule-list
  firewall would cost; the ratios it yields are a lower bound on what sets buy.
"""

from __future__ import annotations

import dataclasses
import io
import random
import socket
from collections.abc import Sequence

from ruamel.yaml import YAML

from gateway.policy.ruleset import NftChain, NftRule, Table

HUB_ZONE = "hubs"
HUB_BASE = 10 << 24  # 10.0.0.0/8
HUB_SPAN = 1 << 24
HUB_SERVICE_SET = "svc_hubs-to-appliance"  # the lab policy's hubs -> appliance ports


def hub_addresses(count: int, seed: int = 2544) -> list[str]:
    """`count` distinct host addresses from 10.0.0.0/8 as `/32` networks, sorted, reproducible.

    Network (.0) and broadcast-looking (.255) last octets are avoided so that the addresses
    look like hosts to a reader of the generated YAML.
    """
    if not 0 <= count <= 1_000_000:
        raise ValueError(f"hub count {count} out of range (0..1,000,000)")
    rng = random.Random(seed)
    chosen: set[int] = set()
    while len(chosen) < count:
        for offset in rng.sample(range(1, HUB_SPAN - 1), count - len(chosen)):
            if offset & 0xFF not in (0, 0xFF):
                chosen.add(offset)
    return [f"{_ipv4(HUB_BASE + offset)}/32" for offset in sorted(chosen)]


def _ipv4(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))


def site_yaml(base_text: str, addresses: Sequence[str], zone: str = HUB_ZONE) -> str:
    """The base policy with `addresses` appended to `zone`'s networks (comments kept)."""
    yaml = YAML(typ="rt")
    yaml.width = 4096
    data = yaml.load(base_text)
    try:
        networks = data["zones"][zone]["networks"]
    except (KeyError, TypeError):
        raise ValueError(f"the base policy has no zone '{zone}' with networks") from None
    networks.fa.set_block_style()
    networks.extend(addresses)
    data["site"]["name"] = f"{data['site']['name']}-{len(addresses)}-hubs"
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def naive_rule(address: str, service_set: str = HUB_SERVICE_SET) -> str:
    """One hub's allow rule, the way a rule-list firewall writes it."""
    host = address.removesuffix("/32")
    return f"ip saddr {host} meta l4proto . th dport @{service_set} accept"


def naive_table(base: Table, addresses: Sequence[str], service_set: str = HUB_SERVICE_SET) -> Table:
    """`base` (the compiled table without the extra hubs) plus one input rule per address.

    The rules go right before the `input` chain's jump into classification, after the
    established/related fast path, so a new connection from a lab hub walks all of them
    before the set-based lookup admits it: the worst case of a rule list, and the usual one
    for the hub that was added last.
    """
    if service_set not in base.sets:
        raise ValueError(f"the base table has no set '{service_set}'")
    chain = base.chains.get("input")
    if chain is None:
        raise ValueError("the base table has no input chain")
    at = next(
        (i for i, rule in enumerate(chain.rules) if rule.statement.startswith("jump ")),
        len(chain.rules),
    )
    per_host = [NftRule(naive_rule(a, service_set)) for a in addresses]
    rules = [*chain.rules[:at], *per_host, *chain.rules[at:]]
    chains = dict(base.chains)
    chains["input"] = dataclasses.replace(chain, rules=rules)
    return dataclasses.replace(
        base,
        comment=f"{base.comment} (naive: {len(addresses)} per-host rules)",
        sets=dict(base.sets),
        maps=dict(base.maps),
        chains=chains,
        limits=dict(base.limits),
    )


def per_host_rules(chain: NftChain) -> int:
    """How many rules of `chain` match a single source host (what `naive_table` adds)."""
    return sum(1 for rule in chain.rules if rule.statement.startswith("ip saddr 10."))
