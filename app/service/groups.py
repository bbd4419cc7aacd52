"""Groups of duplicates: the connected components of the matching pairs. Pure."""

from collections.abc import Hashable, Iterable
from typing import TypeVar

Item = TypeVar("Item", bound=Hashable)


def groups_of(pairs: Iterable[tuple[Item, Item]]) -> list[list[Item]]:
    """The connected components of the graph the pairs are the edges of (union-find), each in
    the order its members first appear in `pairs`, groups in the order their first member does.

    A pair of an item with itself makes a group of one; an item in no pair is in no group.
    """
    parent: dict[Item, Item] = {}

    def root(item: Item) -> Item:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving keeps the trees flat
            item = parent[item]
        return item

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra
    members: dict[Item, list[Item]] = {}
    for item in parent:  # dicts keep insertion order: first appearance
        members.setdefault(root(item), []).append(item)
    return list(members.values())
