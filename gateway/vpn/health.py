"""Tunnel health as a pure state machine: samples in, state changes out.

States (each change is published once as `vpn.tunnel_state`):

- `disabled`: the effective mode is `disabled` (the policy, or `plantgate vpn disable`), or
  the policy has no `support_vpn` section. There must be no tunnel.
- `down`: the mode wants a tunnel, but its interface is missing or its WireGuard does not
  answer (wireguard-go died).
- `connecting`: the interface answers, but there has never been a handshake with the
  concentrator.
- `up`: the latest handshake is recent enough for the session keys to be valid.
- `stale`: the session is dead. The latest handshake is older than 180 s, or older than
  135 s while we keep sending and hear nothing back.

The numbers are WireGuard's. Keys rotate every 120 s (REKEY_AFTER_TIME) while packets flow,
and the persistent keepalive keeps them flowing; after 180 s (REJECT_AFTER_TIME) a session's
keys are refused, so a handshake that old means no session. wireguard-tools' reresolve-dns
script calls a peer stalled at 135 s (120 s plus the rekey timeout and jitter); we use that
earlier mark only when the transfer counters show it: tx grew since the last sample and rx
did not. With `keepalive: 0` an idle tunnel has no handshakes and shows `stale` after 180 s,
which is true (the next packet starts a new handshake); use a keepalive to watch it.

The kill switch does not depend on any of this: it is in the kernel. The state only tells
people, the watcher and the supervisor what the tunnel is doing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["disabled", "connecting", "up", "stale", "down"]
STATES: tuple[State, ...] = ("disabled", "connecting", "up", "stale", "down")
ACTIVE_MODES = ("gated", "always-on")
SESSION_DEAD_S = 180.0  # REJECT_AFTER_TIME
STALLED_S = 135.0  # wireguard-tools' reresolve-dns.sh
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0


@dataclass(frozen=True)
class Sample:
    """One look at the tunnel.

    `mode` is the effective support_vpn mode, or "none" without a support_vpn section.
    `interface` is True when the interface exists and its WireGuard answered `wg show`.
    `handshake` is the concentrator peer's latest handshake (UNIX seconds, 0 = never).
    `why_down` says what the supervisor knows (for example "wireguard-go was killed by
    SIGKILL"); it only colours the reason of a `down` state.
    """

    mode: str
    interface: bool
    handshake: int
    rx: int
    tx: int
    now: float
    why_down: str = ""


@dataclass(frozen=True)
class Assessment:
    state: State
    reason: str
    handshake_age: float | None  # seconds; None = never (or no interface)


@dataclass(frozen=True)
class Transition:
    """A change of state, as `vpn.tunnel_state` carries it."""

    state: State
    previous: State | None
    reason: str
    handshake_age: float | None
    at: float


def handshake_age(handshake: int, now: float) -> float | None:
    return None if handshake <= 0 else max(0.0, now - handshake)


def assess(sample: Sample, previous: Sample | None = None) -> Assessment:
    """The state one sample shows; `previous` (the sample before) gives the counter deltas."""
    if sample.mode == "none":
        return Assessment("disabled", "the policy has no support_vpn section", None)
    if sample.mode not in ACTIVE_MODES:
        return Assessment("disabled", "the support VPN is disabled", None)
    if not sample.interface:
        return Assessment("down", sample.why_down or "the tunnel interface is missing", None)
    age = handshake_age(sample.handshake, sample.now)
    if age is None:
        return Assessment("connecting", "no handshake with the concentrator yet", None)
    if age > SESSION_DEAD_S:
        return Assessment("stale", f"last handshake {age:.0f} s ago: the session has expired", age)
    if age > STALLED_S and previous is not None and _silent(previous, sample):
        return Assessment(
            "stale", f"last handshake {age:.0f} s ago and nothing heard while sending", age
        )
    return Assessment("up", f"handshake {age:.0f} s ago", age)


def _silent(before: Sample, now: Sample) -> bool:
    """We sent since the last sample and received nothing (counters reset count as neither)."""
    return now.tx > before.tx and now.rx <= before.rx


class TunnelHealth:
    """Feeds samples through `assess` and reports each change of state once."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.since: float | None = None
        self.last: Assessment | None = None
        self._previous: Sample | None = None

    def feed(self, sample: Sample) -> Transition | None:
        previous = self._previous if self._comparable(sample) else None
        assessment = assess(sample, previous)
        self._previous = sample
        self.last = assessment
        if assessment.state == self.state:
            return None
        change = Transition(
            assessment.state, self.state, assessment.reason, assessment.handshake_age, sample.now
        )
        self.state, self.since = assessment.state, sample.now
        return change

    def _comparable(self, sample: Sample) -> bool:
        """Counter deltas mean something only between two samples of a live interface."""
        before = self._previous
        return before is not None and before.interface and sample.interface


def next_backoff(previous: float, uptime: float) -> float:
    """Seconds before recreating a tunnel whose WireGuard lasted `uptime` seconds.

    1 s after the first failure, doubling up to 60 s; back to 1 s once a tunnel stayed up
    for a minute.
    """
    if uptime >= STABLE_AFTER or previous <= 0:
        return BACKOFF_FIRST
    return min(BACKOFF_MAX, previous * 2)
