"""The chaos loop's plan (bench/leakplan.py): one seed, one plan; broken tunnels get healed."""

from __future__ import annotations

from collections import Counter

from bench import leakplan
from bench.leakplan import HEAL, Model, models, plan, step, weights
from bench.leaks import ACTIONS


def test_one_seed_gives_one_plan_and_another_seed_another() -> None:
    assert plan(20_251_202, 200) == plan(20_251_202, 200)
    assert plan(7, 200) != plan(8, 200)
    # a longer run starts as the shorter one did: --leak-transitions N replays a prefix
    assert plan(7, 300)[:200] == plan(7, 200)


def test_every_planned_transition_is_one_the_loop_can_run() -> None:
    assert set(leakplan.TRANSITIONS) == set(ACTIONS)
    for seed in range(5):
        assert set(plan(seed, 200)) <= set(ACTIONS)


def test_a_plan_visits_every_transition() -> None:
    seen = Counter(name for seed in range(3) for name in plan(seed, 200))
    assert set(seen) == set(leakplan.TRANSITIONS)


def test_the_tunnel_is_modelled_up_with_the_gate_open_for_a_good_share() -> None:
    """The weakness the plan fixes: uniform draws kept a broken tunnel broken."""
    up = open_up = 0
    for seed in range(10):
        after = models(plan(seed, 200))
        up += sum(m.tunnel for m in after)
        open_up += sum(m.tunnel and m.gate for m in after)
    assert up / 2000 >= 0.5
    assert open_up / 2000 >= 0.4


def test_it_still_breaks_the_tunnel_often_and_in_combination() -> None:
    after = models(plan(20_251_202, 200))
    down = [m for m in after if not m.tunnel]
    assert len(down) >= 40
    assert any(not m.concentrator and not m.vpn for m in down)  # two faults at once


def test_weights_favour_heal_when_the_tunnel_is_down() -> None:
    broken = Model(concentrator=False, fresh=False)
    found = weights(broken)
    assert found[HEAL] > sum(w for name, w in found.items() if name != HEAL) / 2
    assert HEAL not in weights(Model())  # nothing to heal
    assert "concentrator start" in found and "concentrator stop" not in found


def test_the_model_follows_the_lab_as_the_loop_drives_it() -> None:
    m = step(Model(), "concentrator stop")
    assert not m.tunnel
    m = step(m, "concentrator start")
    assert not m.tunnel  # the concentrator forgot gw's session: a rekey is needed
    assert step(m, "WireGuard rekey").tunnel
    killed = step(Model(), "plantgated SIGKILL")
    assert killed.tunnel and not killed.daemon  # its wireguard-go lives on
    assert not step(killed, "vpn disable").tunnel
    assert step(step(Model(), "vpn disable"), "vpn enable").tunnel
    expired = step(step(Model(), "endpoint expiry"), "wireguard-go SIGKILL")
    assert not step(expired, "WireGuard rekey").tunnel
    assert step(expired, HEAL).tunnel and step(expired, HEAL).endpoint


def test_heal_leaves_the_gate_and_ipv6_as_they_are() -> None:
    broken = Model(vpn=False, wireguard=False, fresh=False, gate=True, ipv6=True)
    healed = step(broken, HEAL)
    assert healed.tunnel and healed.gate and healed.ipv6


def test_a_transition_the_model_does_not_allow_leaves_it_unchanged() -> None:
    assert step(Model(), "concentrator start") == Model()
