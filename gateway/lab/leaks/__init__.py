"""The support tunnel's leak test in the lab: captures, marked probes, and the tunnel's states.

In the manner of Mullvad's leak tests: captures run for the whole test on the physical side
(gw's `wan0`, the plant's `eth0` and `up0`) and inside the tunnel where it comes out at the
concentrator (`wg-conc` in `upstream`); a **positive control** proves first that they see
marked packets; then, in every state the tunnel can be in, **probes** of every kind (TCP
connect, UDP datagram, ICMP echo; IPv4 and, in the IPv6 state, IPv6) go from the appliance
and from a hub toward the staff and the concentrator's inner address, and from the staff
toward the appliance and a hub. The verdicts on packets are `gateway.vpn.leakcheck`'s.

Pure logic and side effects live apart:

* `probes` (pure): the lab's addresses as the test uses them, the probe catalogue, and what
  a probe's result means (answered + forbidden = breach);
* `findings` (pure): what a stretch of a run saw (`Window`), and the packets each
  kill-switch rule dropped, read from `nft list table` text;
* `capture`: the AF_PACKET captures, with kernel timestamps and drop counters;
* `prober`: sends the probes with this run's markers; UDP echo responders on the targets;
* `states`: `LeakLab`, the tunnel's states entered and left the way they happen (SIGKILL,
  `vpn disable`, the gate's nftables element, IPv6 on, ...) and `baseline()`;
* `run`: `LeakRun`, captures and prober around one lab for a whole run.

Everything stays inside the lab's namespaces and 198.18.0.0/15; the IPv6 addresses come from
the benchmarking range 2001:2::/48 (RFC 5180) and the ULA fd00::/8, also inside the lab.
"""

from gateway.lab.leaks.capture import Capture, Captures
from gateway.lab.leaks.findings import Window, counts_since, kill_switch_counts
from gateway.lab.leaks.prober import Prober
from gateway.lab.leaks.probes import (
    ALICE,
    BOB,
    HUB1,
    MALLORY,
    LeakProbe,
    ProbeResult,
    control_probes,
    ipv6_probes,
    site_probes,
    staff_probes,
)
from gateway.lab.leaks.run import LeakRun
from gateway.lab.leaks.states import LeakLab, LeakLabError

__all__ = [
    "ALICE",
    "BOB",
    "HUB1",
    "MALLORY",
    "Capture",
    "Captures",
    "LeakLab",
    "LeakLabError",
    "LeakProbe",
    "LeakRun",
    "ProbeResult",
    "Prober",
    "Window",
    "control_probes",
    "counts_since",
    "ipv6_probes",
    "kill_switch_counts",
    "site_probes",
    "staff_probes",
]
