"""Electronic signatures (21 CFR 11.50, 11.70, 11.200): made, sealed, bound, verified.

Making one takes a `SignatureGrant`: the auth layer's word that the person just re-entered
their credentials (badge or employee number and PIN at a station, password and TOTP on the
Manage Page). A grant is for that person only and expires two minutes after the credentials
were entered.

A signature stores the signer's printed name at that moment, the meaning, the record's type
and id, the record's digest (`record_digest`: type, id and content hash together) and the
method. `seal` hashes all of that, so:

- the record changed after signing: its digest no longer matches `record_hash`;
- the signature row was pointed at another record: the seal no longer matches (and the
  other record's digest differs anyway, since the id is part of it);
- the signature row was otherwise edited: the seal no longer matches.

`verify_signature` checks all three against the record's current content hash, which the
caller recomputes from the record itself (`mes.services.records`), never from a stored copy.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mes import audit
from mes.db import utc_now
from mes.domain.actor import Actor
from mes.domain.errors import SignatureRejected
from mes.domain.signing import Meaning, SignatureMethod, content_hash, record_digest
from mes.models.people import Person
from mes.models.quality import ESignature

GRANT_LIFETIME = datetime.timedelta(minutes=2)


@dataclass(frozen=True, repr=False)
class SignatureCredentials:
    """What a signer re-enters: the PIN (station session) or password and TOTP code (Manage
    Page session). The API hands it to `AuthBackend.verify_signature`; it is never stored."""

    pin: str | None = None
    password: str | None = None
    totp: str | None = None

    def __repr__(self) -> str:
        return "SignatureCredentials(<hidden>)"


@dataclass(frozen=True)
class SignatureGrant:
    """Proof from the auth layer that `person_id` re-entered credentials at `at`."""

    person_id: int
    method: SignatureMethod
    at: datetime.datetime


def check_grant(actor: Actor, grant: SignatureGrant) -> None:
    """SignatureRejected unless `grant` is `actor`'s and fresh (services call it before they
    write anything, so a refused signature leaves nothing behind)."""
    now = utc_now()
    if grant.person_id != actor.person_id:
        raise SignatureRejected("the credentials entered are not the signer's")
    if not (now - GRANT_LIFETIME <= grant.at <= now + datetime.timedelta(seconds=5)):
        raise SignatureRejected("the credentials were entered too long ago: enter them again")


def seal_of(signature: ESignature) -> str:
    return content_hash(
        {
            "person_id": signature.person_id,
            "signer_name": signature.signer_name,
            "meaning": signature.meaning,
            "record_type": signature.record_type,
            "record_id": signature.record_id,
            "record_hash": signature.record_hash,
            "signed_at": audit.jsonable(signature.signed_at),
            "method": signature.method,
            "comment": signature.comment,
        }
    )


def sign(
    session: Session,
    actor: Actor,
    grant: SignatureGrant,
    *,
    meaning: Meaning,
    record_type: str,
    record_id: int,
    record_content_hash: str,
    comment: str = "",
    export_controlled: bool = False,
) -> ESignature:
    """Sign a record as `actor`; SignatureRejected unless `grant` is theirs and fresh."""
    check_grant(actor, grant)
    now = utc_now()
    person = session.get(Person, actor.person_id)
    if person is None or not person.active or person.locked:
        raise SignatureRejected("this person cannot sign (inactive or locked out)")
    signature = ESignature(
        person_id=person.id,
        signer_name=person.name,
        meaning=meaning.value,
        record_type=record_type,
        record_id=record_id,
        record_hash=record_digest(record_type, record_id, record_content_hash),
        signed_at=now,
        method=grant.method.value,
        comment=comment,
    )
    signature.seal = seal_of(signature)
    session.add(signature)
    session.flush()
    audit.record(
        session,
        actor,
        "signature.signed",
        "e_signature",
        signature.id,
        why=comment or None,
        after=audit.snapshot(signature),
        export_controlled=export_controlled,
    )
    return signature


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    problems: tuple[str, ...]


def verify_signature(
    signature: ESignature, record_type: str, record_id: int, current_content_hash: str | None
) -> SignatureCheck:
    """Whether `signature` still belongs to this record as it is now.

    `current_content_hash` is the record's content hash recomputed now (None: the record is
    gone)."""
    problems: list[str] = []
    if seal_of(signature) != signature.seal:
        problems.append("the signature was altered after signing (seal does not match)")
    if (signature.record_type, signature.record_id) != (record_type, record_id):
        problems.append(f"the signature belongs to {signature.record_type} {signature.record_id}")
    if current_content_hash is None:
        problems.append("the signed record no longer exists")
    elif record_digest(record_type, record_id, current_content_hash) != signature.record_hash:
        problems.append("the record changed after it was signed")
    return SignatureCheck(not problems, tuple(problems))
