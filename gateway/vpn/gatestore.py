"""Gate requests in the state directory: one JSON file each, numbered, changed under a lock.

`<state>/gate/requests/NNNNNN.json` holds a request as `GateRequest` serialises it; ids only
grow. Every change happens under `<state>/gate/.lock`, so two commands (or the CLI and the
daemon's API) never approve, open or close the same request at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from gateway.state import exclusive, write_atomic
from gateway.vpn.gate import GateRequest
from gateway.vpn.targets import GateError


class GateStore:
    """Requests under `<state>/gate/`."""

    def __init__(self, state: Path) -> None:
        self.root = state / "gate"
        self.dir = self.root / "requests"

    @contextmanager
    def locked(self) -> Iterator[None]:
        with exclusive(self.root / ".lock"):
            yield

    def path(self, number: int) -> Path:
        return self.dir / f"{number:06d}.json"

    def all(self) -> list[GateRequest]:
        if not self.dir.exists():
            return []
        return [
            self._read(entry)
            for entry in sorted(self.dir.iterdir())
            if entry.suffix == ".json" and entry.stem.isdigit()
        ]

    def get(self, number: int) -> GateRequest:
        path = self.path(number)
        if number < 1 or not path.exists():
            known = [r.id for r in self.all()]
            hint = f" (the last is {known[-1]})" if known else " (there are none yet)"
            raise GateError(f"no gate request {number}{hint}", "missing")
        return self._read(path)

    def next_id(self) -> int:
        numbers = [int(p.stem) for p in self.dir.glob("*.json") if p.stem.isdigit()]
        return max(numbers, default=0) + 1

    def save(self, request: GateRequest) -> None:
        write_atomic(self.path(request.id), request.model_dump_json(indent=2) + "\n")

    @staticmethod
    def _read(path: Path) -> GateRequest:
        try:
            return GateRequest.model_validate_json(path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            raise GateError(f"{path} is damaged: {exc}", "refused") from None
