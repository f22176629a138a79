"""`plantgate policy test`: check a policy against its expectations, on the model and the kernel.

Model mode explains every expectation (`explain.py`) and compares the verdict with `expect`.
Kernel mode also loads the compiled ruleset into a throwaway DUT namespace (`testbed.py`)
and sends one real exchange per expectation (TCP connect, UDP echo, ICMP echo, via
`gateway.lab.probe`). The three answers are kept apart:

* model ≠ expect is a *policy test failure*: the policy does not do what the site expects;
* kernel ≠ model is a failure of `explain` itself, "explain disagrees with the kernel": a
  bug in PlantGate, whatever the expectation says;
* an expectation the kernel cannot be asked (IPv6, an ICMP type other than echo-request, an
  `oif` the routing would not take) is reported as not probed, never as passed by the kernel.

Order in the kernel: every gate closed first, then each group of expectations that opens the
same gates (the DUT's gate sets hold exactly that group's grants), then spoofed sources one at
a time, judged by the DUT's observer counters (see testbed.py). Probes of a phase run
concurrently, so a phase takes about one probe timeout however many flows are dropped.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.lab import topology
from gateway.lab.probe import ICMP_ECHO_REQUEST, Probe, ProbeResult, run_probes
from gateway.policy.compile import Compiled, compile_policy, set_name
from gateway.policy.errors import PolicyError
from gateway.policy.expectations import Case, ExpectationFile, load_tests
from gateway.policy.explain import (
    Explainer,
    ExplainFn,
    Explanation,
    Verdict,
    appliance_of,
    parse_address,
)
from gateway.policy.load import LoadedPolicy, load_file
from gateway.policy.nft import Element
from gateway.policy.testbed import DUT, Testbed, peer_host, plan_bed, testbed

KernelVerdict = Literal["accept", "drop", "error", "skipped"]
ALPHABET = string.ascii_lowercase + string.digits
PROBE_TIMEOUT = 0.5
SPOOF_TIMEOUT = 0.3
REJECTED = ("EHOSTUNREACH", "ENETUNREACH", "EACCES")  # an ICMP error came back


class KernelTestError(Exception):
    """The kernel side could not run (no root, refused ruleset); nothing is left behind."""


@dataclass(frozen=True)
class KernelResult:
    verdict: KernelVerdict
    detail: str


@dataclass(frozen=True)
class Result:
    """One expectation: what it expects, what the model says, what the kernel did."""

    case: Case
    explanation: Explanation
    kernel: KernelResult | None = None

    @property
    def model(self) -> Verdict:
        return self.explanation.verdict

    @property
    def disagrees(self) -> bool:
        """The kernel answered and said something else than the model."""
        k = self.kernel
        return k is not None and k.verdict in ("accept", "drop") and k.verdict != self.model

    @property
    def passed(self) -> bool:
        kernel_error = self.kernel is not None and self.kernel.verdict == "error"
        return self.model == self.case.expect and not self.disagrees and not kernel_error

    def lines(self) -> list[str]:
        """Located report lines for what went wrong (none when it passed)."""
        case, out = self.case, []
        if self.model != case.expect:
            out.append(
                f"{case.where}: fail: expected {case.expect}, model says {self.model} — "
                f"{case.label}: {self.explanation.summary()}"
            )
        if self.disagrees:
            assert self.kernel is not None
            out.append(
                f"{case.where}: fail: explain disagrees with the kernel: model says "
                f"{self.model}, kernel says {self.kernel.verdict} ({self.kernel.detail}) — "
                f"{case.label}; this is a bug in PlantGate's explain, not in the policy"
            )
        if self.kernel is not None and self.kernel.verdict == "error":
            out.append(
                f"{case.where}: error: {case.label}: kernel probe failed: {self.kernel.detail}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.case.file,
            "line": self.case.position.line,
            "column": self.case.position.col,
            "label": self.case.label,
            "note": self.case.note,
            "expect": self.case.expect,
            "model": self.model,
            "kernel": None if self.kernel is None else self.kernel.verdict,
            "kernel_detail": None if self.kernel is None else self.kernel.detail,
            "passed": self.passed,
            "explain_disagrees_with_kernel": self.disagrees,
            "explanation": self.explanation.to_dict(),
        }


@dataclass(frozen=True)
class Report:
    """Every result of one `policy test` run."""

    policy: str
    files: tuple[str, ...]
    results: tuple[Result, ...]
    kernel: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    def counts(self) -> dict[str, int]:
        kernel = [r.kernel for r in self.results if r.kernel is not None]
        return {
            "expectations": len(self.results),
            "passed": sum(r.passed for r in self.results),
            "failed": sum(not r.passed for r in self.results),
            "model_mismatches": sum(r.model != r.case.expect for r in self.results),
            "kernel_agrees": sum(
                1 for r in self.results if r.kernel and r.kernel.verdict == r.model
            ),
            "kernel_disagrees": sum(r.disagrees for r in self.results),
            "kernel_not_probed": sum(k.verdict == "skipped" for k in kernel),
            "kernel_errors": sum(k.verdict == "error" for k in kernel),
        }

    def summary(self) -> str:
        c = self.counts()
        text = (
            f"{self.policy}: {c['expectations']} expectations: {c['passed']} passed, "
            f"{c['failed']} failed"
        )
        if self.kernel:
            text += (
                f"; kernel: {c['kernel_agrees']} agree with the model, "
                f"{c['kernel_disagrees']} disagree, {c['kernel_not_probed']} not probed, "
                f"{c['kernel_errors']} errors"
            )
        return f"{text} ({self.seconds:.1f} s)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "policy": self.policy,
            "files": list(self.files),
            "kernel": self.kernel,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "results": [r.to_dict() for r in self.results],
        }


def default_tests(policy_file: Path) -> Path:
    """`policies/lab.yaml` -> `policies/tests/lab.yaml`."""
    return policy_file.parent / "tests" / policy_file.name


def run(
    policy_file: Path,
    test_files: Sequence[Path],
    *,
    kernel: bool = False,
    prefix: str | None = None,
    timeout: float = PROBE_TIMEOUT,
    explain_fn: ExplainFn | None = None,
) -> Report:
    """Load, then test on the model (and the kernel). PolicyError for bad input."""
    start = time.perf_counter()
    loaded, explainer, files = load_all(policy_file, test_files)
    explain_fn = explain_fn or explainer.explain
    results: list[Result] = []
    if kernel:
        compiled = compile_policy(loaded)
        for tests in files:
            results += run_kernel(loaded, compiled, explainer, tests, explain_fn, prefix, timeout)
    else:
        for tests in files:
            results += run_model(tests, explain_fn)
    seconds = time.perf_counter() - start
    return Report(str(policy_file), tuple(t.file for t in files), tuple(results), kernel, seconds)


def load_all(
    policy_file: Path, test_files: Sequence[Path]
) -> tuple[LoadedPolicy, Explainer, list[ExpectationFile]]:
    """The policy and its test files, or one PolicyError with every problem of all of them."""
    loaded = load_file(policy_file)
    explainer = Explainer(loaded)
    files, problems = [], []
    for path in test_files:
        try:
            files.append(load_tests(path, explainer))
        except PolicyError as exc:
            problems += exc.problems
    if problems:
        raise PolicyError(problems)
    return loaded, explainer, files


def run_model(tests: ExpectationFile, explain_fn: ExplainFn) -> list[Result]:
    """Every case explained; a mismatch with `expect` is a failure of the policy."""
    return [Result(case, explain_fn(case.flow, tests.context(case))) for case in tests.cases]


# ---------------------------------------------------------------- kernel mode


@dataclass(frozen=True)
class Shot:
    """How one case goes to the kernel: a probe, or why it cannot."""

    index: int
    probe: Probe | None = None
    skip: str = ""
    spoof_on: str | None = None  # interface a spoofed source is sent from
    gates: tuple[str, ...] = ()


@dataclass
class _Placement:
    """Where each test address lives (DUT interface), decided case by case."""

    explainer: Explainer
    tests: ExpectationFile
    homes: dict[str, str] = field(default_factory=dict)

    def owns(self, address: str) -> bool:
        return appliance_of(self.tests.context()).owns(parse_address(address, "host"))

    def home(self, address: str, claim: str) -> str:
        if address not in self.homes:
            appliance = appliance_of(self.tests.context())
            route = self.explainer.route(parse_address(address, "host"), appliance)
            self.homes[address] = route.interfaces[0] if len(route.interfaces) == 1 else claim
        return self.homes[address]


def plan_shots(
    explainer: Explainer, tests: ExpectationFile, explanations: Sequence[Explanation]
) -> tuple[list[Shot], dict[str, str]]:
    """A shot per case and the home interface of every host address (pure)."""
    placement = _Placement(explainer, tests)
    shots = [
        _shot(index, case, explanation, placement, tests)
        for index, (case, explanation) in enumerate(zip(tests.cases, explanations, strict=True))
    ]
    return shots, placement.homes


def _shot(
    index: int, case: Case, ex: Explanation, placement: _Placement, tests: ExpectationFile
) -> Shot:
    flow = case.flow
    skip = _unprobeable(case, ex, placement.owns(flow.src))
    if skip:
        return Shot(index, skip=skip)
    port = ICMP_ECHO_REQUEST if flow.proto == "icmp" else int(flow.dport or 0)
    if ex.decision.kind == "loopback":
        probe = Probe(DUT, DUT, flow.dst, flow.proto, port, case.expect, case.where, flow.src)
        return Shot(index, probe, gates=case.gates)
    src_host, dst_host, spoof_on = DUT, DUT, None
    if ex.hook != "output":
        assert ex.iif is not None
        src_host = peer_host(ex.iif)
        if placement.home(flow.src, ex.iif) != ex.iif:
            spoof_on = ex.iif
    if ex.hook != "input":
        assert ex.oif is not None
        home = placement.home(flow.dst, ex.oif)
        if home != ex.oif:
            return Shot(index, skip=f"the kernel routes {flow.dst} through {home}, not {ex.oif}")
        dst_host = peer_host(ex.oif)
    for ifname in (ex.iif, ex.oif):
        if ifname is not None and not any(
            ipaddress.ip_interface(a).version == 4 for a in tests.appliance.get(ifname, ())
        ):
            return Shot(
                index, skip=f"the appliance has no IPv4 address on {ifname} in the test file"
            )
    probe = Probe(src_host, dst_host, flow.dst, flow.proto, port, case.expect, case.where, flow.src)
    return Shot(index, probe, spoof_on=spoof_on, gates=case.gates)


def _unprobeable(case: Case, ex: Explanation, own_source: bool) -> str:
    flow = case.flow
    if ex.version != 4:
        return "IPv6: the probes speak IPv4"
    if flow.proto == "icmp" and flow.icmp_type != "echo-request":
        return f"only ICMP echo-request can be sent, not {flow.icmp_type}"
    if ex.decision.kind == "loopback" and not (ex.source.is_self and ex.destination.is_self):
        return "loopback traffic from another address cannot be sent"
    if ex.hook != "output" and own_source:
        return "a peer cannot send with the appliance's own address"
    if ex.hook == "output" and flow.iif is not None:
        return "the appliance's own traffic has no arriving interface"
    if ex.hook == "forward" and ex.iif == ex.oif:
        return f"both ends live behind {ex.iif}: the peer would deliver it without the appliance"
    return ""


def new_prefix() -> str:
    """A namespace prefix for one run: `pt` and four random letters or digits."""
    return "pt" + "".join(secrets.choice(ALPHABET) for _ in range(4))


def run_kernel(
    loaded: LoadedPolicy,
    compiled: Compiled,
    explainer: Explainer,
    tests: ExpectationFile,
    explain_fn: ExplainFn,
    prefix: str | None = None,
    timeout: float = PROBE_TIMEOUT,
) -> list[Result]:
    """Model and kernel verdicts for every case of `tests`; KernelTestError if it cannot run."""
    if os.geteuid() != 0:
        raise KernelTestError(
            "--kernel needs root: it builds network namespaces and loads nftables"
        )
    prefix = topology.validate_prefix(prefix or new_prefix())
    model = run_model(tests, explain_fn)
    shots, homes = plan_shots(explainer, tests, [r.explanation for r in model])
    interfaces = tuple(dict.fromkeys([*loaded.policy.interfaces.values(), *tests.appliance]))
    plan = plan_bed(prefix, tests.appliance, interfaces, _ipv4_homes(homes, shots, tests))
    kernel: dict[int, KernelResult] = {
        s.index: KernelResult("skipped", s.skip) for s in shots if s.probe is None
    }
    with testbed(plan) as bed:
        _load(bed, loaded, compiled, tests)
        kernel.update(_phases(bed, loaded, shots, prefix, timeout, tests))
    return [
        Result(r.case, r.explanation, kernel.get(i, KernelResult("error", "not run")))
        for i, r in enumerate(model)
    ]


def _ipv4_homes(homes: dict[str, str], shots: list[Shot], tests: ExpectationFile) -> dict[str, str]:
    """Homes of the addresses some probe uses, IPv4 only (the bed holds nothing else)."""
    used = {
        a
        for s in shots
        if s.probe is not None
        for a in (tests.cases[s.index].flow.src, tests.cases[s.index].flow.dst)
    }
    return {a: i for a, i in homes.items() if a in used and ipaddress.ip_address(a).version == 4}


def _load(bed: Testbed, loaded: LoadedPolicy, compiled: Compiled, tests: ExpectationFile) -> None:
    from gateway.policy.apply import ApplyError

    elements: dict[str, list[Element]] = {}
    for binding in compiled.fqdn:
        for fqdn in binding.names:
            for address in tests.names.get(fqdn, ()):
                version = ipaddress.ip_address(address).version
                elements.setdefault(binding.sets[version], []).append(Element(address))
    try:
        bed.apply(compiled, loaded.file, elements)
    except ApplyError as exc:
        raise KernelTestError(f"the kernel refused the ruleset: {exc}") from None


def _phases(
    bed: Testbed,
    loaded: LoadedPolicy,
    shots: list[Shot],
    prefix: str,
    timeout: float,
    tests: ExpectationFile,
) -> dict[int, KernelResult]:
    """Per group of open gates (all closed first): ordinary shots, then spoofed ones."""
    found: dict[int, KernelResult] = {}
    groups: dict[tuple[str, ...], list[Shot]] = {}
    for shot in sorted((s for s in shots if s.probe), key=lambda s: bool(s.gates)):
        groups.setdefault(shot.gates, []).append(shot)
    for group in groups.values():
        bed.set_gates(_grants(loaded, tests, group))
        plain = [s for s in group if s.spoof_on is None]
        spoofs = [s for s in group if s.spoof_on is not None]
        if plain:
            results = run_probes(prefix, [_probe(s) for s in plain], timeout)
            found.update({s.index: _verdict(r) for s, r in zip(plain, results, strict=True)})
        if spoofs:
            found.update(_spoofs(bed, spoofs, tests, prefix, timeout))
    return found


def _probe(shot: Shot) -> Probe:
    assert shot.probe is not None
    return shot.probe


def _grants(
    loaded: LoadedPolicy, tests: ExpectationFile, shots: Sequence[Shot]
) -> dict[str, list[str]]:
    """Gate set -> 'src . dst . proto . port' elements for `shots` (a gate grants one port);
    every gate set listed, so all are reset."""
    grants: dict[str, list[str]] = {set_name("gate", g, 4): [] for g in loaded.policy.gates}
    for shot in shots:
        flow = tests.cases[shot.index].flow
        for gate in shot.gates:
            if flow.proto in ("tcp", "udp"):  # ICMP cannot be granted: the gate stays shut
                element = f"{flow.src} . {flow.dst} . {flow.proto} . {flow.dport}"
                grants[set_name("gate", gate, 4)].append(element)
    return {name: list(dict.fromkeys(items)) for name, items in grants.items()}


def _verdict(result: ProbeResult) -> KernelResult:
    """accept, or drop for anything that did not get through (a reject included)."""
    if result.verdict == "accept":
        return KernelResult("accept", result.detail)
    if result.verdict in ("drop", "refused"):
        return KernelResult("drop", result.detail)
    if result.detail.startswith(REJECTED):  # `reject with icmpx admin-prohibited`, for TCP
        return KernelResult("drop", f"rejected ({result.detail})")
    return KernelResult("error", result.detail)


def _spoofs(
    bed: Testbed, shots: list[Shot], tests: ExpectationFile, prefix: str, timeout: float
) -> dict[int, KernelResult]:
    """Spoofed sources, sent together; each judged by its own observer counters."""
    matches = {f"case {s.index}": _match(s, tests.cases[s.index]) for s in shots}
    bed.observe(matches)
    held = [(str(s.spoof_on), tests.cases[s.index].flow.src) for s in shots]
    with bed.spoofed(held):
        run_probes(prefix, [_probe(s) for s in shots], min(timeout, SPOOF_TIMEOUT))
    counts = bed.observed()
    return {s.index: _spoof_verdict(s, counts.get(f"case {s.index}", {})) for s in shots}


def _match(shot: Shot, case: Case) -> str:
    """The observer's expression for one spoofed flow."""
    flow = case.flow
    match = f'iifname "{shot.spoof_on}" ip saddr {flow.src} ip daddr {flow.dst} '
    if flow.proto == "icmp":
        return match + "icmp type echo-request"
    return match + f"{flow.proto} dport {flow.dport}"


def _spoof_verdict(shot: Shot, counts: dict[str, int]) -> KernelResult:
    seen = counts.get("seen", 0)
    passed = counts.get("passed_in", 0) + counts.get("passed_fwd", 0)
    if seen == 0:
        return KernelResult(
            "error", f"the spoofed packet never reached the appliance on {shot.spoof_on}"
        )
    if passed:
        return KernelResult(
            "accept", f"spoofed source: {passed} of {seen} packets got past the ruleset"
        )
    return KernelResult(
        "drop", f"spoofed source: {seen} packets arrived, none got past the ruleset"
    )
