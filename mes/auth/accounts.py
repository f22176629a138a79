"""Credential records in the database: PINs, badges, passwords, TOTP, unlock.

The only writer of the credential columns of `Person` and of `Badge` rows. Each function
takes an open SQLAlchemy session and leaves committing to the caller (so the caller's audit
entry lands in the same transaction). Nothing returned here carries a stored hash; a badge
token or a TOTP provisioning URI is returned once, at issue.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.auth import badges, totp
from mes.auth.hashing import DEFAULT_PARAMS, Argon2Params, PepperedHasher
from mes.auth.passwords import PasswordHasher, check_password
from mes.auth.pins import check_pin
from mes.auth.secrets import MesSecrets, Sealer
from mes.db import utc_now
from mes.models.people import Badge, Person, Station


@dataclass(frozen=True, repr=False)
class Keys:
    """Everything needed to check and write credentials (built once at start)."""

    pins: PepperedHasher
    passwords: PasswordHasher
    badge_key: bytes
    sealer: Sealer

    @classmethod
    def from_secrets(cls, loaded: MesSecrets, params: Argon2Params = DEFAULT_PARAMS) -> Keys:
        return cls(
            pins=PepperedHasher(loaded.pin_key, params),
            passwords=PasswordHasher(loaded.password_key, params),
            badge_key=loaded.badge_key,
            sealer=loaded.sealer,
        )

    def __repr__(self) -> str:
        return "Keys(<hidden>)"


def totp_context(person: Person) -> str:
    return f"person:{person.id}:totp"


# ---------------------------------------------------------------- lookups


def person_by_employee_number(db: Session, number: str) -> Person | None:
    number = number.strip()
    if not number or len(number) > 32:
        return None
    return db.scalars(select(Person).where(Person.employee_number == number)).first()


def person_by_badge(db: Session, keys: Keys, scanned: str) -> Person | None:
    digest = badges.token_hmac(keys.badge_key, scanned)
    if digest is None:
        return None
    badge = db.scalars(
        select(Badge).where(Badge.token_hmac == digest, Badge.revoked_at.is_(None))
    ).first()
    return db.get(Person, badge.person_id) if badge is not None else None


def station_by_code(db: Session, code: str) -> Station | None:
    code = code.strip()
    if not code or len(code) > 32:
        return None
    return db.scalars(select(Station).where(Station.code == code)).first()


# ---------------------------------------------------------------- PINs and badges


def set_pin(db: Session, keys: Keys, person: Person, pin: str) -> None:
    """Check the PIN policy (PinRejected) and store the new hash; clears failures."""
    check_pin(pin, person.employee_number)
    person.pin_hash = keys.pins.hash(pin)
    person.pin_failures = 0
    db.flush()


def issue_badge(db: Session, keys: Keys, person: Person, issued_by: int | None) -> str:
    """A new badge for `person`; returns the printable token (the only time it exists)."""
    issued = badges.issue(keys.badge_key)
    db.add(Badge(person_id=person.id, token_hmac=issued.token_hmac, issued_by_id=issued_by))
    db.flush()
    return issued.token


def revoke_badge(db: Session, badge: Badge, reason: str) -> bool:
    """Mark `badge` revoked; False if it already was."""
    if badge.revoked_at is not None:
        return False
    badge.revoked_at = utc_now()
    badge.revoked_reason = reason.strip()[:500] or "revoked"
    db.flush()
    return True


def active_badges(db: Session, person: Person) -> list[Badge]:
    return list(
        db.scalars(select(Badge).where(Badge.person_id == person.id, Badge.revoked_at.is_(None)))
    )


def reissue_badge(
    db: Session, keys: Keys, person: Person, reason: str, issued_by: int | None
) -> tuple[str, list[int]]:
    """Revoke every active badge of `person` and issue a new one: (token, revoked ids)."""
    revoked = [b.id for b in active_badges(db, person) if revoke_badge(db, b, reason)]
    return issue_badge(db, keys, person, issued_by), revoked


# ---------------------------------------------------------------- Manage Page accounts


def set_password(db: Session, keys: Keys, person: Person, password: str) -> None:
    """Check the password policy (PasswordRejected) and store the new hash."""
    checked = check_password(password, person.employee_number, person.name)
    person.password_hash = keys.passwords.hash(checked)
    person.password_changed_at = utc_now()
    db.flush()


def begin_totp_enrolment(db: Session, keys: Keys, person: Person) -> str:
    """A fresh TOTP secret (sealed into the row, pending until its first code is accepted);
    returns the provisioning URI, which is never shown again."""
    enrolment = totp.enrol(person.employee_number)
    person.totp_secret = keys.sealer.seal(enrolment.secret, totp_context(person))
    person.totp_last_step = None
    db.flush()
    return enrolment.uri


def totp_pending(person: Person) -> bool:
    return person.totp_secret is not None and person.totp_last_step is None


def reset_totp(db: Session, person: Person) -> None:
    person.totp_secret = None
    person.totp_last_step = None
    db.flush()


def check_totp(keys: Keys, person: Person, code: str, now: float) -> bool:
    """Accept `code` once (records its step); False if wrong, replayed or not enrolled."""
    if person.totp_secret is None:
        return False
    secret = keys.sealer.open(person.totp_secret, totp_context(person))
    step = totp.verify(secret, code, now, person.totp_last_step)
    if step is None:
        return False
    person.totp_last_step = step
    return True


# ---------------------------------------------------------------- lockout


def unlock(db: Session, person: Person) -> datetime.datetime | None:
    """Clear the lock and the failure count; returns when it had been locked (or None)."""
    was = person.locked_at
    person.locked_at = None
    person.pin_failures = 0
    db.flush()
    return was
