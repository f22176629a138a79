"""Small things the Manage Page routes share: ids in paths, pages, where to go after login."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from mes.api.common import MAX_ID

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Page = Annotated[int, Query(ge=0, le=100_000)]
PAGE_SIZE = 50


def safe_next(target: str | None, default: str = "/manage") -> str:
    """A post-login destination on the Manage Page only (no open redirect)."""
    if not target or not target.startswith("/manage") or target.startswith("//"):
        return default
    if any(c in target for c in "\\\r\n") or len(target) > 500:
        return default
    return target
