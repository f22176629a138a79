"""Safe policy operations on top of the revision store: apply, confirm, revert, rollback,
restore. Each is audited and announced as an event.

Commit-confirm: `apply(..., confirm_within=S)` loads the policy as a *pending* revision and
schedules a revert outside this process (see `watchdog.py`). Unless `confirm` arrives before
the deadline, the last confirmed revision is loaded again, even if the applying process was
killed and even if plantgated is not running.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.audit import AuditLog
from gateway.events import Event, send_event, utc_now
from gateway.policy.apply import ApplyReport, apply_compiled
from gateway.policy.compile import Compiled, compile_policy
from gateway.policy.drift import check_drift
from gateway.policy.load import LoadedPolicy, load_file, load_text
from gateway.policy.nft import Nft
from gateway.policy.revisions import Kind, Revision, RevisionStore
from gateway.policy.watchdog import cancel_revert, schedule_revert
from gateway.state import write_atomic

SOURCE = "plantgate"


class OperationError(Exception):
    """The operation cannot be done in the current state (exit 1); nothing changed."""


@dataclass(frozen=True)
class Applied:
    loaded: LoadedPolicy
    compiled: Compiled
    report: ApplyReport
    revision: Revision


def invoking_user() -> str:
    """The person behind the command: sudo's caller if any, else the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def compile_revision(store: RevisionStore, revision: Revision) -> tuple[LoadedPolicy, Compiled]:
    """A stored revision's policy, compiled again (comments cite its original file name),
    with the VPN override that was in force when it was applied."""
    loaded = load_text(store.policy_text(revision.number), revision.file)
    if revision.vpn_mode is not None:
        loaded = loaded.with_vpn_mode(revision.vpn_mode)
    return loaded, compile_policy(loaded)


VPN_OVERRIDE = Path("vpn") / "override"


def vpn_override(state: Path) -> str | None:
    """'disabled' while `plantgate vpn disable` is in force, else None (the policy decides)."""
    try:
        text = (state / VPN_OVERRIDE).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _with_override(state: Path, loaded: LoadedPolicy) -> LoadedPolicy:
    override = vpn_override(state)
    return loaded.with_vpn_mode(override) if override else loaded


def set_vpn_enabled(
    state: Path, enabled: bool, *, user: str | None = None, nft: Nft | None = None
) -> Applied:
    """`plantgate vpn enable|disable`: switch the support VPN off (or back to the policy's
    mode) for every policy from now on, and load the current one again that way.

    The switch is a file in the state directory and is recorded in each revision, so it
    survives restarts and a boot-time restore.
    """
    store = RevisionStore(state)
    with store.locked():
        current = store.current()
        if current is None:
            raise OperationError("no policy is loaded: apply one first")
        path = state / VPN_OVERRIDE
        if enabled:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, "disabled\n")
        loaded = load_text(store.policy_text(current.number), current.file)
        if loaded.policy.support_vpn is None:
            raise OperationError("the loaded policy has no support_vpn section")
        loaded = _with_override(state, loaded)
        compiled = compile_policy(loaded)
        who = user or invoking_user()
        AuditLog(state).append(
            who, "vpn.enabled" if enabled else "vpn.disabled", {"revision": current.number}
        )
        note = "support VPN enabled (policy's mode)" if enabled else "support VPN disabled"
        return _load_as_revision(
            store,
            loaded,
            compiled,
            nft or Nft(),
            user=who,
            message=note,
            kind="apply",
            resolve=False,
        )


def apply_file(
    path: str | Path,
    state: Path,
    *,
    user: str | None = None,
    message: str = "",
    confirm_within: float | None = None,
    resolve: bool = True,
    nft: Nft | None = None,
) -> Applied:
    """Validate, compile and load a policy file as a new revision."""
    loaded = _with_override(state, load_file(path))
    compiled = compile_policy(loaded)
    store = RevisionStore(state)
    with store.locked():
        return _load_as_revision(
            store,
            loaded,
            compiled,
            nft or Nft(),
            user=user or invoking_user(),
            message=message,
            kind="apply",
            confirm_within=confirm_within,
            resolve=resolve,
        )


def rollback(
    state: Path,
    number: int | None = None,
    *,
    user: str | None = None,
    message: str = "",
    confirm_within: float | None = None,
    nft: Nft | None = None,
) -> Applied:
    """Load an earlier revision's policy again, as a new revision (default: the previous)."""
    store = RevisionStore(state)
    with store.locked():
        target = _rollback_target(store, number)
        loaded, compiled = compile_revision(store, target)
        note = message or f"rollback to revision {target.number}"
        return _load_as_revision(
            store,
            loaded,
            compiled,
            nft or Nft(),
            user=user or invoking_user(),
            message=note,
            kind="rollback",
            of=target.number,
            confirm_within=confirm_within,
        )


def confirm(state: Path, *, user: str | None = None) -> Revision:
    """Keep the pending revision; refused once its deadline has passed."""
    store = RevisionStore(state)
    with store.locked():
        pending = store.pending()
        if pending is None:
            raise OperationError(_nothing_pending(store))
        deadline = pending.deadline_at()
        now = utc_now()
        if deadline is not None and now >= deadline:
            # The contract is "reverted after the deadline": if no watchdog got to it yet,
            # this refused confirm does the revert itself before saying so.
            revert = _revert_locked(store, pending, deadline, Nft())
            late = (now - deadline).total_seconds()
            raise OperationError(
                f"too late: the confirm window of revision {pending.number} closed at "
                f"{deadline:%H:%M:%S} UTC ({late:.0f} s ago); revision {revert.of} is loaded "
                f"again (revision {revert.number})"
            )
        confirmed = replace(pending, status="confirmed")
        store.save(confirmed)
        cancel_revert(pending.watchdog)
        _record(state, user or invoking_user(), "policy.confirmed", confirmed)
        return confirmed


def _nothing_pending(store: RevisionStore) -> str:
    """Why there is nothing to confirm, naming a revert that came first if there was one."""
    current = store.current()
    if current is not None and current.kind == "revert":
        reverted = next(
            (
                r
                for r in reversed(store.all())
                if r.status == "reverted" and r.number < current.number
            ),
            None,
        )
        if reverted is not None and reverted.deadline_at() is not None:
            closed = reverted.deadline_at()
            assert closed is not None
            return (
                f"too late: the confirm window of revision {reverted.number} closed at "
                f"{closed:%H:%M:%S} UTC; it was reverted (revision {current.number} loads "
                f"revision {current.of} again)"
            )
    return "nothing to confirm: no revision is pending"


def revert_if_unconfirmed(state: Path, number: int, *, nft: Nft | None = None) -> Revision | None:
    """If revision `number` is still pending past its deadline, load the last confirmed one.

    Returns the revert revision, or None when there is nothing to do (confirmed meanwhile,
    already reverted or superseded, or the deadline has not come yet).
    """
    store = RevisionStore(state)
    with store.locked():
        pending = store.get(number)
        if pending is None:
            return _restore_interrupted(store, number, nft or Nft())
        deadline = pending.deadline_at()
        if pending.status != "pending" or deadline is None:
            return None
        if utc_now() < deadline:
            return None
        return _revert_locked(store, pending, deadline, nft or Nft())


def _restore_interrupted(store: RevisionStore, number: int, nft: Nft) -> Revision | None:
    """Revision `number` was never recorded: its applier died (or the kernel refused it).

    We hold the lock, so no apply is under way. If nothing was recorded after that number
    either and the live table differs from the current revision's, the dead applier's
    table is in the kernel unconfirmed: load the last confirmed revision again.
    """
    if store.next_number() > number:
        return None  # the number was used later: that revision has its own record and revert
    target = store.last_confirmed()
    drift = check_drift(store.state, nft)
    if target is None or drift is None or drift.clean:
        return None
    loaded, compiled = compile_revision(store, target)
    note = (
        f"automatic revert: the apply that was to be revision {number} was interrupted "
        "before it was recorded or confirmed"
    )
    applied = _load_as_revision(
        store,
        loaded,
        compiled,
        nft,
        user="plantgate-watchdog",
        message=note,
        kind="revert",
        of=target.number,
        resolve=False,
    )
    return applied.revision


def _revert_locked(
    store: RevisionStore, pending: Revision, deadline: datetime.datetime, nft: Nft
) -> Revision:
    """Load the last confirmed revision before `pending` again; the caller holds the lock."""
    target = store.last_confirmed(before=pending.number)
    if target is None:
        raise OperationError(f"revision {pending.number} has no confirmed revision to revert to")
    loaded, compiled = compile_revision(store, target)
    store.save(replace(pending, status="reverted"))
    note = (
        f"automatic revert: revision {pending.number} was not confirmed by {deadline:%H:%M:%S} UTC"
    )
    applied = _load_as_revision(
        store,
        loaded,
        compiled,
        nft,
        user="plantgate-watchdog",
        message=note,
        kind="revert",
        of=target.number,
        resolve=False,  # a revert must be quick; carry-over keeps names
    )
    return applied.revision


def restore(state: Path, *, nft: Nft | None = None) -> Revision:
    """Load the last confirmed revision (at boot, before interfaces come up)."""
    store = RevisionStore(state)
    with store.locked():
        target = store.last_confirmed()
        if target is None:
            raise OperationError("no confirmed revision to restore")
        loaded, compiled = compile_revision(store, target)
        apply_compiled(compiled, nft or Nft(), loaded.file)
        store.set_current(target.number)
        _record(state, "plantgate-boot", "policy.restored", target)
        return target


def repair(state: Path, *, user: str | None = None, nft: Nft | None = None) -> Revision:
    """Load the current revision again, over whatever drifted (no new revision)."""
    store = RevisionStore(state)
    with store.locked():
        current = store.current()
        if current is None:
            raise OperationError("nothing to repair: no revision has been applied")
        loaded, compiled = compile_revision(store, current)
        apply_compiled(compiled, nft or Nft(), loaded.file)
        _record(state, user or invoking_user(), "policy.repaired", current)
        return current


def _rollback_target(store: RevisionStore, number: int | None) -> Revision:
    if number is not None:
        target = store.get(number)
        if target is None:
            known = ", ".join(str(r.number) for r in store.all()) or "none"
            raise OperationError(f"no revision {number} (revisions: {known})")
        return target
    current = store.current()
    target = store.last_confirmed(before=current.number if current else None)
    if target is None:
        raise OperationError("no earlier confirmed revision to roll back to")
    return target


def _load_as_revision(
    store: RevisionStore,
    loaded: LoadedPolicy,
    compiled: Compiled,
    nft: Nft,
    *,
    user: str,
    message: str,
    kind: Kind,
    of: int | None = None,
    confirm_within: float | None = None,
    resolve: bool = True,
) -> Applied:
    """Load into the kernel, then record the revision, audit it and announce it (locked)."""
    if confirm_within is not None and store.last_confirmed() is None:
        raise OperationError(
            "nothing confirmed to go back to: apply once without --confirm-within first"
        )
    from gateway.dns.lookup import resolve_all  # dnspython: only when names are resolved

    resolved = resolve_all(compiled.fqdn, loaded.policy) if resolve else {}
    deadline = utc_now() + datetime.timedelta(seconds=confirm_within) if confirm_within else None
    # The revert is scheduled before the kernel sees the new table: an applier killed
    # between the load and the record must not leave an unconfirmed table with no revert.
    number = store.next_number()
    watchdog = schedule_revert(store.state, number, deadline) if deadline else None
    try:
        report = apply_compiled(compiled, nft, loaded.file, resolved)
    except Exception as exc:  # the kernel refused or libnftables failed: nothing changed
        cancel_revert(watchdog)
        _record_failure(store.state, user, kind, loaded.file, exc)
        raise
    superseded = store.pending()
    if superseded is not None:
        store.save(replace(superseded, status="superseded"))
        cancel_revert(superseded.watchdog)
    draft = Revision(
        number=0,
        created=utc_now().isoformat(),
        user=user,
        message=message,
        sha256=hashlib.sha256(loaded.source.text.encode()).hexdigest(),
        file=loaded.file,
        kind=kind,
        of=of,
        status="pending" if deadline else "confirmed",
        deadline=deadline.isoformat() if deadline else None,
        seconds=round(report.seconds, 4),
        vpn_mode=_vpn_override_of(loaded),
        watchdog=watchdog,
    )
    revision = store.add(draft, loaded.source.text, compiled.text, nft.table_listing())
    assert revision.number == number  # we hold the lock: nobody took the number meanwhile
    action = {
        "apply": "policy.applied",
        "rollback": "policy.rolled_back",
        "revert": "policy.reverted",
    }[kind]
    _record(store.state, user, action, revision)
    return Applied(loaded, compiled, report, revision)


def _vpn_override_of(loaded: LoadedPolicy) -> str | None:
    """The mode an override put in force, if the effective mode differs from the written one."""
    written = loaded.written.support_vpn if loaded.written else None
    effective = loaded.policy.support_vpn
    if written is None or effective is None or written.mode == effective.mode:
        return None
    return effective.mode


def _record_failure(state: Path, user: str, kind: Kind, file: str, exc: Exception) -> None:
    """A load the kernel refused: audited and announced, so the watcher can alert on it."""
    details = {"file": file, "kind": kind, "error": str(exc).splitlines()[0][:500]}
    AuditLog(state).append(user, "policy.apply_failed", details)
    send_event(state, Event("policy.apply_failed", SOURCE, {"user": user, **details}))


def _record(state: Path, user: str, action: str, revision: Revision) -> None:
    details = {
        "revision": revision.number,
        "sha256": revision.sha256,
        "file": revision.file,
        "status": revision.status,
        "message": revision.message,
        "kind": revision.kind,
        "of": revision.of,
        "deadline": revision.deadline,
    }
    AuditLog(state).append(user, action, details)
    send_event(state, Event(action, SOURCE, {"user": user, **details}))
