"""The audit trail, for auditors (and quality and admins, who may read it too).

GET /manage/audit[?entity&entity_id&page]   newest first; entries about export-controlled
                                            records only for the cleared   (audit.read)
GET /manage/audit/verify                    the chain and its anchor checked now
                                            (positions only, never content) (audit.read)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from mes import audit
from mes.api.deps import SETTINGS_KEY, request_session
from mes.config import MesSettings
from mes.domain.roles import Permission as P
from mes.domain.visibility import cleared_for_export_control
from mes.web.access import WebUser, manage
from mes.web.render import page
from mes.web.routes.common import PAGE_SIZE, Page

router = APIRouter(prefix="/manage/audit", include_in_schema=False)
Auditor = Annotated[WebUser, manage(P.AUDIT_READ)]
Filter = Annotated[str | None, Query(max_length=64)]


@router.get("")
def entries(
    request: Request, user: Auditor, entity: Filter = None, entity_id: Filter = None,
    page_no: Annotated[Page, Query(alias="page")] = 0,
) -> Response:  # fmt: skip
    entity = (entity or "").replace("\x00", "").strip() or None
    entity_id = (entity_id or "").replace("\x00", "").strip() or None
    with request_session(request) as db:
        found = list(
            audit.visible_entries(
                db, cleared=cleared_for_export_control(user.actor), entity=entity,
                entity_id=entity_id, limit=PAGE_SIZE, offset=page_no * PAGE_SIZE,
            )
        )  # fmt: skip
        return page(request, "manage/audit.html", user=user, entries=found,
                    entity=entity or "", entity_id=entity_id or "", page_no=page_no,
                    more=len(found) == PAGE_SIZE)  # fmt: skip


@router.get("/verify")
def verify(request: Request, user: Auditor) -> Response:
    settings: MesSettings = getattr(request.app.state, SETTINGS_KEY)
    with request_session(request) as db:
        report = audit.verify(db, settings.audit_anchor)
        return page(request, "manage/audit_verify.html", user=user, report=report)
