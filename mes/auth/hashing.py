"""Peppered argon2id: argon2id over HMAC-SHA256(key, credential), shared by PINs and passwords.

Why pepper then argon2id: a PIN has 10^6 values, so argon2id alone only slows down someone
holding the database; the HMAC key lives in a 0600 file outside it (see `secrets`), and
without it no guess can be checked at all. argon2id then protects passwords and PINs if
both the database and the key leak.

Parameters (`Argon2Params`): the default m=64 MiB, t=2, p=1 is above OWASP's minimum
(m=19 MiB, t=2, p=1) and measured at about 0.12 s per verification on the 2-vCPU machine the
benchmarks run on (`python -m bench --only mes` prints the figure). Verification of an
unknown person hashes against a dummy so that it costs the same as for a real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PARALLEL = 2  # concurrent argon2 computations; bounds memory at MAX_PARALLEL × m


@dataclass(frozen=True)
class Argon2Params:
    memory_kib: int = 64 * 1024
    time_cost: int = 2
    parallelism: int = 1

    def describe(self) -> str:
        return f"argon2id m={self.memory_kib // 1024} MiB, t={self.time_cost}, p={self.parallelism}"


DEFAULT_PARAMS = Argon2Params()
OWASP_MINIMUM = Argon2Params(memory_kib=19 * 1024, time_cost=2, parallelism=1)
TEST_PARAMS = Argon2Params(memory_kib=1024, time_cost=1, parallelism=1)  # unit tests only


class PepperedHasher:
    """Hash and verify one kind of credential with its own HMAC key."""

    def __init__(self, key: bytes, params: Argon2Params = DEFAULT_PARAMS) -> None:
        self._key = key
        self.params = params
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._slots = threading.BoundedSemaphore(MAX_PARALLEL)
        self._dummy = self._hasher.hash(self._prehash("plantgate dummy credential"))

    def __repr__(self) -> str:
        return f"PepperedHasher({self.params.describe()})"

    def _prehash(self, credential: str) -> str:
        return hmac.new(self._key, credential.encode(), hashlib.sha256).hexdigest()

    def hash(self, credential: str) -> str:
        with self._slots:
            return self._hasher.hash(self._prehash(credential))

    def verify(self, stored: str | None, credential: str) -> bool:
        """True if `credential` matches `stored`; an absent or damaged hash costs the same."""
        prehashed = self._prehash(credential)
        with self._slots:
            if not stored:
                self._check(self._dummy, prehashed)
                return False
            try:
                return self._hasher.verify(stored, prehashed)
            except InvalidHashError:
                self._check(self._dummy, prehashed)
                return False
            except VerificationError:  # includes VerifyMismatchError
                return False

    def _check(self, target: str, prehashed: str) -> None:
        with contextlib.suppress(VerificationError, InvalidHashError):
            self._hasher.verify(target, prehashed)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True
