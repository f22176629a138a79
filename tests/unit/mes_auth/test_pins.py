"""PIN policy and peppered hashing."""

from __future__ import annotations

import pytest

from mes.auth.hashing import TEST_PARAMS
from mes.auth.pins import PinRejected, check_pin, looks_like_pin, pin_hasher, pin_problems


@pytest.mark.parametrize(
    "pin",
    ["000000", "111111", "123456", "654321", "890123", "098765", "121212", "123123",
     "112211", "147258", "12345", "1234567", "12a456", "١٢٣٤٥٧", " 83920", ""],
)  # fmt: skip
def test_weak_or_malformed_pins_are_refused(pin: str) -> None:
    assert pin_problems(pin)
    with pytest.raises(PinRejected):
        check_pin(pin)


@pytest.mark.parametrize("pin", ["839201", "502718", "947360", "281947"])
def test_ordinary_pins_pass(pin: str) -> None:
    assert check_pin(pin) == pin


def test_pin_may_not_be_the_end_of_the_employee_number() -> None:
    assert "the end of your employee number" in pin_problems("839201", "E00839201")
    assert not pin_problems("839201", "E00123987")


def test_login_shape_check_is_digits_only() -> None:
    assert looks_like_pin("123456")  # weak, but login only checks the shape
    assert not looks_like_pin("12345x")
    assert not looks_like_pin("١٢٣٤٥٦")


def test_hash_verifies_and_differs_by_pepper() -> None:
    one, two = pin_hasher(b"a" * 32, TEST_PARAMS), pin_hasher(b"b" * 32, TEST_PARAMS)
    stored = one.hash("839201")
    assert stored.startswith("$argon2id$")
    assert "839201" not in stored
    assert one.verify(stored, "839201")
    assert not one.verify(stored, "839202")
    # Same PIN, other pepper: the hash does not verify, and a fresh hash differs.
    assert not two.verify(stored, "839201")
    assert two.hash("839201") != stored


def test_database_alone_cannot_find_the_pin() -> None:
    """With the stored hash but without the pepper, trying all 10^6 PINs through plain
    argon2id finds nothing: the hash is over HMAC(pepper, pin), not over the PIN."""
    from argon2 import PasswordHasher
    from argon2.exceptions import VerifyMismatchError

    stored = pin_hasher(b"k" * 32, TEST_PARAMS).hash("839201")
    plain = PasswordHasher()
    for guess in ("839201", "000000", "123456"):
        with pytest.raises(VerifyMismatchError):
            plain.verify(stored, guess)


def test_unknown_person_and_damaged_hash_do_not_match() -> None:
    hasher = pin_hasher(b"a" * 32, TEST_PARAMS)
    assert not hasher.verify(None, "839201")
    assert not hasher.verify("", "839201")
    assert not hasher.verify("not-a-hash", "839201")


def test_unknown_person_costs_an_argon2_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = pin_hasher(b"a" * 32, TEST_PARAMS)
    calls: list[str] = []
    inner = hasher._hasher

    class Counting:
        def verify(self, hash: str, password: str) -> bool:
            calls.append(hash)
            return inner.verify(hash, password)

    monkeypatch.setattr(hasher, "_hasher", Counting())
    hasher.verify(None, "839201")
    hasher.verify("garbage", "839201")
    assert len(calls) == 3  # the dummy once for None; garbage then dummy


def test_repr_hides_keys() -> None:
    assert "aaaa" not in repr(pin_hasher(b"a" * 32, TEST_PARAMS))
