"""Nonconformances: held units and quality's signed disposition.

GET  /manage/nonconformances[?status]          list                  (nonconformances.read)
GET  /manage/nonconformances/{id}              detail and signatures (nonconformances.read)
POST /manage/nonconformances/{id}/disposition  decide, with an e-signature: password,
                                               authenticator code, meaning "dispositioned"
                                               (nonconformances.disposition)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from mes.api.deps import grant_for, request_session
from mes.domain.errors import MesError, SignatureRejected
from mes.domain.lifecycle import Disposition, NcStatus
from mes.domain.roles import Permission as P
from mes.domain.signing import Meaning
from mes.services import quality, records
from mes.signatures import SignatureCredentials
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.lookups import names_of
from mes.web.render import page
from mes.web.routes.common import Id

router = APIRouter(prefix="/manage/nonconformances", include_in_schema=False)
DISPOSITION_NAMES = {
    Disposition.USE_AS_IS: "use as is (back to where it was)",
    Disposition.REWORK: "rework (back into production)",
    Disposition.REPAIR: "repair (back into production)",
    Disposition.SCRAP: "scrap",
    Disposition.RETURN_TO_VENDOR: "return to vendor (scrapped here)",
}


@router.get("")
def list_ncs(
    request: Request,
    user: Annotated[WebUser, manage(P.NC_READ)],
    status: NcStatus | None = None,
) -> Response:
    with request_session(request) as db:
        found = quality.list_ncs(db, user.actor, status=status, limit=500)
        return page(request, "manage/nonconformances.html", user=user, ncs=found,
                    status_filter=status.value if status else "",
                    statuses=[s.value for s in NcStatus])  # fmt: skip


def detail_page(
    request: Request, user: WebUser, nc_id: int, *, status: int = 200, error: str | None = None,
    values: dict[str, str] | None = None, problems: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        nc, unit, part = quality.get_nc(db, user.actor, nc_id)
        signatures = records.signatures_of(db, user.actor, "nonconformance", nc.id)
        names = names_of(db, [nc.raised_by_id, nc.dispositioned_by_id])
        return page(request, "manage/nonconformance.html", user=user, status=status, nc=nc,
                    unit=unit, part=part, signatures=signatures, names=names, error=error,
                    values=values or {}, problems=problems or {},
                    dispositions=DISPOSITION_NAMES,
                    meaning=Meaning.DISPOSITIONED.value)  # fmt: skip


@router.get("/{nc_id}")
def show_nc(request: Request, nc_id: Id, user: Annotated[WebUser, manage(P.NC_READ)]) -> Response:
    return detail_page(request, user, nc_id)


@router.post("/{nc_id}/disposition")
def disposition(
    request: Request, nc_id: Id, form: Form,
    user: Annotated[WebUser, manage(P.NC_DISPOSITION)],
) -> Response:  # fmt: skip
    fields = Fields(form)
    chosen = fields.choice("disposition", [d.value for d in Disposition])
    note = fields.text("note", limit=1000)
    password, code = fields.secret("password"), fields.secret("totp", limit=16)
    if not password:
        fields.problem("password", "required to sign")
    if not code:
        fields.problem("totp", "required to sign")
    if not fields.ok or chosen is None:
        return detail_page(request, user, nc_id, status=422, values=fields.values,
                           problems=fields.problems)  # fmt: skip
    with request_session(request) as db:
        quality.get_nc(db, user.actor, nc_id)  # 404 before any credential check
    try:
        grant = grant_for(request, user.actor, SignatureCredentials(password=password, totp=code))
    except SignatureRejected as exc:
        return detail_page(request, user, nc_id, status=403, error=exc.message,
                           values=fields.values)  # fmt: skip
    with request_session(request) as db:
        try:
            quality.disposition_nc(db, user.actor, nc_id, Disposition(chosen), note, grant)
            db.commit()
        except MesError as exc:
            db.rollback()
            return detail_page(request, user, nc_id, status=exc.status, error=exc.message,
                               values=fields.values)  # fmt: skip
    return see_other(f"/manage/nonconformances/{nc_id}", "Dispositioned and signed.")
