"""`plantgate policy explain` and `plantgate policy test`, added to the policy app by `register`.

Exit codes (DESIGN §4): explain exits 0 whenever it answered, whatever the verdict; test exits
0 when every expectation holds and 1 when one fails (or the kernel side cannot run); both exit
2 for bad input, with one located line per problem on stderr and never a traceback.

By default `explain` describes the machine it runs on: the appliance's addresses are read
from the interfaces of the current network namespace and FQDN endpoints resolve to what the
live `inet plantgate` sets hold. `--self ADDR@IFACE` and `--gate-open` replace that with an
explicit context. The adapters that read the system are the small `live_*` functions below;
the evaluation itself is the pure `gateway.policy.explain`. Heavy imports happen inside the
commands, so `policy check` and `render` stay as light as before.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from gateway.policy.cli import fail_with_problems

if TYPE_CHECKING:
    from gateway.policy.explain import Context
    from gateway.policy.load import LoadedPolicy
    from gateway.policy.policytest import Report

OPTION = {
    "src": "--src",
    "dst": "--dst",
    "proto": "--proto",
    "dport": "--dport",
    "icmp_type": "--icmp-type",
    "iif": "--iif",
    "oif": "--oif",
    "self": "--self",
}
MAX_TIMEOUT = 10.0

FileArg = Annotated[Path, typer.Argument(help="Policy YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class LiveReadError(Exception):
    """The running system could not be read (netlink); nothing was explained."""


class BadInput(Exception):
    """A command-line value that cannot be used: which option, and why."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}")


def _bad(command: str, option: str, message: str, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": {"option": option, "message": message}}))
    typer.echo(f"plantgate policy {command}: error: {option}: {message}", err=True)
    raise typer.Exit(2)


# ---------------------------------------------------------------- live adapters


def live_self_addresses() -> dict[str, list[str]]:
    """Addresses (with prefix) of every interface in this network namespace, via netlink."""
    from pyroute2 import IPRoute

    found: dict[str, list[str]] = {}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for msg in ipr.get_addr():
            address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            ifname = names.get(msg["index"])
            if address and ifname:
                found.setdefault(str(ifname), []).append(f"{address}/{msg['prefixlen']}")
    return found


def live_resolved(loaded: LoadedPolicy) -> tuple[dict[str, list[str]], str | None]:
    """FQDN -> addresses from the live `ep_*` sets, or ({}, why not).

    A set holds the addresses of all of an endpoint's names together, so each of its names
    gets the endpoint's whole set: exact for matching, which is per endpoint.
    """
    from gateway.policy.compile import set_name
    from gateway.policy.nft import Nft, NftError

    fqdn = {n: e for n, e in loaded.policy.endpoints.items() if e.fqdn}
    if not fqdn:
        return {}, None
    sets = {set_name("ep", n, v): n for n in fqdn for v in (4, 6)}
    try:
        data = Nft().sets_json(list(sets))
    except (NftError, OSError) as exc:
        return {}, f"live FQDN sets unreadable ({str(exc).strip()[:80]}): names resolve to nothing"
    addresses: dict[str, list[str]] = {}
    for item in data.get("nftables", []):
        nft_set = item.get("set") or {}
        endpoint = sets.get(nft_set.get("name", ""))
        if endpoint is not None:
            addresses.setdefault(endpoint, []).extend(_element_texts(nft_set.get("elem", [])))
    resolved = {name: addresses.get(ep, []) for ep, e in fqdn.items() for name in e.fqdn}
    return resolved, None


def _element_texts(elements: list[Any]) -> list[str]:
    out: list[str] = []
    for element in elements:
        value = element.get("elem", {}).get("val") if isinstance(element, dict) else element
        if isinstance(value, dict) and "elem" in value:
            value = value["elem"].get("val")
        if isinstance(value, dict) and "prefix" in value:
            out.append(f"{value['prefix']['addr']}/{value['prefix']['len']}")
        elif isinstance(value, str):
            out.append(value)
    return out


# ---------------------------------------------------------------- explain


@dataclass
class _Inputs:
    """Parsed command-line values for explain."""

    dport: int | None
    self_addresses: dict[str, list[str]] | None
    notes: list[str] = field(default_factory=list)


def _parse_dport(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise BadInput("--dport", f"'{text}' is not a port number")
    return int(text)


def _parse_self(values: list[str]) -> dict[str, list[str]] | None:
    if not values:
        return None
    found: dict[str, list[str]] = {}
    for value in values:
        address, at, ifname = value.rpartition("@")
        if not at or not address or not ifname:
            raise BadInput(
                "--self", f"'{value}' is not ADDRESS@INTERFACE (e.g. 198.18.10.1/24@lan0)"
            )
        found.setdefault(ifname, []).append(address)
    return found


def _context(loaded: LoadedPolicy, inputs: _Inputs, gate_open: bool, src: str, dst: str) -> Context:
    """The explicit context, or what the running system says."""
    from gateway.policy.explain import Context

    addresses = inputs.self_addresses
    if addresses is None:
        try:
            addresses = live_self_addresses()
        except Exception as exc:  # netlink refused or unavailable: say so, in one line
            raise LiveReadError(
                f"cannot read this machine's addresses ({exc}); use --self"
            ) from exc
        interfaces = set(loaded.policy.interfaces.values())
        if not interfaces & set(addresses):
            raise BadInput(
                "--self",
                f"this machine has none of the policy's interfaces "
                f"({', '.join(sorted(interfaces))}): describe the appliance with "
                "--self ADDRESS@INTERFACE",
            )
    resolved, note = live_resolved(loaded)
    if note:
        inputs.notes.append(note)
    gates = {(g, src, dst) for g in loaded.policy.gates} if gate_open else set()
    return Context(addresses, resolved, frozenset(gates))


def register(policy_app: typer.Typer) -> None:
    """Add `explain` and `test` to the `plantgate policy` app."""
    policy_app.command("explain")(explain_command)
    policy_app.command("test")(test_command)


def explain_command(
    file: FileArg,
    src: Annotated[str, typer.Option("--src", help="Source address.", show_default=False)],
    dst: Annotated[str, typer.Option("--dst", help="Destination address.", show_default=False)],
    proto: Annotated[str, typer.Option("--proto", help="tcp, udp or icmp.", show_default=False)],
    dport: Annotated[
        str | None, typer.Option("--dport", help="Destination port (tcp, udp).")
    ] = None,
    icmp_type: Annotated[
        str, typer.Option("--icmp-type", help="ICMP type (icmp).")
    ] = "echo-request",
    iif: Annotated[
        str | None, typer.Option("--iif", help="Arriving interface (default: inferred).")
    ] = None,
    oif: Annotated[
        str | None, typer.Option("--oif", help="Leaving interface (default: inferred).")
    ] = None,
    self_: Annotated[
        list[str] | None,
        typer.Option(
            "--self",
            help="Appliance address: ADDRESS@INTERFACE or ADDRESS/PREFIX@INTERFACE (repeat).",
        ),
    ] = None,
    gate_open: Annotated[
        bool, typer.Option("--gate-open", help="Every gate open for this source and destination.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Which zones the ends fall in, which rule decides, and for a drop what came closest."""
    from gateway.policy.errors import PolicyError
    from gateway.policy.explain import PROTOS, ExplainError, Flow, explain
    from gateway.policy.load import load_file

    try:
        inputs = _Inputs(_parse_dport(dport), _parse_self(self_ or []))
        if proto not in PROTOS:
            raise BadInput("--proto", f"'{proto}' is not tcp, udp or icmp")
    except BadInput as exc:
        _bad("explain", exc.option, exc.message, as_json)
    try:
        loaded = load_file(file)
    except PolicyError as exc:
        fail_with_problems(exc.problems, 2, as_json)
    kind = proto if proto in PROTOS else "tcp"
    flow = Flow(src, dst, kind, inputs.dport, icmp_type if kind == "icmp" else None, iif, oif)
    try:
        explanation = explain(loaded, flow, _context(loaded, inputs, gate_open, src, dst))
    except BadInput as exc:
        _bad("explain", exc.option, exc.message, as_json)
    except LiveReadError as exc:
        typer.echo(f"plantgate policy explain: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ExplainError as exc:
        option = OPTION.get(exc.field or "", "--src")
        hint = (
            f" (give {option})"
            if exc.field in ("iif", "oif") and "cannot tell" in exc.message
            else ""
        )
        _bad("explain", option, exc.message + hint, as_json)
    if as_json:
        typer.echo(json.dumps({"ok": True, **explanation.to_dict(), "context_notes": inputs.notes}))
        return
    typer.echo(explanation.render())
    for note in inputs.notes:
        typer.echo(f"note         {note}")


# ---------------------------------------------------------------- test


def test_command(
    file: FileArg,
    tests: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Test files (default: tests/<FILE's name> beside FILE).", show_default=False
        ),
    ] = None,
    kernel: Annotated[
        bool,
        typer.Option("--kernel", help="Also send real packets through the real ruleset (root)."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="One line per expectation.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a kernel probe waits.")
    ] = 0.5,
    prefix: Annotated[
        str | None,
        typer.Option("--prefix", help="Namespace prefix for --kernel (default: random)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a policy against its expectations; with --kernel, with real packets as well."""
    from gateway.lab.topology import validate_prefix
    from gateway.policy import policytest
    from gateway.policy.errors import PolicyError

    paths = list(tests or [policytest.default_tests(file)])
    try:
        if not 0 < timeout <= MAX_TIMEOUT:
            raise BadInput("--timeout", f"{timeout:g} is out of range (0-{MAX_TIMEOUT:g} seconds)")
        if prefix is not None:
            try:
                validate_prefix(prefix)
            except ValueError as exc:
                raise BadInput("--prefix", str(exc)) from None
    except BadInput as exc:
        _bad("test", exc.option, exc.message, as_json)
    previous = signal.signal(signal.SIGTERM, _interrupt) if kernel else None
    try:
        report = policytest.run(file, paths, kernel=kernel, prefix=prefix, timeout=timeout)
    except PolicyError as exc:
        fail_with_problems(exc.problems, 2, as_json)
    except KeyboardInterrupt:
        typer.echo("plantgate policy test: interrupted; its namespaces were removed", err=True)
        raise typer.Exit(130) from None
    except (policytest.KernelTestError, OSError) as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": {"message": str(exc)}}))
        typer.echo(f"plantgate policy test: kernel test failed: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _print_report(report, verbose, as_json)
    raise typer.Exit(0 if report.ok else 1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM during --kernel: unwind, so that `finally` removes the testbed."""
    raise KeyboardInterrupt(f"signal {signum}")


def _print_report(report: Report, verbose: bool, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    for result in report.results:
        if verbose:
            kernel = f", kernel {result.kernel.verdict}" if result.kernel else ""
            note = f" ({result.case.note})" if result.case.note else ""
            status = "ok" if result.passed else "FAIL"
            typer.echo(
                f"{result.case.where}: {status}: {result.case.label}{note}: expected "
                f"{result.case.expect}, model {result.model}{kernel}"
            )
        for line in result.lines():
            typer.echo(line)
    typer.echo(report.summary())
