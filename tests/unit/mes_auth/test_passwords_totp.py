"""Manage Page passwords and TOTP."""

from __future__ import annotations

import pyotp
import pytest

from mes.auth import totp
from mes.auth.hashing import TEST_PARAMS
from mes.auth.passwords import PasswordHasher, PasswordRejected, check_password

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    "password", ["short", "password1234", "PASSWORD1234", "aaaaaaaaaaaaaa", "x" * 129]
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(PasswordRejected):
        check_password(password)


def test_password_may_not_contain_employee_number_or_name() -> None:
    with pytest.raises(PasswordRejected, match="employee number"):
        check_password("my-E1042-is-long", employee_number="E1042")
    with pytest.raises(PasswordRejected, match="name"):
        check_password("xx-ada lovelace-xx", name="Ada Lovelace")
    assert check_password("correct horse battery") == "correct horse battery"


def test_password_hash_round_trip_and_pepper() -> None:
    hasher = PasswordHasher(b"p" * 32, TEST_PARAMS)
    stored = hasher.hash("correct horse battery")
    assert hasher.verify(stored, "correct horse battery")
    assert not hasher.verify(stored, "correct horse batterY")
    assert not PasswordHasher(b"q" * 32, TEST_PARAMS).verify(stored, "correct horse battery")
    assert not hasher.verify(stored, "y" * 10_000)  # refused without hashing 10 kB


def test_enrolment_gives_uri_and_hides_secret_in_repr() -> None:
    enrolment = totp.enrol("E1042")
    assert enrolment.uri.startswith("otpauth://totp/")
    assert "issuer=PlantGate%20MES" in enrolment.uri
    assert enrolment.secret not in repr(enrolment)


def test_codes_within_one_step_are_accepted() -> None:
    secret = pyotp.random_base32()
    gen = pyotp.TOTP(secret)
    step = totp.current_step(NOW)
    for offset in (-1, 0, 1):
        assert totp.verify(secret, gen.at(NOW + offset * 30), NOW, None) == step + offset
    assert totp.verify(secret, gen.at(NOW - 60), NOW, None) is None
    assert totp.verify(secret, gen.at(NOW + 60), NOW, None) is None


def test_a_code_is_accepted_once() -> None:
    secret = pyotp.random_base32()
    code = pyotp.TOTP(secret).at(NOW)
    step = totp.verify(secret, code, NOW, None)
    assert step is not None
    assert totp.verify(secret, code, NOW + 5, step) is None  # replay refused
    older = pyotp.TOTP(secret).at(NOW - 30)
    assert totp.verify(secret, older, NOW, step) is None  # an earlier step too
    assert totp.verify(secret, pyotp.TOTP(secret).at(NOW + 30), NOW + 30, step) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦"])
def test_malformed_codes_are_refused(code: str) -> None:
    assert totp.verify(pyotp.random_base32(), code, NOW, None) is None


def test_step_memory_is_bounded() -> None:
    memory = totp.StepMemory(max_accounts=3)
    for i in range(10):
        memory.remember(f"p{i}", i)
    assert memory.last("p9") == 9
    assert memory.last("p0") is None
    memory.remember("p9", 3)
    assert memory.last("p9") == 9
