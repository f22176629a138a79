"""The login and re-authentication flows: who may in, what a failure costs, what is sent.

Operator: a station code, a badge scan or an employee number, and the PIN. Manage Page: an
employee number, the password and a TOTP code. The same checks back an e-signature
(`reauth_pin`, `reauth_password_totp`), where the identity comes from the session.

Order of a check, the same for every path so that answers and timing leak little:
1. rate limits (identity, station, address) — refused: 429 with Retry-After, nothing hashed;
2. look up station and person; unknown, inactive, no PIN set, or locked: the credential is
   still hashed against a dummy so the answer takes as long as a real check;
3. the answer to every failure is the same "not recognised", except a locked person, who is
   told to ask a lead (an identifier is not a secret; the PIN is never tested while locked,
   so a lock cannot be used to learn whether a guess was right);
4. a wrong credential counts towards the lockout; the fifth consecutive locks the person and
   sends `mes.lockout`; every failure sends `mes.login_failed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mes.auth import accounts, badges, lockout
from mes.auth.accounts import Keys
from mes.auth.notify import Notifier
from mes.auth.pins import looks_like_pin
from mes.auth.ratelimit import LoginLimiter
from mes.db import utc_now
from mes.models.people import Person, Station

NOT_RECOGNISED = "badge or employee number and PIN not recognised"
MANAGE_NOT_RECOGNISED = "employee number, password or code not recognised"
LOCKED = "this account is locked after too many failed attempts; ask a lead to unlock it"
RATE_LIMITED = "too many attempts; wait and try again"


class LoginRefused(Exception):
    """A refused login or re-authentication: HTTP status, message for the person, reason
    for the event and the log, and seconds to wait (429)."""

    def __init__(self, status: int, message: str, reason: str, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    """Where an attempt comes from (for limits and events)."""

    address: str | None
    station_code: str | None = None


@dataclass(frozen=True, repr=False)
class Candidate:
    """What a check needs from the database, read in a short transaction."""

    person_id: int | None  # None: unknown, inactive or without this credential
    stored: str | None
    locked: bool
    station_id: int | None = None  # None: unknown or inactive station (operator logins)

    def __repr__(self) -> str:
        return f"Candidate(person_id={self.person_id}, locked={self.locked})"


@dataclass(frozen=True)
class ManageLogin:
    person: Person
    enrolment_uri: str | None = None  # set when the person must first enrol TOTP


class Authenticator:
    """The checks, split so that argon2 never runs inside a database transaction: `look_up`
    reads what is needed (short transaction), `verify` hashes (no lock held), `settle`
    writes the outcome (short transaction). With SQLite every transaction takes the write
    lock, and 50 stations signing in at once must not queue behind each other's argon2."""

    def __init__(
        self,
        keys: Keys,
        limiter: LoginLimiter,
        notifier: Notifier,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.notifier = notifier
        self._now = wall_clock

    # ------------------------------------------------------------ phases

    def limit(self, identity: str, attempt: Attempt, via: str, context: str) -> None:
        decision = self.limiter.attempt(identity, attempt.station_code, attempt.address)
        if not decision.allowed:
            self.notifier.login_failed(
                reason="rate_limited",
                via=via,
                station=attempt.station_code,
                address=attempt.address,
                context=context,
            )
            raise LoginRefused(429, RATE_LIMITED, "rate_limited", decision.retry_after_s)

    @staticmethod
    def candidate(person: Person | None, kind: str, station: Station | None = None) -> Candidate:
        stored = None
        if person is not None:
            stored = person.pin_hash if kind == "pin" else person.password_hash
        usable = person is not None and person.active and stored is not None
        return Candidate(
            person_id=person.id if person is not None and usable else None,
            stored=stored if usable else None,
            locked=bool(usable and person is not None and person.locked_at is not None),
            station_id=station.id if station is not None and station.active else None,
        )

    def verify(self, candidate: Candidate, secret: str, kind: str) -> str:
        """'ok', 'locked', 'bad_credentials' or 'unknown_identity' (always one argon2 run)."""
        hasher = self.keys.pins if kind == "pin" else self.keys.passwords
        if candidate.locked:
            hasher.verify(None, secret)  # same time as a real check; the secret is not tested
            return "locked"
        ok = hasher.verify(candidate.stored, secret)
        if kind == "pin" and not looks_like_pin(secret):
            ok = False
        if candidate.person_id is None:
            return "unknown_identity"
        return "ok" if ok else "bad_credentials"

    def settle(
        self,
        db: Session,
        candidate: Candidate,
        outcome: str,
        attempt: Attempt,
        *,
        via: str,
        context: str,
        message: str,
        secret: str = "",
    ) -> Person:
        """Write the outcome; the person on success, LoginRefused otherwise."""
        person = db.get(Person, candidate.person_id) if candidate.person_id is not None else None
        if outcome == "ok" and person is not None and person.locked_at is None:
            person.pin_failures = 0
            if via in ("badge", "employee_number", "pin") and self.keys.pins.needs_rehash(
                person.pin_hash or ""
            ):
                person.pin_hash = self.keys.pins.hash(secret)
            return person
        if outcome == "ok":  # locked or gone since the look-up
            outcome = "locked" if person is not None else "unknown_identity"
        raise self._failed(
            person, attempt, via, outcome, context, LOCKED if outcome == "locked" else message
        )

    def _failed(
        self,
        person: Person | None,
        attempt: Attempt,
        via: str,
        reason: str,
        context: str,
        message: str,
    ) -> LoginRefused:
        """Count a wrong credential against `person` (if any), send events, return the error."""
        failures: int | None = None
        if person is not None and reason == "bad_credentials":
            outcome = lockout.after_failure(person.pin_failures)
            person.pin_failures = outcome.failures
            failures = outcome.failures
            if person.locked_at is None and lockout.is_locked(None, outcome.failures):
                person.locked_at = utc_now()
                self.notifier.lockout(
                    employee_number=person.employee_number,
                    station=attempt.station_code,
                    address=attempt.address,
                    failures=outcome.failures,
                )
        self.notifier.login_failed(
            reason=reason,
            via=via,
            station=attempt.station_code,
            address=attempt.address,
            employee_number=person.employee_number if person is not None else None,
            failures=failures,
            context=context,
        )
        status = 423 if reason == "locked" else 401
        return LoginRefused(status, message, reason)

    # ------------------------------------------------------------ operator

    def operator_identity(self, badge: str | None, employee_number: str | None) -> tuple[str, str]:
        """(via, rate-limit key) of an operator login; LoginRefused(422) without either."""
        if badge:
            digest = badges.token_hmac(self.keys.badge_key, badge)
            return "badge", f"badge:{digest or 'malformed'}"
        if employee_number:
            return "employee_number", f"emp:{employee_number.strip()[:32]}"
        raise LoginRefused(422, "scan a badge or enter an employee number", "no_identity")

    def operator_lookup(
        self, db: Session, station_code: str, badge: str | None, employee_number: str | None
    ) -> Candidate:
        station = accounts.station_by_code(db, station_code)
        person = (
            accounts.person_by_badge(db, self.keys, badge)
            if badge
            else accounts.person_by_employee_number(db, employee_number or "")
        )
        return self.candidate(person, "pin", station)

    def operator_outcome(self, candidate: Candidate, pin: str) -> str:
        outcome = self.verify(candidate, pin, "pin")
        if candidate.station_id is None:
            return "unknown_station"
        return outcome

    # ------------------------------------------------------------ re-authentication

    def reauth_pin(self, db: Session, person: Person, pin: str, attempt: Attempt) -> None:
        """An e-signature by PIN of `person` (LoginRefused if it fails). Releases the
        database lock while hashing: `db` must hold nothing unwritten."""
        self.limit(f"emp:{person.employee_number}", attempt, "pin", "signature")
        candidate = self.candidate(person, "pin")
        db.rollback()
        outcome = self.verify(candidate, pin, "pin")
        self.settle(db, candidate, outcome, attempt, via="pin", context="signature",
                    message=NOT_RECOGNISED, secret=pin)  # fmt: skip

    def reauth_password_totp(
        self, db: Session, person: Person, password: str, code: str, attempt: Attempt
    ) -> None:
        self.limit(f"emp:{person.employee_number}", attempt, "password", "signature")
        candidate = self.candidate(person, "password")
        db.rollback()
        outcome = self.verify(candidate, password, "password")
        found = self.settle(db, candidate, outcome, attempt, via="password",
                            context="signature", message=MANAGE_NOT_RECOGNISED)  # fmt: skip
        if not accounts.check_totp(self.keys, found, code, self._now()):
            raise self._failed(found, attempt, "totp", "bad_credentials", "signature",
                               MANAGE_NOT_RECOGNISED)  # fmt: skip

    # ------------------------------------------------------------ Manage Page

    def manage_second_factor(
        self, db: Session, person: Person, code: str, attempt: Attempt
    ) -> ManageLogin:
        """After a good password: enrol TOTP (first time), or check the code once."""
        no_code = not code.strip()
        first_time = person.totp_secret is None or (accounts.totp_pending(person) and no_code)
        if first_time:
            return ManageLogin(person, accounts.begin_totp_enrolment(db, self.keys, person))
        if not accounts.check_totp(self.keys, person, code, self._now()):
            raise self._failed(person, attempt, "totp", "bad_credentials", "login",
                               MANAGE_NOT_RECOGNISED)  # fmt: skip
        return ManageLogin(person)
