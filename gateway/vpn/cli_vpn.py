"""`plantgate vpn status|enable|disable`: the support tunnel and its off switch.

`status` reads the loaded revision (the policy's mode and the off switch), asks WireGuard
for the live interface (`wg show IFACE dump`; on the lab's gw run it through `plantgate lab
exec gw --`, which enters gw's WireGuard socket directory), and adds what plantgated last
reported (`<state>/vpn/tunnel.json`). It never shows a private key: the dump's key columns are
dropped by the parser, and the key file is only ever read by `wg pubkey`.

`enable` and `disable` call `gateway.policy.operations.set_vpn_enabled`: a new revision with
the switch in force, applied in one transaction and audited there. plantgated follows it
within a moment (the apply sends `policy.applied` to it), adding or removing the interface.

Exit codes (DESIGN §4): 0 done (status: the tunnel is disabled, connecting or up); 1 the
operation failed, no policy is loaded, or (status) the tunnel the policy wants is down or
stale; 2 bad input.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from gateway.state import state_dir as resolve_state

vpn_app = typer.Typer(
    help="The support VPN (WireGuard tunnel to the vendor's concentrator) and its off switch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: $PLANTGATE_STATE_DIR)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FRESH_S = 10.0  # plantgated's report is current if it is younger than this

_out = Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"plantgate vpn: error: {message}", err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------- pure: the record


def status_record(
    policy: dict[str, Any],
    live: dict[str, Any],
    daemon: dict[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """What `status` shows (the --json answer), from the policy view, the live interface
    and plantgated's report; `state` is assessed from the live view (pure)."""
    from gateway.vpn.health import Sample, assess

    peer = live.get("peer") or {}
    sample = Sample(
        mode=policy["mode"],
        interface=bool(live.get("interface_up")),
        handshake=int(peer.get("latest_handshake") or 0),
        rx=int(peer.get("rx_bytes") or 0),
        tx=int(peer.get("tx_bytes") or 0),
        now=now,
        why_down=str(live.get("error") or ""),
    )
    assessment = assess(sample)
    handshake = sample.handshake or None
    return {
        **policy,
        "state": assessment.state,
        "reason": assessment.reason,
        "public_key": live.get("public_key") or policy.get("public_key"),
        "endpoint": peer.get("endpoint"),
        "latest_handshake": _iso(handshake),
        "handshake_age_s": None
        if assessment.handshake_age is None
        else round(assessment.handshake_age, 1),
        "rx_bytes": peer.get("rx_bytes"),
        "tx_bytes": peer.get("tx_bytes"),
        "keepalive_s": peer.get("keepalive"),
        "daemon": _daemon_view(daemon, now),
    }


def _daemon_view(report: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    if not report:
        return None
    updated = report.get("updated")
    age = None
    if isinstance(updated, str):
        try:
            age = now - datetime.datetime.fromisoformat(updated).timestamp()
        except ValueError:
            age = None
    return {
        "state": report.get("state"),
        "since": report.get("since"),
        "reason": report.get("reason"),
        "updated": updated,
        "current": age is not None and age <= FRESH_S,
        "backend": report.get("backend"),
        "pid": report.get("pid"),
        "restarts": report.get("restarts"),
    }


def _iso(stamp: float | None) -> str | None:
    if not stamp:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


def render_lines(record: dict[str, Any]) -> list[str]:
    """`status` for people: one fact per line (pure)."""
    mode = record["mode"]
    if record.get("override"):
        mode += f" (`plantgate vpn disable` in force; the policy says {record['policy_mode']})"
    concentrator = f"{record.get('concentrator_key') or '-'} at {record.get('endpoint') or '-'}"
    rows = [
        ("state", f"{record['state']} ({record['reason']})"),
        ("mode", mode),
        ("interface", record.get("interface") or "-"),
        ("public key", record.get("public_key") or "- (made at first start)"),
        ("concentrator", concentrator),
    ]
    if record.get("handshake_age_s") is not None:
        age = f"{record['handshake_age_s']:.0f} s ago ({record['latest_handshake']})"
        rows.append(("handshake", age))
    elif record["state"] not in ("disabled", "down"):
        rows.append(("handshake", "never"))
    if record.get("rx_bytes") is not None:
        rows.append(("transfer", f"{record['rx_bytes']} B received, {record['tx_bytes']} B sent"))
    daemon = record.get("daemon")
    if daemon:
        fresh = "" if daemon["current"] else " [old report: is plantgated running?]"
        said = f"{daemon['state']} since {daemon['since']}, {daemon['restarts']} restarts"
        rows.append(("plantgated", said + fresh))
    else:
        rows.append(("plantgated", "no report yet"))
    return [f"{label + ':':<14}{value}" for label, value in rows]


# ---------------------------------------------------------------- gathering


def _policy_view(state: Path) -> dict[str, Any]:
    from gateway.policy.errors import PolicyError
    from gateway.policy.load import load_text
    from gateway.policy.operations import vpn_override
    from gateway.policy.revisions import RevisionStore
    from gateway.vpn.tunnel import desired_tunnel

    store = RevisionStore(state)
    current = store.current()
    if current is None:
        _fail("no policy is loaded: apply one first (plantgate policy apply FILE)", 1)
    try:
        loaded = load_text(store.policy_text(current.number), current.file)
    except (PolicyError, OSError) as exc:
        _fail(f"cannot read revision {current.number}: {exc}", 1)
    written = loaded.policy.support_vpn
    if current.vpn_mode is not None:
        loaded = loaded.with_vpn_mode(current.vpn_mode)
    desired = desired_tunnel(loaded.policy)
    return {
        "revision": current.number,
        "mode": desired.mode,
        "policy_mode": written.mode if written else "none",
        "override": vpn_override(state),
        "interface": desired.ifname,
        "address": desired.address,
        "concentrator_key": desired.peer_key,
    }


def _live_view(policy: dict[str, Any]) -> dict[str, Any]:
    from gateway.vpn import wg

    ifname = policy.get("interface")
    if not ifname or policy["mode"] in ("none", "disabled"):
        return {"interface_up": False}
    try:
        info, peers = wg.show_dump(ifname)
    except wg.WgError as exc:
        return {"interface_up": False, "error": str(exc)}
    peer = next((p for p in peers if p.public_key == policy["concentrator_key"]), None)
    return {
        "interface_up": True,
        "public_key": info.public_key,
        "peer": None
        if peer is None
        else {
            "endpoint": peer.endpoint,
            "latest_handshake": peer.latest_handshake,
            "rx_bytes": peer.rx_bytes,
            "tx_bytes": peer.tx_bytes,
            "keepalive": peer.keepalive,
        },
    }


def _daemon_report(state: Path) -> dict[str, Any] | None:
    from gateway.vpn.tunnel import status_path

    try:
        report = json.loads(status_path(state).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


# ---------------------------------------------------------------- commands


@vpn_app.command("status")
def status(state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Mode (and the off switch), interface, keys, endpoint, handshake age, transfer, state."""
    from gateway.vpn import keys

    state = resolve_state(state_dir)
    policy = _policy_view(state)
    policy["public_key"] = keys.public_key(state)
    record = status_record(policy, _live_view(policy), _daemon_report(state), time.time())
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        for line in render_lines(record):
            _out.print(line, markup=False)
    if record["state"] in ("down", "stale"):
        raise typer.Exit(1)


def _switch(state_dir: Path | None, enabled: bool, as_json: bool) -> None:
    from gateway.policy.apply import ApplyError
    from gateway.policy.errors import PolicyError
    from gateway.policy.nft import NftError
    from gateway.policy.operations import OperationError, set_vpn_enabled

    state = resolve_state(state_dir)
    try:
        applied = set_vpn_enabled(state, enabled)
    except (OperationError, NftError, OSError) as exc:
        _fail(str(exc), 1)
    except (ApplyError, PolicyError) as exc:
        _fail(f"the policy could not be loaded that way:\n{exc}", 1)
    support = applied.loaded.policy.support_vpn
    mode = support.mode if support else "none"
    revision = applied.revision.number
    if as_json:
        typer.echo(json.dumps({"enabled": enabled, "mode": mode, "revision": revision}))
        return
    what = "enabled" if enabled else "disabled"
    follow = "brings the tunnel up" if mode != "disabled" else "removes the tunnel"
    _out.print(
        f"support VPN {what}: revision {revision} loaded with mode {mode}; plantgated {follow}",
        markup=False,
    )


@vpn_app.command("enable")
def enable(state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Lift the off switch: the policy's mode (gated or always-on) applies again."""
    _switch(state_dir, True, as_json)


@vpn_app.command("disable")
def disable(state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Switch the support VPN off for every policy from now on, across restarts."""
    _switch(state_dir, False, as_json)
