"""Thin adapter over libnftables (the `nftables` Python binding).

Everything that talks to the kernel's nftables goes through `Nft`. Scripts are run from a
file rather than a buffer: libnftables then reports errors as `FILE:LINE:COL`, which lets us
map a refused line back to the policy YAML (buffer input reports the wrong line).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from ctypes import c_char_p, c_int, c_void_p, cdll
from dataclasses import dataclass
from typing import Any

import nftables

from gateway.policy.ruleset import TABLE_FAMILY, TABLE_NAME

ERROR_LINE = re.compile(
    r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+)(?:-\d+)?: Error: (?P<msg>.*)$"
)


class NftError(Exception):
    """libnftables refused a script; `located` holds (line, column, message) per error."""

    def __init__(self, stderr: str, located: list[tuple[int, int, str]]) -> None:
        self.stderr = stderr
        self.located = located
        super().__init__(stderr.strip() or "nftables failed without a message")


@dataclass(frozen=True)
class Element:
    """A set element as the apply script writes it: 'a . b' for concatenations."""

    value: str
    timeout_s: int | None = None

    def text(self) -> str:
        return f"{self.value} timeout {self.timeout_s}s" if self.timeout_s else self.value


class _Binding(nftables.Nftables):  # type: ignore[misc]
    """The binding plus the two calls it lacks: run from a file, and dry run."""

    def __init__(self) -> None:
        super().__init__()
        lib = self._lib = cdll.LoadLibrary("libnftables.so.1")
        lib.nft_run_cmd_from_filename.restype = c_int
        lib.nft_run_cmd_from_filename.argtypes = [c_void_p, c_char_p]
        lib.nft_ctx_set_dry_run.argtypes = [c_void_p, c_int]

    @property
    def ctx(self) -> Any:
        return self._Nftables__ctx  # the binding keeps its context private

    def run_file(self, path: str) -> tuple[int, str, str]:
        rc = self._lib.nft_run_cmd_from_filename(self.ctx, path.encode())
        out = self.nft_ctx_get_output_buffer(self.ctx)
        err = self.nft_ctx_get_error_buffer(self.ctx)
        return rc, (out or b"").decode(), (err or b"").decode()

    def set_dry(self, on: bool) -> None:
        self._lib.nft_ctx_set_dry_run(self.ctx, 1 if on else 0)


class Nft:
    """libnftables in the calling thread's network namespace."""

    def __init__(self) -> None:
        self._nft = _Binding()

    def run_script(self, script: str, *, check_only: bool = False) -> None:
        """Run a whole script as one transaction (or only check it); NftError on refusal."""
        fd, path = tempfile.mkstemp(prefix="plantgate-", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(script)
            self._nft.set_dry(check_only)
            rc, _, err = self._nft.run_file(path)
        finally:
            self._nft.set_dry(False)
            os.unlink(path)
        if rc != 0:
            raise NftError(err, _locate(err, path))

    def sets_json(self, names: list[str]) -> dict[str, Any]:
        """Only the named sets of our table, as one JSON document; missing sets are skipped.

        Reading whole-table JSON to find a few small run-time sets cost 0.3 s and 28 MiB with
        a 50,000-address zone in the table; per-set listing costs a fraction of a millisecond.
        """
        items: list[Any] = []
        self._nft.set_json_output(True)
        try:
            for name in names:
                rc, out, err = self._nft.cmd(f"list set {TABLE_FAMILY} {TABLE_NAME} {name}")
                if rc == 0:
                    items += json.loads(out).get("nftables", [])
                elif "No such file or directory" not in err:
                    raise NftError(err, [])
        finally:
            self._nft.set_json_output(False)
        return {"nftables": items}

    def table_listing(self) -> str | None:
        """The live table as `nft -s list table` prints it (no counters); None if absent."""
        self._nft.set_stateless_output(True)
        try:
            rc, out, err = self._nft.cmd(f"list table {TABLE_FAMILY} {TABLE_NAME}")
        finally:
            self._nft.set_stateless_output(False)
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NftError(err, [])
        return str(out)


def _locate(stderr: str, path: str) -> list[tuple[int, int, str]]:
    found = []
    for line in stderr.splitlines():
        match = ERROR_LINE.match(line)
        if match and match["file"] == path:
            found.append((int(match["line"]), int(match["col"]), match["msg"]))
    return found


def timed_elements(table: dict[str, Any], set_names: set[str]) -> dict[str, list[Element]]:
    """Elements with a running timeout in the named sets, with the time they have left.

    Used by apply to carry resolved addresses and open gates into the new table with their
    original expiry: an apply neither closes a gate nor extends it.
    """
    found: dict[str, list[Element]] = {}
    for item in table.get("nftables", []):
        nft_set = item.get("set")
        if not nft_set or nft_set.get("name") not in set_names:
            continue
        for element in nft_set.get("elem", []):
            inner = element.get("elem") if isinstance(element, dict) else None
            if not isinstance(inner, dict) or "expires" not in inner:
                continue
            left = int(inner["expires"])
            if left > 0:
                value = _value_text(inner["val"])
                found.setdefault(nft_set["name"], []).append(Element(value, left))
    return found


def set_types(table: dict[str, Any]) -> dict[str, str]:
    """Set name -> type text ('ipv4_addr . ipv4_addr') of the live table."""
    types: dict[str, str] = {}
    for item in table.get("nftables", []):
        nft_set = item.get("set")
        if nft_set:
            kind = nft_set.get("type")
            types[nft_set["name"]] = " . ".join(kind) if isinstance(kind, list) else str(kind)
    return types


def _value_text(value: Any) -> str:
    if isinstance(value, dict) and "concat" in value:
        return " . ".join(_value_text(v) for v in value["concat"])
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if isinstance(value, dict) and "range" in value:
        low, high = value["range"]
        return f"{low}-{high}"
    return str(value)
