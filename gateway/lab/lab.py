"""Lab operations: `up`, `down`, `status`, `exec_in` — a whole plant on one Linux machine.

`up` builds DESIGN §3's topology from `topology.plan_lab` through the netlink adapter, writes the
lab resolver's configuration, and starts the lab's services (dnsmasq in `upstream`; with a
policy also the internet's NTP server, chronyd in `upstream`, the support concentrator
(wireguard-go `wg-conc`) in `upstream` with the `staff` host behind it, `plantgated` in `gw`,
which brings the support tunnel up, and sshd targets on gw and the first hubs once the tunnel
has shaken hands; see `support.py`). It is idempotent: a complete lab is left as is (only
missing services are started); a partial one (a crash, a different hub count) is torn down and
rebuilt.

`down` trusts the kernel, not our files: it removes every namespace named `<prefix>-<known
host>` and kills every process whose network namespace is one of them, so it cleans up after a
crash even when the lab directory is gone.

Each lab keeps its files in `$PLANTGATE_LAB_ROOT/<prefix>` (default `/run/plantgate/lab/<prefix>`):
`lab.json`, the dnsmasq configuration, one `NAME.pid` and `NAME.log` per process, and `gw-state/`
(the daemon's state directory); with a policy also `mnt/` (the private mount namespaces of gw and
upstream, see `mountns.py`), `ssh/` (lab-only keys and sshd configurations) and the
concentrator's key. `down` removes pidfiles and the mount namespaces but keeps logs for the
post-mortem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.lab import collector, mountns, netns, services, support, topology
from gateway.lab.netns import LinkInfo, NamespaceNet, RouteInfo
from gateway.lab.services import LabPaths, ServiceSpec
from gateway.lab.topology import LabPlan
from gateway.state import ENV_STATE_DIR
from gateway.watch.status import read_status

DEFAULT_ROOT = Path("/run/plantgate/lab")
DEFAULT_POLICY = Path("policies/lab.yaml")
ROOT_ENV = "PLANTGATE_LAB_ROOT"
META_FILE = "lab.json"
SOURCE_ROOT = Path(__file__).resolve().parents[2]

LabState = Literal["up", "partial", "absent"]
WG_HOSTS = ("gw", "upstream")  # hosts with WireGuard: each gets a private mount namespace


class LabError(RuntimeError):
    """An operation on the lab failed (exit code 1); bad input raises ValueError instead."""


@dataclass(frozen=True)
class HostStatus:
    name: str
    namespace: str
    role: str
    links: tuple[LinkInfo, ...]
    routes: tuple[RouteInfo, ...]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    host: str
    pid: int | None
    running: bool
    log: str


@dataclass(frozen=True)
class TunnelView:
    """The support tunnel as plantgated reports it, and as the concentrator sees the peer."""

    state: str | None  # plantgated's: disabled, connecting, up, stale, down (None: no report)
    reason: str
    since: str | None
    endpoint: str | None
    handshake_age_s: float | None
    rx_bytes: int | None
    tx_bytes: int | None
    concentrator_handshake_age_s: float | None


@dataclass(frozen=True)
class WatcherView:
    """The traffic watcher in gw's plantgated, from its status report
    (`<gw-state>/watch/status.json`, see gateway/watch/status.py)."""

    state: str | None  # waiting (for a policy), running, stopped; None: no report yet
    mode: str | None  # learning or protecting
    detectors: int
    events: int  # events in, every source, since plantgated started
    lost: int  # events lost before detection (socket overruns, a full queue)
    report_age_s: float | None


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    directory: str
    state: LabState
    hubs: int
    hosts: tuple[HostStatus, ...]
    services: tuple[ServiceStatus, ...]
    problems: tuple[str, ...]
    tunnel: TunnelView | None = None
    watcher: WatcherView | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DownReport:
    prefix: str
    namespaces: tuple[str, ...]
    killed: tuple[int, ...]
    resolv_dirs: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class Observation:
    """What the kernel shows for one host's namespace."""

    links: tuple[LinkInfo, ...]
    routes: tuple[RouteInfo, ...]


# ---------------------------------------------------------------- paths and metadata


def lab_root(root: Path | None = None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def lab_paths(prefix: str, root: Path | None = None) -> LabPaths:
    topology.validate_prefix(prefix)
    return LabPaths(prefix=prefix, directory=lab_root(root) / prefix)


def _read_meta(paths: LabPaths) -> dict[str, Any]:
    try:
        data = json.loads((paths.directory / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_meta(
    paths: LabPaths, plan: LabPlan, specs: Sequence[ServiceSpec], policy: Path | None
) -> None:
    meta = {
        "prefix": plan.prefix,
        "hubs": plan.hubs,
        "support": plan.support,
        "policy": str(policy) if policy else None,
        "services": [{"name": s.name, "host": s.host} for s in specs],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (paths.directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


@contextlib.contextmanager
def _locked(paths: LabPaths) -> Iterator[None]:
    """Serialise operations on one lab (two `up`s racing would build twice)."""
    root = paths.directory.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / f".{paths.prefix}.lock").open("a")
    except PermissionError as exc:
        raise LabError(f"cannot write {root}: the lab needs root (try sudo)") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- pure: plan vs. kernel


def compare(
    plan: LabPlan, observed: Mapping[str, Observation | None], extra: Sequence[str] = ()
) -> list[str]:
    """Differences between the plan and what the kernel shows, one line each (empty = complete)."""
    problems = [f"unexpected namespace {ns} (not in a {plan.hubs}-hub lab)" for ns in extra]
    for host in plan.hosts:
        seen = observed.get(host.name)
        if seen is None:
            problems.append(f"{host.name}: namespace {host.namespace} missing")
            continue
        problems.extend(_compare_host(plan, host, seen))
    return problems


def _compare_host(plan: LabPlan, host: topology.Host, seen: Observation) -> list[str]:
    links = {link.ifname: link for link in seen.links}
    wanted = ["lo", *host.interfaces]
    if host.name == plan.bridge.host:
        wanted += [plan.bridge.ifname, *plan.bridge.ports]
    problems: list[str] = []
    for ifname in wanted:
        link = links.get(ifname)
        if link is None:
            problems.append(f"{host.name}: interface {ifname} missing")
        elif not link.admin_up:
            problems.append(f"{host.name}: interface {ifname} is down")
    for addr in host.addresses:
        link = links.get(addr.ifname)
        if link is not None and addr.cidr not in link.addresses:
            problems.append(f"{host.name}: {addr.ifname} lacks address {addr.cidr}")
    if host.name == plan.bridge.host:
        for port in plan.bridge.ports:
            link = links.get(port)
            if link is not None and link.master != plan.bridge.ifname:
                problems.append(f"{host.name}: {port} is not a port of {plan.bridge.ifname}")
    routes = {(r.dst, r.via) for r in seen.routes}
    for route in host.routes:
        if (route.dst, route.via) not in routes:
            problems.append(f"{host.name}: route {route.dst} via {route.via} missing")
    return problems


def infer_hubs(prefix: str, namespaces: Sequence[str], meta: Mapping[str, Any]) -> int:
    """Hub count from lab.json, else from the hub namespaces present, else 1."""
    hubs = meta.get("hubs")
    if isinstance(hubs, int) and 1 <= hubs <= topology.MAX_HUBS:
        return hubs
    indexes = [topology.hub_index(topology.parse_namespace(prefix, ns) or "") for ns in namespaces]
    return max((i for i in indexes if i is not None), default=1)


# ---------------------------------------------------------------- observing


def _observe(plan: LabPlan, present: Sequence[str]) -> dict[str, Observation | None]:
    observed: dict[str, Observation | None] = {}
    for host in plan.hosts:
        if host.namespace not in present:
            observed[host.name] = None
            continue
        with NamespaceNet(host.namespace) as net:
            observed[host.name] = Observation(tuple(net.links()), tuple(net.routes()))
    return observed


def _extra_namespaces(plan: LabPlan, present: Sequence[str]) -> list[str]:
    return [ns for ns in present if ns not in plan.namespaces]


# ---------------------------------------------------------------- building


def _build(plan: LabPlan) -> None:
    for host in plan.hosts:
        netns.create_namespace(host.namespace)
        netns.set_sysctls(host.namespace, tuple((s.key, s.value) for s in host.sysctls))
    with contextlib.ExitStack() as stack:
        nets = {h.name: stack.enter_context(NamespaceNet(h.namespace)) for h in plan.hosts}
        _build_links(plan, nets)
        for host in plan.hosts:
            _configure_host(host, nets[host.name])


def _build_links(plan: LabPlan, nets: Mapping[str, NamespaceNet]) -> None:
    switch = nets[plan.bridge.host]
    switch.add_bridge(plan.bridge.ifname)
    for pair in plan.veths:
        nets[pair.a.host].add_veth(pair.a.ifname, pair.b.ifname, plan.namespace(pair.b.host))
    for port in plan.bridge.ports:
        switch.set_master(port, plan.bridge.ifname)
        switch.set_up(port)
    switch.set_up(plan.bridge.ifname)


def _configure_host(host: topology.Host, net: NamespaceNet) -> None:
    net.set_up("lo")
    for ifname in host.interfaces:
        net.set_up(ifname)
    for addr in host.addresses:
        net.add_address(addr.ifname, addr.cidr)
    for route in host.routes:
        net.add_route(route.dst, route.via)


def _service_specs(paths: LabPaths, policy: Path | None) -> list[ServiceSpec]:
    """dnsmasq always; with a policy also the internet's time server, the support
    concentrator, the SOC's syslog collector and then plantgated (whose NTP relay syncs from
    the first, whose tunnel goes to the second, and whose alerts go to the third), and the
    MES. A bare lab stays a topology with DNS."""
    specs = [services.dnsmasq_spec(paths, services.find_binary("dnsmasq"))]
    if policy is not None:
        specs.append(services.upstream_chrony_spec(paths, services.find_binary("chronyd")))
        specs.append(support.concentrator_spec(paths))
        specs.append(collector.collector_spec(paths))
        specs.append(services.daemon_spec(paths, policy))
        specs.append(services.mes_spec(paths))
    return specs


def _ensure_services(paths: LabPaths, plan: LabPlan, specs: Sequence[ServiceSpec]) -> bool:
    """Start every service that is not running; wait for each to be ready.

    Returns whether plantgated was started now.
    """
    started_daemon = False
    for spec in specs:
        if services.running_pid(paths, spec.name, plan.namespaces) is not None:
            continue
        if spec.name == collector.SERVICE:
            collector.prepare(paths)
        if spec.name == "plantgated":
            paths.gw_state.mkdir(mode=0o700, parents=True, exist_ok=True)
            collector.point_appliance(paths, paths.gw_state)
            started_daemon = True
        pid = services.start_process(paths, spec.host, spec.argv, spec.name, dict(spec.env))
        services.wait_ready(paths, spec, pid)
        if spec.name == "plantgated":
            services.wait_watcher(paths, pid)  # a late watcher is shown by `lab status`
        if spec.name == support.CONC_SERVICE:
            support.configure_concentrator(paths)
    return started_daemon


def _resolve_policy(policy: Path | None) -> Path | None:
    """Absolute path of the policy; a relative path that is not found from the working
    directory is looked up in the source tree, so `policies/lab.yaml` works from anywhere."""
    if policy is None:
        return None
    candidates = [Path(policy)]
    if not Path(policy).is_absolute():
        candidates.append(SOURCE_ROOT / policy)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ValueError(f"policy file not found: {policy}")


# ---------------------------------------------------------------- operations


def up(
    prefix: str = "pg",
    hubs: int = 3,
    policy: Path | None = DEFAULT_POLICY,
    root: Path | None = None,
) -> LabStatus:
    """Build lab `prefix` with `hubs` hubs and start its services; harmless when already up.

    `policy=None` builds the lab without `plantgated` (no firewall in gw): what kernel tests of
    the bare topology need. Raises ValueError for bad input (nothing changed), LabError else.
    """
    topology.plan_lab(prefix, hubs)  # bad input first, before anything changes
    resolved = _resolve_policy(policy)
    plan = topology.plan_lab(prefix, hubs, support=resolved is not None)
    paths = lab_paths(prefix, root)
    with _locked(paths):
        try:
            _up_locked(plan, paths, resolved)
        except services.ServiceError as exc:
            raise LabError(
                f"lab up failed: {exc}\n(the namespaces are up; logs are in {paths.directory}; "
                f"`plantgate lab down --prefix {prefix}` removes the lab)"
            ) from exc
        except (OSError, LookupError, mountns.MountNamespaceError) as exc:
            raise LabError(f"lab up failed: {exc}") from exc
    return status(prefix, root)


def _up_locked(plan: LabPlan, paths: LabPaths, policy: Path | None) -> None:
    present = netns.list_namespaces(plan.prefix)
    complete = bool(present) and not compare(
        plan, _observe(plan, present), _extra_namespaces(plan, present)
    )
    if present and not complete:
        _down_locked(paths)
    paths.directory.mkdir(parents=True, exist_ok=True)
    specs = _service_specs(paths, policy)
    if not complete:
        try:
            _build(plan)
        except BaseException:
            _down_locked(paths)
            raise
    services.write_resolv_confs(paths.namespace(h) for h in services.resolved_hosts(plan))
    if plan.support:
        for host in WG_HOSTS:
            mountns.create(paths.mnt_dir, host)
        support.write_ssh_files(paths, plan)
    ssh = support.sshd_specs(paths, plan) if plan.support else []
    _write_meta(paths, plan, [*specs, *ssh], policy)
    services.write_dnsmasq_config(paths)
    if policy is not None:
        services.write_upstream_chrony_config(paths)
    started = _ensure_services(paths, plan, specs)
    if started and support.expects_tunnel(paths, policy):
        support.wait_handshake(paths)  # sshd binds the tunnel address: it must exist first
    _ensure_services(paths, plan, ssh)


def down(prefix: str = "pg", root: Path | None = None) -> DownReport:
    """Remove lab `prefix`: its processes, namespaces, resolv.conf dirs and pidfiles."""
    paths = lab_paths(prefix, root)
    with _locked(paths):
        try:
            return _down_locked(paths)
        except (OSError, services.ServiceError, mountns.MountNamespaceError) as exc:
            raise LabError(f"lab down failed: {exc}") from exc


def _pids_in(namespace: str) -> list[int]:
    try:
        return netns.pids_in_namespace(namespace)
    except netns.NamespaceMissingError:
        return []


def _down_locked(paths: LabPaths) -> DownReport:
    started = time.monotonic()
    namespaces = tuple(netns.list_namespaces(paths.prefix))
    killed: list[int] = []
    survivors: list[int] = []
    for _ in range(3):  # a dying supervisor may spawn children: look again
        pids = [pid for ns in namespaces for pid in _pids_in(ns)]
        pids = [p for p in pids if p != os.getpid() and p not in survivors]
        if not pids:
            break
        signalled, stuck = services.terminate(pids)
        killed += signalled
        survivors += stuck
    for ns in namespaces:
        netns.delete_namespace(ns)
    mountns.remove_all(paths.mnt_dir, paths.prefix, WG_HOSTS)
    resolv = services.remove_resolv_confs(paths.prefix)
    if paths.directory.is_dir():
        for pidfile in paths.directory.glob("*.pid"):
            pidfile.unlink(missing_ok=True)
    if survivors:
        raise LabError(f"namespaces removed, but processes survived SIGKILL: {survivors}")
    return DownReport(
        prefix=paths.prefix,
        namespaces=namespaces,
        killed=tuple(killed),
        resolv_dirs=tuple(resolv),
        seconds=time.monotonic() - started,
    )


def status(prefix: str = "pg", root: Path | None = None) -> LabStatus:
    """What the kernel and the lab directory show for lab `prefix`."""
    paths = lab_paths(prefix, root)
    try:
        return _status(paths)
    except OSError as exc:
        raise LabError(f"lab status failed: {exc}") from exc


def _status(paths: LabPaths) -> LabStatus:
    prefix = paths.prefix
    present = netns.list_namespaces(prefix)
    meta = _read_meta(paths) if present else {}
    with_support = bool(meta.get("support")) or paths.namespace(topology.STAFF_HOST) in present
    plan = topology.plan_lab(prefix, infer_hubs(prefix, present, meta), support=with_support)
    observed = _observe(plan, present) if present else {}
    problems = compare(plan, observed, _extra_namespaces(plan, present)) if present else []
    state: LabState = "absent" if not present else ("partial" if problems else "up")
    return LabStatus(
        prefix=prefix,
        directory=str(paths.directory),
        state=state,
        hubs=plan.hubs if present else 0,
        hosts=_host_statuses(plan, observed),
        services=_service_statuses(paths, plan, meta) if present else (),
        problems=tuple(problems),
        tunnel=_tunnel_view(paths) if present and plan.support else None,
        watcher=_watcher_view(paths) if present and plan.support else None,
    )


def _watcher_view(paths: LabPaths) -> WatcherView:
    """plantgated's traffic watcher, as its last status report says."""
    report = read_status(paths.gw_state) or {}
    updated = report.get("updated")
    return WatcherView(
        state=report.get("state"),
        mode=report.get("mode"),
        detectors=len(report.get("detectors") or []),
        events=sum((report.get("events") or {}).values()),
        lost=sum((report.get("lost") or {}).values()),
        report_age_s=max(0.0, time.time() - updated) if isinstance(updated, float) else None,
    )


def _tunnel_view(paths: LabPaths) -> TunnelView:
    """plantgated's last report (`<gw-state>/vpn/tunnel.json`) and the concentrator's view."""
    try:
        report = json.loads((paths.gw_state / "vpn" / "tunnel.json").read_text())
    except (OSError, ValueError):
        report = {}
    peer = report.get("peer") or {}
    seen = support.concentrator_peer(paths)
    conc_age = None
    if seen is not None and seen.latest_handshake > 0:
        conc_age = max(0.0, time.time() - seen.latest_handshake)
    return TunnelView(
        state=report.get("state"),
        reason=str(report.get("reason") or ""),
        since=report.get("since"),
        endpoint=peer.get("endpoint"),
        handshake_age_s=peer.get("handshake_age_s"),
        rx_bytes=peer.get("rx_bytes"),
        tx_bytes=peer.get("tx_bytes"),
        concentrator_handshake_age_s=conc_age,
    )


def _host_statuses(
    plan: LabPlan, observed: Mapping[str, Observation | None]
) -> tuple[HostStatus, ...]:
    result: list[HostStatus] = []
    for host in plan.hosts:
        seen = observed.get(host.name)
        if seen is not None:
            result.append(HostStatus(host.name, host.namespace, host.role, seen.links, seen.routes))
    return tuple(result)


def _service_statuses(
    paths: LabPaths, plan: LabPlan, meta: Mapping[str, Any]
) -> tuple[ServiceStatus, ...]:
    listed = meta.get("services") or [{"name": "dnsmasq", "host": "upstream"}]
    result: list[ServiceStatus] = []
    for entry in listed:
        name, host = str(entry.get("name")), str(entry.get("host"))
        pid = services.running_pid(paths, name, plan.namespaces)
        result.append(ServiceStatus(name, host, pid, pid is not None, str(paths.logfile(name))))
    return tuple(result)


def exec_in(prefix: str, host: str, argv: Sequence[str], root: Path | None = None) -> int:
    """Run `argv` on lab host `host` (stdio inherited); returns the command's exit code.

    On `gw`, PLANTGATE_STATE_DIR points at the lab daemon's state directory (unless already
    set), so `plantgate policy ...` there acts on the same state as the lab's plantgated.
    """
    topology.validate_prefix(prefix)
    if not topology.is_lab_host(host):
        raise ValueError(
            f"unknown lab host {host!r}: expected gw, hubsw, plant, upstream, staff or hubN"
        )
    if not argv:
        raise ValueError("no command given: use `plantgate lab exec HOST -- CMD...`")
    namespace = topology.namespace_name(prefix, host)
    if not netns.namespace_exists(namespace):
        raise LabError(
            f"lab {prefix!r} has no host {host!r} (namespace {namespace} missing); is it up?"
        )
    command = services.host_command(lab_paths(prefix, root), host, argv)
    env = dict(os.environ)
    if host == "gw":
        env.setdefault(ENV_STATE_DIR, str(lab_paths(prefix, root).gw_state))
    return subprocess.run(command, check=False, env=env).returncode
