"""Property: any mutation of site.yaml either loads or gives located errors, never a crash.

Mutations are what people do to YAML by hand: drop a key, change a value's type, misspell a
name, push a number out of range, duplicate a list item, or cut the text short.
"""

from __future__ import annotations

import copy
import io
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from gateway.policy.errors import PolicyError
from gateway.policy.load import load_text
from tests.unit.conftest import POLICIES

SITE_TEXT = (POLICIES / "site.yaml").read_text()
SITE = YAML(typ="safe").load(SITE_TEXT)
LOCATED = re.compile(r"^site\.yaml:\d+:\d+: (error|warning): \S")

Path = tuple[Any, ...]


def _paths(node: Any, prefix: Path = ()) -> list[Path]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(SITE)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 70000),
    st.floats(allow_nan=False, width=16),
    st.text(max_size=12),
    st.lists(st.integers(0, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "from", "tcp"]), st.integers(), max_size=2),
    st.sampled_from(
        [
            "hubs",
            "hbus",
            "self",
            "any",
            "0.0.0.0/0",
            "10.0.0.1/8",
            "443-80",
            "99999",
            "lan0",
            "ssh",
            "bogus-service",
        ]
    ),
)


def _parent(data: Any, path: Path) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def _mutate(data: Any, path: Path, action: str, value: Any) -> None:
    parent = _parent(data, path)
    key = path[-1]
    if action == "drop":
        del parent[key]
    elif action == "replace":
        parent[key] = value
    elif action == "misspell" and isinstance(parent[key], str) and parent[key]:
        text = parent[key]
        parent[key] = text[1:] + text[0] if len(text) > 1 else text + "x"
    elif action == "rename-key" and isinstance(parent, dict):
        parent[f"{key}x"] = parent.pop(key)
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))


def _dump(data: Any) -> str:
    stream = io.StringIO()
    YAML(typ="safe").dump(data, stream)
    return stream.getvalue()


def _assert_loads_or_located(text: str) -> None:
    try:
        load_text(text, "site.yaml")
    except PolicyError as exc:
        assert exc.problems, "a PolicyError must carry problems"
        for problem in exc.problems:
            assert LOCATED.match(problem.render()), problem.render()


MUTATION = st.tuples(
    st.sampled_from(PATHS),
    st.sampled_from(["drop", "replace", "misspell", "rename-key", "duplicate"]),
    ODD_VALUES,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_site_policy_loads_or_gives_located_errors(mutations: list[Any]) -> None:
    data = copy.deepcopy(SITE)
    for path, action, value in mutations:
        try:
            _mutate(data, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or reshaped this path
    _assert_loads_or_located(_dump(data))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SITE_TEXT)), st.text(max_size=8))
def test_cut_or_spliced_text_gives_located_errors(cut: int, splice: str) -> None:
    _assert_loads_or_located(SITE_TEXT[:cut] + splice + SITE_TEXT[cut + len(splice) :])
