"""The content of a process revision and its hash.

A revision's content is its title and its ordered steps, each with instructions and ordered
actions. The content hash is sha256 over the canonical JSON of that content together with
the part (number and revision) and the revision number, so the same instructions filed under
another part or revision hash differently. The release signature is bound to it: any change
after release, however made, shows as a hash that no longer matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mes.domain.actions import ActionKind, Json, normalize_params
from mes.domain.errors import Invalid
from mes.domain.signing import content_hash

MAX_STEPS = 200
MAX_ACTIONS = 50
MAX_TITLE = 200
MAX_INSTRUCTIONS = 20_000


@dataclass(frozen=True)
class ActionSpec:
    kind: ActionKind
    label: str
    required: bool = True
    params: Mapping[str, Json] = field(default_factory=dict)

    def as_json(self) -> dict[str, Json]:
        return {
            "kind": self.kind.value,
            "label": self.label,
            "required": self.required,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class StepSpec:
    title: str
    instructions: str = ""
    actions: tuple[ActionSpec, ...] = ()

    def as_json(self) -> dict[str, Json]:
        return {
            "title": self.title,
            "instructions": self.instructions,
            "actions": [a.as_json() for a in self.actions],
        }


@dataclass(frozen=True)
class ProcessContent:
    title: str
    steps: tuple[StepSpec, ...] = ()

    def as_json(self) -> dict[str, Json]:
        return {"title": self.title, "steps": [s.as_json() for s in self.steps]}

    def component_part_ids(self) -> set[int]:
        return {
            int(a.params["part_id"])
            for s in self.steps
            for a in s.actions
            if a.kind is ActionKind.SCAN_COMPONENT
        }


def _text(value: object, where: str, limit: int, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        need = f"1 to {limit}" if required else f"at most {limit}"
        raise Invalid(f"{where}: expected text of {need} characters", [(where, "bad text")])
    return value.strip()


def check_content(content: ProcessContent) -> ProcessContent:
    """The content with texts trimmed and action parameters normalised; Invalid otherwise."""
    title = _text(content.title, "title", MAX_TITLE)
    if len(content.steps) > MAX_STEPS:
        raise Invalid(f"steps: at most {MAX_STEPS}", [("steps", f"at most {MAX_STEPS}")])
    steps: list[StepSpec] = []
    for i, step in enumerate(content.steps):
        where = f"steps.{i}"
        if len(step.actions) > MAX_ACTIONS:
            raise Invalid(f"{where}.actions: at most {MAX_ACTIONS}", [(where, "too many")])
        actions = tuple(
            ActionSpec(
                kind=ActionKind(action.kind),
                label=_text(action.label, f"{where}.actions.{j}.label", MAX_TITLE),
                required=bool(action.required),
                params=normalize_params(
                    ActionKind(action.kind), action.params, f"{where}.actions.{j}.params"
                ),
            )
            for j, action in enumerate(step.actions)
        )
        steps.append(
            StepSpec(
                title=_text(step.title, f"{where}.title", MAX_TITLE),
                instructions=_text(
                    step.instructions, f"{where}.instructions", MAX_INSTRUCTIONS, required=False
                ),
                actions=actions,
            )
        )
    return ProcessContent(title=title, steps=tuple(steps))


def process_hash(
    part_number: str, part_revision: str, revision: int, content: ProcessContent
) -> str:
    """The content hash of one process revision."""
    return content_hash(
        {
            "part": {"number": part_number, "revision": part_revision},
            "revision": revision,
            "content": content.as_json(),
        }
    )


def content_from_json(raw: Mapping[str, Any]) -> ProcessContent:
    """Content from its JSON form (as `as_json` writes it); Invalid when malformed."""
    try:
        steps = tuple(
            StepSpec(
                title=step["title"],
                instructions=step.get("instructions", ""),
                actions=tuple(
                    ActionSpec(
                        kind=ActionKind(a["kind"]),
                        label=a["label"],
                        required=a.get("required", True),
                        params=a.get("params", {}),
                    )
                    for a in step.get("actions", [])
                ),
            )
            for step in _seq(raw.get("steps", []))
        )
        return check_content(ProcessContent(title=raw["title"], steps=steps))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Invalid(f"not process content: {exc}", [("content", str(exc))]) from None


def _seq(value: object) -> Sequence[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise TypeError("steps must be a list")
    return value
