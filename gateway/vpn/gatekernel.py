"""The gate in the kernel: grant elements in `gate_<gate>_v4|v6`, and conntrack cleanup.

`sync(gate, keep, drop)` runs one libnftables transaction:

* each element in `keep` is added, deleted and added again with the time it has left as its
  timeout, so it ends exactly when its window does (a plain re-add would keep an older
  timeout); the kernel removes it then, whether or not any PlantGate process still runs;
* each element in `drop` is added (with a short timeout) and deleted, so that deleting an
  element that has already expired in the kernel is not an error.

Then every live conntrack entry of a dropped grant (original direction staff -> target,
protocol and port) is deleted through ctnetlink (pyroute2: a dump filtered in the kernel by
source address, then one delete per entry), so established sessions do not outlive the
gate; the ruleset's grant guard (`gateway.policy.killswitch`) resets their next packet. TCP
entries already in TIME_WAIT or CLOSE are left to time out: their session is over, and a
SYN reusing the tuple is a new connection the access rules drop. Each delete costs about
1.6 ms through pyroute2, which only matters for hundreds of live flows.

Both run in the calling thread's network namespace: the libnftables context and the netlink
socket are created inside `sync`, never ahead of it in some other thread.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from gateway.policy.addresses import canonical
from gateway.policy.nft import Nft
from gateway.policy.ruleset import TABLE_FAMILY, TABLE_NAME
from gateway.vpn.gate import Grant

PROTO_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
FINISHED_TCP = frozenset({"TIME_WAIT", "CLOSE"})


class GateKernel(Protocol):
    def sync(self, gate: str, keep: Mapping[Grant, float], drop: Iterable[Grant]) -> int:
        """Make the kernel hold `keep` (seconds left each) and not `drop`; returns the
        number of conntrack entries deleted."""
        ...


def set_name(gate: str, grant: Grant) -> str:
    return f"gate_{gate}_v{6 if ':' in grant.staff else 4}"


def element(grant: Grant) -> str:
    return f"{grant.staff} . {grant.target} . {grant.proto} . {grant.port}"


def nft_time(seconds: float) -> str:
    """Seconds -> nft's time syntax in milliseconds ('1h2m3s500ms'); at least 1 ms.

    nftables refuses a bare millisecond count above 2**32, so the value is spelled out.
    """
    left = max(1, round(seconds * 1000))
    parts = []
    for name, unit in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if left >= unit:
            parts.append(f"{left // unit}{name}")
            left %= unit
    if left:
        parts.append(f"{left}ms")
    return "".join(parts)


def sync_script(gate: str, keep: Mapping[Grant, float], drop: Iterable[Grant]) -> str:
    """The one-transaction script for `sync` (pure)."""
    lines: list[str] = []
    for grant in sorted(keep):
        target = f"{TABLE_FAMILY} {TABLE_NAME} {set_name(gate, grant)}"
        timed = f"{{ {element(grant)} timeout {nft_time(keep[grant])} }}"
        lines += [
            f"add element {target} {timed}",
            f"delete element {target} {{ {element(grant)} }}",
            f"add element {target} {timed}",
        ]
    for grant in sorted(set(drop) - set(keep)):
        target = f"{TABLE_FAMILY} {TABLE_NAME} {set_name(gate, grant)}"
        lines += [
            f"add element {target} {{ {element(grant)} timeout 1s }}",
            f"delete element {target} {{ {element(grant)} }}",
        ]
    return "\n".join(lines) + "\n" if lines else ""


class NftGateKernel:
    """The real kernel, in the calling thread's namespace."""

    def __init__(
        self,
        nft_factory: Callable[[], Nft] = Nft,
        flows: Callable[[Iterable[Grant]], int] | None = None,
    ) -> None:
        self._nft_factory = nft_factory
        self._flows = flows or delete_flows

    def sync(self, gate: str, keep: Mapping[Grant, float], drop: Iterable[Grant]) -> int:
        dropped = sorted(set(drop) - set(keep))
        script = sync_script(gate, keep, dropped)
        if script:
            self._nft_factory().run_script(script)
        return self._flows(dropped) if dropped else 0


def delete_flows(grants: Iterable[Grant]) -> int:
    """Delete the conntrack entries of these grants (original direction staff -> target)."""
    from pyroute2 import Conntrack, NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    wanted = {(g.staff, g.target, PROTO_NUMBERS[g.proto], g.port) for g in grants}
    deleted = 0
    for family in sorted({_family(staff) for staff, *_ in wanted}):
        conntrack: Any = Conntrack(nfgen_family=family)
        try:
            for staff in sorted({s for s, *_ in wanted if _family(s) == family}):
                query = NFCTAttrTuple(family=family, saddr=staff)
                for entry in list(conntrack.dump_entries(tuple_orig=query)):
                    orig = entry.tuple_orig
                    key = (canonical(orig.saddr), canonical(orig.daddr), orig.proto, orig.dport)
                    if key not in wanted or _finished(entry):
                        continue
                    try:
                        conntrack.delete(entry)
                        deleted += 1
                    except NetlinkError as exc:
                        if exc.code != errno.ENOENT:  # gone by itself meanwhile
                            raise
        finally:
            conntrack.close()
    return deleted


def _finished(entry: Any) -> bool:
    """A TCP flow already closed (TIME_WAIT, CLOSE): nothing left to end, so it is kept."""
    info = entry.protoinfo
    return info is not None and info.state_name() in FINISHED_TCP


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
