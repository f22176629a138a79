"""Request and response models of process revisions: content in, content out, same shape.

An action is `{kind, label, required, params}` where `params` depends on `kind` (a tagged
union, so the OpenAPI schema says exactly what each kind takes). What `GET` returns can be
sent back to `PUT .../content` unchanged (the `id` and `position` fields are ignored there).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from mes.api.common import (
    Body,
    Flag,
    Id,
    Label,
    LongText,
    Note,
    Number,
    Out,
    SignatureIn,
    SignatureOut,
)
from mes.domain.actions import MAX_NOTE, MAX_PATTERN, MAX_UNIT, ActionKind
from mes.domain.content import MAX_ACTIONS, MAX_STEPS, ActionSpec, ProcessContent, StepSpec
from mes.domain.lifecycle import ProcessStatus
from mes.domain.signing import Meaning

Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN)]


class NoParams(Body):
    pass


class ScanSerialParams(Body):
    pattern: Pattern
    match_unit: Flag = False


class ScanComponentParams(Body):
    part_id: Id
    pattern: Pattern | None = None


class MeasureParams(Body):
    min: Number | None = None
    max: Number | None = None
    unit: Annotated[str, Field(min_length=1, max_length=MAX_UNIT)]


class NoteParams(Body):
    max_length: Annotated[int, Field(ge=1, le=MAX_NOTE, strict=True)] = 500


class SignParams(Body):
    meaning: Meaning


class _Action(Body):
    id: Annotated[int | None, Field(description="Ignored on input.")] = None
    position: Annotated[int | None, Field(description="Ignored on input.")] = None
    label: Label
    required: Flag = True


class ConfirmAction(_Action):
    kind: Literal["confirm"]
    params: NoParams = NoParams()


class ScanSerialAction(_Action):
    kind: Literal["scan_serial"]
    params: ScanSerialParams


class ScanComponentAction(_Action):
    kind: Literal["scan_component"]
    params: ScanComponentParams


class MeasureAction(_Action):
    kind: Literal["measure"]
    params: MeasureParams


class PassFailAction(_Action):
    kind: Literal["pass_fail"]
    params: NoParams = NoParams()


class NoteAction(_Action):
    kind: Literal["note"]
    params: NoteParams = NoteParams()


class SignAction(_Action):
    kind: Literal["sign"]
    params: SignParams


Action = Annotated[
    ConfirmAction
    | ScanSerialAction
    | ScanComponentAction
    | MeasureAction
    | PassFailAction
    | NoteAction
    | SignAction,
    Field(discriminator="kind"),
]


class StepIn(Body):
    id: Annotated[int | None, Field(description="Ignored on input.")] = None
    position: Annotated[int | None, Field(description="Ignored on input.")] = None
    title: Label
    instructions: LongText = ""
    actions: Annotated[list[Action], Field(max_length=MAX_ACTIONS)] = Field(default_factory=list)


class ContentIn(Body):
    title: Label
    steps: Annotated[list[StepIn], Field(max_length=MAX_STEPS)] = Field(default_factory=list)

    def to_domain(self) -> ProcessContent:
        return ProcessContent(
            title=self.title,
            steps=tuple(
                StepSpec(
                    title=step.title,
                    instructions=step.instructions,
                    actions=tuple(
                        ActionSpec(
                            ActionKind(a.kind),
                            a.label,
                            a.required,
                            a.params.model_dump(exclude_none=False),
                        )
                        for a in step.actions
                    ),
                )
                for step in self.steps
            ),
        )


class ProcessIn(ContentIn):
    part_id: Id


class Why(Body):
    why: Annotated[str, Field(min_length=1, max_length=1000)]


class OptionalWhy(Body):
    why: Annotated[str | None, Field(max_length=1000)] = None


class ReleaseIn(Body):
    signature: SignatureIn
    comment: Note = ""


class ActionOut(Out):
    id: int
    position: int
    kind: ActionKind
    label: str
    required: bool
    params: dict[str, Any]


class StepOut(Out):
    id: int
    position: int
    title: str
    instructions: str
    actions: list[ActionOut]


class PartRef(Out):
    id: int
    number: str
    revision: str
    export_controlled: bool


class ProcessSummary(Out):
    id: int
    part: PartRef
    revision: int
    title: str
    status: ProcessStatus
    content_hash: str
    based_on_id: int | None
    created_at: datetime.datetime
    created_by_id: int | None
    submitted_at: datetime.datetime | None
    released_at: datetime.datetime | None
    released_by_id: int | None
    release_signature_id: int | None
    obsoleted_at: datetime.datetime | None


class ProcessOut(ProcessSummary):
    steps: list[StepOut]
    signatures: list[SignatureOut] = Field(default_factory=list)
