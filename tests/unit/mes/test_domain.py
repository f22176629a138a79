"""Pure rules: roles, the process life cycle, actions, content hashes, visibility."""

from __future__ import annotations

import time

import pytest

from mes.domain import actions, content, lifecycle, roles, signing, visibility
from mes.domain.actions import ActionKind, evaluate, normalize_params
from mes.domain.errors import Conflict, Invalid
from mes.domain.lifecycle import ProcessStatus as S
from mes.domain.roles import Permission as P
from mes.domain.roles import Role
from tests.unit.mes.support import action, step

# -- roles ------------------------------------------------------------------------------


def test_admin_never_releases_and_auditor_never_writes() -> None:
    assert not roles.allows({Role.ADMIN}, P.PROCESSES_RELEASE)
    assert not roles.allows({Role.ADMIN}, P.NC_DISPOSITION)
    writes = [p for p in P if not p.value.endswith(".read")]
    assert not any(roles.allows({Role.AUDITOR}, p) for p in writes)
    assert {p for p in P if p.value.endswith(".read")} <= roles.permissions_of({Role.AUDITOR})


def test_lead_is_an_operator_who_also_manages_work_orders_and_unlocks() -> None:
    operator = roles.permissions_of({Role.OPERATOR})
    lead = roles.permissions_of({Role.LEAD})
    assert operator < lead
    assert {P.WORK_ORDERS_MANAGE, P.PEOPLE_UNLOCK} <= lead - operator


def test_only_quality_releases_and_dispositions() -> None:
    assert roles.roles_with(P.PROCESSES_RELEASE) == {Role.QUALITY}
    assert roles.roles_with(P.NC_DISPOSITION) == {Role.QUALITY}
    assert roles.roles_with(P.PROCESSES_AUTHOR) == {Role.ENGINEER}
    assert roles.roles_with(P.PEOPLE_MANAGE) == {Role.ADMIN}


def test_unknown_roles_grant_nothing() -> None:
    assert roles.permissions_of({"superuser"}) == frozenset()


# -- life cycle -------------------------------------------------------------------------

ALLOWED = {
    (S.DRAFT, S.REVIEW),
    (S.REVIEW, S.DRAFT),
    (S.REVIEW, S.RELEASED),
    (S.RELEASED, S.OBSOLETE),
}


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("target", list(S))
def test_process_state_machine(source: S, target: S) -> None:
    if (source, target) in ALLOWED:
        lifecycle.check_process_transition(source, target)
    else:
        with pytest.raises(Conflict):
            lifecycle.check_process_transition(source, target)


def test_only_drafts_change_content() -> None:
    assert [s for s in S if lifecycle.content_editable(s)] == [S.DRAFT]


def test_dispositions_move_held_units() -> None:
    D, U = lifecycle.Disposition, lifecycle.UnitStatus
    assert lifecycle.unit_status_after(D.SCRAP, "in_progress") is U.SCRAPPED
    assert lifecycle.unit_status_after(D.RETURN_TO_VENDOR, "completed") is U.SCRAPPED
    assert lifecycle.unit_status_after(D.REWORK, "completed") is U.IN_PROGRESS
    assert lifecycle.unit_status_after(D.USE_AS_IS, "completed") is U.COMPLETED


# -- actions ----------------------------------------------------------------------------


def test_measure_params_and_judgement() -> None:
    params = normalize_params(ActionKind.MEASURE, {"min": 1, "max": 2, "unit": " N·m "}, "p")
    assert params == {"min": 1.0, "max": 2.0, "unit": "N·m"}
    judge = lambda v: evaluate(ActionKind.MEASURE, params, v, unit_serial="S", where="v")  # noqa: E731
    assert judge(1.5).passed and judge(1).passed and judge(2.0).passed
    assert not judge(2.01).passed and not judge(0).passed
    for bad in (True, "1.5", None, float("nan"), 10**400):
        with pytest.raises(Invalid):
            judge(bad)


@pytest.mark.parametrize(
    "params",
    [
        {"min": 3, "max": 2, "unit": "V"},
        {"unit": ""},
        {"min": float("inf"), "unit": "V"},
        {"min": 1, "unit": "V", "extra": 1},
        {"min": True, "unit": "V"},
    ],
)
def test_bad_measure_params_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(Invalid):
        normalize_params(ActionKind.MEASURE, params, "p")


def test_serial_patterns_are_re2_and_anchored() -> None:
    params = normalize_params(ActionKind.SCAN_SERIAL, {"pattern": r"SN-\d{4}"}, "p")
    judge = lambda v: evaluate(ActionKind.SCAN_SERIAL, params, v, unit_serial="SN-0001", where="v")  # noqa: E731
    assert judge("SN-1234").value == "SN-1234"
    for bad in ("SN-12345", "xSN-1234", "", 5):
        with pytest.raises(Invalid):
            judge(bad)
    for pattern in (r"(a)\1", r"(?=a)a", "x" * 201, "(unclosed"):
        with pytest.raises(Invalid):
            normalize_params(ActionKind.SCAN_SERIAL, {"pattern": pattern}, "p")


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    started = time.perf_counter()
    assert not actions.pattern_matches(r"(a+)+$", "a" * 100 + "!")
    assert not actions.pattern_matches(r"(a|aa)+b", "a" * 5000)
    assert time.perf_counter() - started < 0.5  # Python's `re` would take years on these


def test_scan_serial_can_require_the_units_own_serial() -> None:
    params = normalize_params(ActionKind.SCAN_SERIAL, {"pattern": ".+", "match_unit": True}, "p")
    assert evaluate(ActionKind.SCAN_SERIAL, params, "S1", unit_serial="S1", where="v").passed
    with pytest.raises(Invalid, match="this unit is"):
        evaluate(ActionKind.SCAN_SERIAL, params, "S2", unit_serial="S1", where="v")


def test_pass_fail_confirm_note_sign() -> None:
    assert not evaluate(ActionKind.PASS_FAIL, {}, False, unit_serial="", where="v").passed
    assert evaluate(ActionKind.CONFIRM, {}, True, unit_serial="", where="v").passed
    with pytest.raises(Invalid):
        evaluate(ActionKind.CONFIRM, {}, False, unit_serial="", where="v")
    with pytest.raises(Invalid):
        evaluate(ActionKind.NOTE, {"max_length": 3}, "long", unit_serial="", where="v")
    with pytest.raises(Invalid):
        normalize_params(ActionKind.SIGN, {"meaning": "because"}, "p")
    assert normalize_params(ActionKind.SIGN, {"meaning": "verified"}, "p") == {
        "meaning": "verified"
    }


# -- content and hashes -----------------------------------------------------------------


def _content(label: str = "Voltage", high: float = 5.5) -> content.ProcessContent:
    return content.check_content(
        content.ProcessContent(
            "Build",
            (
                step("Check", action("confirm", "Parts present")),
                step("Test", action("measure", label, min=4.5, max=high, unit="V")),
            ),
        )
    )


def test_content_hash_is_stable_and_sensitive() -> None:
    base = content.process_hash("P1", "A", 1, _content())
    assert base == content.process_hash("P1", "A", 1, _content())
    assert base != content.process_hash("P1", "A", 1, _content(high=5.6))
    assert base != content.process_hash("P1", "A", 1, _content(label="Volts"))
    assert base != content.process_hash("P1", "B", 1, _content())
    assert base != content.process_hash("P1", "A", 2, _content())


def test_content_round_trips_through_json() -> None:
    original = _content()
    assert content.content_from_json(original.as_json()) == original
    with pytest.raises(Invalid):
        content.content_from_json({"title": "x", "steps": "nope"})


def test_record_digest_binds_type_and_id() -> None:
    digest = signing.record_digest("process", 1, "abc")
    assert digest != signing.record_digest("process", 2, "abc")
    assert digest != signing.record_digest("nonconformance", 1, "abc")
    with pytest.raises(ValueError):
        signing.canonical_json(float("nan"))


# -- visibility -------------------------------------------------------------------------


class Who:
    def __init__(self, us: bool, itar: bool) -> None:
        self.us_person, self.itar_authorised = us, itar


@pytest.mark.parametrize(
    ("us", "itar", "sees"), [(True, True, True), (True, False, False), (False, False, False)]
)
def test_export_controlled_records_need_clearance(us: bool, itar: bool, sees: bool) -> None:
    assert visibility.may_see(Who(us, itar), True) is sees
    assert visibility.may_see(Who(us, itar), False)


def test_only_us_persons_may_be_itar_authorised() -> None:
    assert visibility.check_authorisation(False, True)
    assert visibility.check_authorisation(True, True) is None
