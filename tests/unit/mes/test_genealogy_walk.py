"""The pure genealogy walk: both directions are the same walk, cycles and limits cut it."""

from __future__ import annotations

from mes.domain.genealogy import Edge, Node, reaches, walk


def graph(edges: dict[int, list[int]]):  # type: ignore[no-untyped-def]
    def neighbours(node: Node) -> list[Edge]:
        return [
            Edge(Node("unit", child), n, None) for n, child in enumerate(edges.get(node.id, []))
        ]

    return neighbours


def ids(tree) -> list[int]:  # type: ignore[no-untyped-def]
    return [n.id for n in tree.nodes()]


def test_walks_a_tree() -> None:
    tree = walk(Node("unit", 1), graph({1: [2, 3], 2: [4]}))
    assert sorted(ids(tree)) == [1, 2, 3, 4]
    assert [c.node.id for c in tree.children] == [2, 3]


def test_cycles_are_cut_and_marked() -> None:
    tree = walk(Node("unit", 1), graph({1: [2], 2: [3], 3: [1]}))
    leaf = tree.children[0].children[0].children[0]
    assert leaf.node.id == 1 and leaf.cycle and not leaf.children


def test_depth_and_size_limits() -> None:
    chain = {i: [i + 1] for i in range(1, 100)}
    tree = walk(Node("unit", 1), graph(chain), max_depth=5)
    assert len(ids(tree)) == 6
    wide = {1: list(range(2, 100))}
    tree = walk(Node("unit", 1), graph(wide), max_nodes=10)
    assert len(ids(tree)) == 10 and tree.truncated


def test_reaches() -> None:
    neighbours = graph({1: [2], 2: [3]})
    assert reaches(Node("unit", 1), Node("unit", 3), neighbours)
    assert not reaches(Node("unit", 3), Node("unit", 1), neighbours)
