"""The traffic watcher's status report: `<state>/watch/status.json`.

plantgated's watcher writes it when its sources are open (`running`), every
`gateway.watch.service.STATUS_EVERY_S` while it runs, and when it stops (`stopped`); before
the first policy is applied it says `waiting`. `plantgate lab status` shows it, and the lab's
kernel tests wait for `running` before they send traffic: from then on every NFLOG group,
conntrack and the link watch are being read. The report has no secrets; it is JSON:

    {"state": "running", "pid": 4242, "since": 1796184525.1, "updated": 1796184530.2,
     "mode": "learning", "detectors": ["denied", ...], "nflog_groups": {"nflog-drop": 1, ...},
     "events": {"nflog-drop": 12, ...}, "lost": {"nflog-drop": 0, ...}, "queue": 0,
     "triggers": 3, "failures": {}}

`updated` tells a live report from one a dead process left behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.state import write_atomic

STATES = ("waiting", "running", "stopped")


def status_path(state: Path) -> Path:
    return state / "watch" / "status.json"


def write_status(state: Path, report: dict[str, Any]) -> None:
    write_atomic(status_path(state), json.dumps(report, sort_keys=True) + "\n", mode=0o644)


def read_status(state: Path) -> dict[str, Any] | None:
    """The last report, or None when there is none or it does not parse."""
    try:
        data = json.loads(status_path(state).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("state") in STATES else None
