"""Groups of duplicates: the connected components of the pairs that match. Pure functions."""

from collections.abc import Hashable, Iterable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def connected_groups(pairs: Iterable[tuple[T, T]]) -> list[set[T]]:
    """The connected components of the graph whose edges are `pairs` (each a set of two or more
    members; a pair of one member with itself is a group of one). Union-find with path halving."""
    parent: dict[T, T] = {}

    def root(member: T) -> T:
        parent.setdefault(member, member)
        while parent[member] != member:
            parent[member] = parent[parent[member]]
            member = parent[member]
        return member

    for a, b in pairs:
        root_a, root_b = root(a), root(b)
        if root_a != root_b:
            parent[root_b] = root_a
    groups: dict[T, set[T]] = {}
    for member in parent:
        groups.setdefault(root(member), set()).add(member)
    return list(groups.values())
