"""Operator PINs: the policy a new PIN must meet, and peppered argon2id hashing.

A PIN is never an identity on its own (21 CFR 11.300): it is checked together with a badge or
an employee number, so the policy never has to say "PIN taken". Rules for a new PIN:

1. exactly six ASCII digits (no spaces, no other numerals);
2. not one digit six times (000000, 777777);
3. not a run up or down, also across 9→0 (123456, 654321, 890123, 098765);
4. not a block repeated (121212, 123123);
5. at least three different digits (112211, 100001);
6. not in a short list of PINs that top published frequency studies and keypad patterns
   (112233, 147258, 159753, 123321, ...);
7. not the last six digits of the person's own employee number.

The hashing itself is `hashing.PepperedHasher` with the PIN key derived from the pepper.
"""

from __future__ import annotations

import itertools

from mes.auth.hashing import DEFAULT_PARAMS, Argon2Params, PepperedHasher

PIN_LENGTH = 6
DIGITS = frozenset("0123456789")
COMMON_PINS = frozenset(
    {
        "112233", "123321", "147258", "258369", "369258", "159753", "357159", "951753",
        "147852", "123654", "789456", "456789", "852456", "159357", "753951", "102030",
        "111222", "112211", "121121", "131313", "135790", "246810", "520520", "101010",
        "007007", "200000", "100000", "696969", "741852", "963852", "142536", "321654",
    }
)  # fmt: skip


class PinRejected(ValueError):
    """A new PIN does not meet the policy; `reasons` says why, one phrase each."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("PIN refused: " + "; ".join(reasons))
        self.reasons = reasons


def _is_run(pin: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {9})


def _is_repeated_block(pin: str) -> bool:
    return any(pin == pin[:size] * (PIN_LENGTH // size) for size in (1, 2, 3))


def pin_problems(pin: str, employee_number: str | None = None) -> list[str]:
    """Why `pin` may not be used (empty list: it may)."""
    if len(pin) != PIN_LENGTH or not set(pin) <= DIGITS:
        return [f"a PIN is exactly {PIN_LENGTH} digits 0-9"]
    problems: list[str] = []
    if len(set(pin)) == 1:
        problems.append("one digit repeated")
    elif _is_run(pin):
        problems.append("a run of consecutive digits")
    elif _is_repeated_block(pin):
        problems.append("a repeated pattern")
    elif len(set(pin)) < 3:
        problems.append("fewer than three different digits")
    if pin in COMMON_PINS:
        problems.append("one of the most common PINs")
    if employee_number and employee_number.strip()[-PIN_LENGTH:] == pin:
        problems.append("the end of your employee number")
    return problems


def check_pin(pin: str, employee_number: str | None = None) -> str:
    """Return `pin` if it meets the policy; raise `PinRejected` otherwise."""
    problems = pin_problems(pin, employee_number)
    if problems:
        raise PinRejected(problems)
    return pin


def looks_like_pin(value: str) -> bool:
    """Shape only (for login input): six ASCII digits. Login never applies the full policy."""
    return len(value) == PIN_LENGTH and set(value) <= DIGITS


def pin_hasher(pin_key: bytes, params: Argon2Params = DEFAULT_PARAMS) -> PepperedHasher:
    return PepperedHasher(pin_key, params)
