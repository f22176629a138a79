"""Badge tokens and the lockout rule."""

from __future__ import annotations

import datetime

from mes.auth import badges, lockout

KEY = b"b" * 32


def test_issue_gives_token_once_and_hmac_matches_scans() -> None:
    issued = badges.issue(KEY)
    assert issued.token.startswith("PGB-")
    assert issued.token not in repr(issued)
    scanned = issued.token.lower().replace("-", " ") + "\r\n"
    assert badges.token_hmac(KEY, scanned) == issued.token_hmac
    assert badges.token_hmac(b"c" * 32, issued.token) != issued.token_hmac


def test_tokens_are_unique_and_unguessable() -> None:
    tokens = {badges.new_token() for _ in range(500)}
    assert len(tokens) == 500
    assert all(len(badges.normalise(t) or "") == badges.TOKEN_CHARS for t in tokens)


def test_garbage_is_no_token() -> None:
    for text in ("", "PGB-", "hello", "PGB-UUUU-UUUU-UUUU-UUUU-UUUU", "x" * 500):
        assert badges.token_hmac(KEY, text) is None


def test_crockford_lookalikes_read_the_same() -> None:
    token = "PGB-0110-ABCD-EFGH-JKMN-PQRS"
    assert badges.normalise(token) == badges.normalise("pgb-OIL0-abcd-efgh-jkmn-pqrs")


def test_five_consecutive_failures_lock() -> None:
    failures = 0
    outcomes = []
    for _ in range(5):
        outcome = lockout.after_failure(failures)
        failures = outcome.failures
        outcomes.append(outcome.locked_now)
    assert outcomes == [False, False, False, False, True]
    assert lockout.is_locked(None, failures)
    assert not lockout.is_locked(None, 4)
    assert lockout.is_locked(datetime.datetime.now(datetime.UTC), 0)


def test_only_a_lead_or_admin_unlocks_and_not_themselves() -> None:
    op = ["operator"]
    assert lockout.unlock_refusal(1, op, 2, op) == "only a lead or an admin can unlock a person"
    assert lockout.unlock_refusal(1, ["lead"], 1, ["lead"]) == (
        "nobody can unlock their own account"
    )
    assert lockout.unlock_refusal(1, ["lead"], 2, op) is None
    assert lockout.unlock_refusal(1, ["lead"], 2, ["quality"]) == (
        "a lead can unlock operators and leads only"
    )
    assert lockout.unlock_refusal(1, ["admin"], 2, ["quality"]) is None
