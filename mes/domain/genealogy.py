"""Genealogy walks: what a unit is made of (down) and where a unit or lot went (up).

The graph is given as a function from a node to its neighbours in the walk's direction, so
the walk is pure and the services decide what a neighbour is (only active links, only
records the person may see). Why cycle protection when consumption should never make one:
records can be corrected, imported or tampered with; a walk must terminate whatever the
data says. A node seen again on its own branch is reported as a cycle and not expanded; the
walk also stops at `max_depth` and after `max_nodes`, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

NodeKind = Literal["unit", "lot"]


@dataclass(frozen=True, order=True)
class Node:
    kind: NodeKind
    id: int


@dataclass(frozen=True)
class Edge:
    """One consumption: `node` is the neighbour reached, through genealogy link `link_id`
    made at process step `step_id`."""

    node: Node
    link_id: int
    step_id: int | None


@dataclass
class TreeNode:
    node: Node
    via: Edge | None = None
    children: list[TreeNode] = field(default_factory=list)
    cycle: bool = False  # this node is its own ancestor on this branch: not expanded
    truncated: bool = False  # depth or size limit reached: not expanded

    def nodes(self) -> Iterable[Node]:
        yield self.node
        for child in self.children:
            yield from child.nodes()


def walk(
    start: Node,
    neighbours: Callable[[Node], Iterable[Edge]],
    *,
    max_depth: int = 50,
    max_nodes: int = 5000,
) -> TreeNode:
    """The tree reachable from `start`, depth-first, with cycles cut and limits kept."""
    root = TreeNode(start)
    budget = [max_nodes - 1]
    stack: list[tuple[TreeNode, int, frozenset[Node]]] = [(root, 0, frozenset({start}))]
    while stack:
        current, depth, path = stack.pop()
        edges = sorted(neighbours(current.node), key=lambda e: (e.node, e.link_id))
        if edges and depth >= max_depth:
            current.truncated = True
            continue
        for edge in edges:
            if budget[0] <= 0:
                current.truncated = True
                break
            budget[0] -= 1
            child = TreeNode(edge.node, via=edge)
            current.children.append(child)
            if edge.node in path:
                child.cycle = True
                continue
            stack.append((child, depth + 1, path | {edge.node}))
    return root


def reaches(start: Node, target: Node, neighbours: Callable[[Node], Iterable[Edge]]) -> bool:
    """Whether `target` is reachable from `start` (a new link would close a cycle)."""
    seen: set[Node] = {start}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        if node == target:
            return True
        for edge in neighbours(node):
            if edge.node not in seen:
                seen.add(edge.node)
                frontier.append(edge.node)
    return False
