"""Shared helpers for unit tests: policies written inline, problems as rendered lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.policy.errors import PolicyError
from gateway.policy.load import LoadedPolicy, load_text

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"

# A small valid policy; tests append to it or replace lines in it.
BASE = """\
version: 1
site:
  name: t
interfaces:
  hub-lan: lan0
  plant-lan: wan0
zones:
  hubs:
    interfaces: [hub-lan]
    networks: [10.10.0.0/24]
  plant:
    interfaces: [plant-lan]
    networks: [10.20.0.0/16]
  internet:
    interfaces: [plant-lan]
services:
  https: {tcp: [443]}
  ntp: {udp: [123]}
rules:
  - name: hubs-in
    from: hubs
    to: self
    allow: [https, ntp]
"""


def policy_text(text: str) -> str:
    return textwrap.dedent(text)


def load(text: str, file: str = "p.yaml") -> LoadedPolicy:
    return load_text(policy_text(text), file)


def problems(text: str, file: str = "p.yaml") -> list[str]:
    """The rendered problems a policy gives (empty when it loads)."""
    try:
        load(text, file)
    except PolicyError as exc:
        return [p.render() for p in exc.problems]
    return []


@pytest.fixture
def base() -> str:
    return BASE
