"""The chaos loop's plan (pure): which transitions, in which order, from the seed alone.

The loop used to draw each transition among those the *observed* state allowed. Two
weaknesses followed. A draw depended on what the lab looked like at that moment, which
depends on timing (plantgated restarting wireguard-go after its backoff, a handshake coming
or not), so one seed did not give one run. And the draws were uniform, so a broken tunnel
tended to stay broken: a killed plantgated waited for `plantgated start` to come up among a
dozen others, a restarted concentrator for a rekey. The tunnel was up before 25 of 200
transitions, and alice's granted ssh connected in 8 of 104 bursts with the gate open.

So the plan is drawn up front, from the seed and a *model* of the lab that only the plan
itself changes (`Model`, `step`): the same seed gives the same transitions, whatever the lab
does. The model decides the weights, never whether a transition runs: the loop runs each
planned transition against the lab as it finds it, and one that does not apply there (a
`wireguard-go SIGKILL` with no wireguard-go left to kill) is a no-op, recorded as such.

The weights (`weights`) keep the tunnel up, with the gate open, much of the time, without
giving up the broken states: with the tunnel (modelled) up, a break is as likely as the rest
together and opening the gate is favoured over closing it; with the tunnel down, `heal`
(every process back, the VPN on, the endpoint renewed, a fresh handshake: the tunnel up
again as time and people would bring it back) carries about half the weight, and the single
steps that mend one thing (concentrator start, plantgated start, vpn enable, rekey) and
further breaks share the rest, so the loop still visits tunnels that are down, dying and
coming back, and combinations of faults.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

HEAL = "heal"


@dataclass(frozen=True)
class Model:
    """What the plan assumes about the lab (starting as `make run` leaves it)."""

    daemon: bool = True  # plantgated runs
    concentrator: bool = True
    wireguard: bool = True  # gw's wireguard-go runs
    vpn: bool = True  # not `vpn disable`d
    gate: bool = False  # alice -> hub1 ssh granted
    ipv6: bool = False
    endpoint: bool = True  # the concentrator's address is in the firewall's endpoint set
    fresh: bool = True  # gw's WireGuard session is one the concentrator knows

    @property
    def tunnel(self) -> bool:
        """A handshake both ends know, and nothing stopping it."""
        return self.vpn and self.concentrator and self.wireguard and self.fresh


def _daemon_tunnel(m: Model) -> Model:
    """plantgated (re)creates a missing wireguard-go: a fresh handshake if it knows where to."""
    if m.vpn and m.daemon and not m.wireguard:
        return replace(m, wireguard=True, fresh=m.endpoint and m.concentrator)
    return m


def _vpn_enable(m: Model) -> Model:
    return _daemon_tunnel(replace(m, vpn=True))


def _vpn_disable(m: Model) -> Model:
    # a live plantgated removes the interface; an orphaned wireguard-go lives on, walled in
    return replace(m, vpn=False, wireguard=m.wireguard and not m.daemon, fresh=False)


def _plantgated_start(m: Model) -> Model:
    return _daemon_tunnel(replace(m, daemon=True, endpoint=True))  # it resolves the names


def _heal(m: Model) -> Model:
    return replace(
        m, daemon=True, concentrator=True, wireguard=True, vpn=True, endpoint=True, fresh=True
    )


@dataclass(frozen=True)
class Transition:
    kind: str  # "break", "mend", "heal" or "flip" (the gate, IPv6)
    applies: Callable[[Model], bool]
    effect: Callable[[Model], Model]


TRANSITIONS: dict[str, Transition] = {
    "concentrator stop": Transition(
        "break", lambda m: m.concentrator, lambda m: replace(m, concentrator=False, fresh=False)
    ),
    "concentrator start": Transition(
        "mend", lambda m: not m.concentrator, lambda m: replace(m, concentrator=True)
    ),
    "wireguard-go SIGKILL": Transition(
        "break", lambda m: m.wireguard, lambda m: replace(m, wireguard=False, fresh=False)
    ),
    "plantgated SIGKILL": Transition(
        "break", lambda m: m.daemon, lambda m: replace(m, daemon=False)
    ),
    "plantgated start": Transition("mend", lambda m: not m.daemon, _plantgated_start),
    "vpn disable": Transition("break", lambda m: m.vpn, _vpn_disable),
    "vpn enable": Transition("mend", lambda m: not m.vpn, _vpn_enable),
    "endpoint expiry": Transition(
        "break", lambda m: m.endpoint, lambda m: replace(m, endpoint=False)
    ),
    "WireGuard rekey": Transition(
        "mend",
        lambda m: m.wireguard,
        lambda m: replace(m, fresh=m.vpn and m.concentrator and (m.endpoint or m.fresh)),
    ),
    HEAL: Transition("heal", lambda m: not m.tunnel, _heal),
    "gate open": Transition("flip", lambda m: not m.gate, lambda m: replace(m, gate=True)),
    "gate close": Transition("flip", lambda m: m.gate, lambda m: replace(m, gate=False)),
    "IPv6 on": Transition("flip", lambda m: not m.ipv6, lambda m: replace(m, ipv6=True)),
    "IPv6 off": Transition("flip", lambda m: m.ipv6, lambda m: replace(m, ipv6=False)),
}

# Relative weights. Tunnel up: each break and mend 1, the flips below; tunnel down: heal
# HEAL_WEIGHT, each mend MEND_WHILE_DOWN, each further break BREAK_WHILE_DOWN, the flips.
# Over seeds 0..29 (200 transitions) the model then has the tunnel up after 57% of the
# transitions and up with the gate open after 46%.
HEAL_WEIGHT = 5.0
MEND_WHILE_DOWN = 1.5
BREAK_WHILE_DOWN = 0.5
FLIPS = {"gate open": 3.0, "gate close": 0.5, "IPv6 on": 1.0, "IPv6 off": 1.0}


def weights(m: Model) -> dict[str, float]:
    """The transitions the model allows, each with its weight (pure)."""
    found: dict[str, float] = {}
    for name, transition in TRANSITIONS.items():
        if not transition.applies(m):
            continue
        if transition.kind == "flip":
            found[name] = FLIPS[name]
        elif transition.kind == "heal":
            found[name] = HEAL_WEIGHT
        elif transition.kind == "break":
            found[name] = 1.0 if m.tunnel else BREAK_WHILE_DOWN
        else:
            found[name] = 1.0 if m.tunnel else MEND_WHILE_DOWN
    return found


def step(m: Model, name: str) -> Model:
    """The model after a transition (one it does not allow leaves it as it was)."""
    transition = TRANSITIONS[name]
    return transition.effect(m) if transition.applies(m) else m


def plan(seed: int, count: int, start: Model | None = None) -> list[str]:
    """`count` transitions drawn from `seed` alone (pure: one seed, one plan)."""
    rng = random.Random(seed)
    model = start or Model()
    names: list[str] = []
    for _ in range(count):
        choices = weights(model)
        ordered = sorted(choices)
        name = rng.choices(ordered, [choices[n] for n in ordered])[0]
        names.append(name)
        model = step(model, name)
    return names


def models(names: list[str], start: Model | None = None) -> list[Model]:
    """The model after each transition of a plan (what the plan expects at each burst)."""
    model = start or Model()
    after = []
    for name in names:
        model = step(model, name)
        after.append(model)
    return after
