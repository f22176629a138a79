"""Which upstream addresses chronyd uses, chosen from what the firewall allows (pure).

Names are resolved by the policy's resolver into the endpoint's nftables set; a pool name
answers with a few random servers each time and its TTL is short, so the set's members come
and go. chronyd, on the other hand, wants to keep polling the same servers. So plantgated
chooses up to `LIMIT` addresses from the set, writes them to chronyd's `sourcedir`, and keeps
them pinned in the set (re-added with a long timeout) while chronyd uses them. A chosen
server that stops answering is replaced by another from the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

LIMIT = 4  # servers per relay: enough for chrony to out-vote one falseticker
PIN_TIMEOUT_S = 3600  # how long a pinned address stays allowed without being pinned again
PIN_EVERY_S = 600.0
UNREACHABLE_AFTER_S = 300.0  # a server silent this long after being chosen is replaced


def choose(
    candidates: Iterable[str],
    current: Sequence[str],
    unreachable: Iterable[str] = (),
    limit: int = LIMIT,
) -> list[str]:
    """Keep the current choices that answer; fill up from the candidates, in a stable order.

    Current choices stay even when DNS no longer returns them (they are pinned in the set);
    only servers that stopped answering are dropped.
    """
    dead = set(unreachable)
    kept = [a for a in current if a not in dead][:limit]
    for address in sorted(set(candidates), key=_order):
        if len(kept) >= limit:
            break
        if address not in kept and address not in dead:
            kept.append(address)
    return kept


def _order(address: str) -> tuple[int, str]:
    return (6 if ":" in address else 4, address)


def render_sources(addresses: Sequence[str], options: str) -> str:
    """A chrony sourcedir file: one `server` line per chosen address."""
    header = "# written by plantgated: upstreams chosen from the firewall's resolved sets\n"
    return header + "".join(f"server {address} {options}\n" for address in addresses)
