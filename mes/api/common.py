"""Types shared by the API's request and response models: bounded ids, texts, pages.

Why bounds everywhere: a number the database cannot hold, or a text longer than its column,
must be a 422 for the caller and never reach the database as a 500.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mes.signatures import SignatureCredentials

MAX_ID = 2**31 - 1


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value.strip()


def _filled(value: str) -> str:
    if not value:
        raise ValueError("must not be blank")
    return value


Name = Annotated[
    str, Field(min_length=1, max_length=120), AfterValidator(_clean), AfterValidator(_filled)
]
Label = Annotated[
    str, Field(min_length=1, max_length=200), AfterValidator(_clean), AfterValidator(_filled)
]
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Reason = Annotated[
    str, Field(min_length=1, max_length=1000), AfterValidator(_clean), AfterValidator(_filled)
]
Note = Annotated[str, Field(max_length=1000), AfterValidator(_clean)]
ShortNote = Annotated[str, Field(max_length=500), AfterValidator(_clean)]
LongText = Annotated[str, Field(max_length=20_000), AfterValidator(_clean)]
Description = Annotated[
    str, Field(min_length=1, max_length=20_000), AfterValidator(_clean), AfterValidator(_filled)
]
Id = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
Flag = Annotated[bool, Field(strict=True)]
Number = Annotated[float, Field(ge=-1e15, le=1e15, strict=True, allow_inf_nan=False)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refuse it at the door
Search = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


class Body(BaseModel):
    """Request bodies: unknown fields are refused. Numbers and flags are strict (`Id`,
    `Flag`, `Number`): "1" is not 1 and 1 is not true. (Not the whole model: FastAPI
    validates decoded JSON in Python mode, where strictness would refuse ISO dates and
    enum values given as strings.)"""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Response bodies, read from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


class SignatureIn(Body):
    """Re-entered credentials for an e-signature: `pin` at a station, `password` and `totp`
    on the Manage Page."""

    pin: Annotated[str | None, Field(max_length=64)] = None
    password: Annotated[str | None, Field(max_length=256)] = None
    totp: Annotated[str | None, Field(max_length=16)] = None

    def credentials(self) -> SignatureCredentials:
        return SignatureCredentials(pin=self.pin, password=self.password, totp=self.totp)


class SignatureOut(Out):
    id: int
    person_id: int
    signer_name: str
    meaning: str
    record_type: str
    record_id: int
    signed_at: datetime.datetime
    method: str
    comment: str
    valid: bool = True
    problems: list[str] = Field(default_factory=list)


M = TypeVar("M", bound=BaseModel)


def view(model: type[M], record: object, **extra: Any) -> M:
    """`model` filled from `record`'s attributes, with `extra` fields given explicitly."""
    data = {
        name: getattr(record, name)
        for name in model.model_fields
        if name not in extra and hasattr(record, name)
    }
    return model.model_validate({**data, **extra})


class Deleted(BaseModel):
    deleted: bool = True
