"""Every group of duplicates among the stored images: the connected components of the matching
pairs, a page at a time. At the default threshold (or under it) without orientations the pairs are
read from memory (app/service/pairs.py); other parameters are computed on demand, for small stores."""

from dataclasses import dataclass

from app.errors import InvalidInput
from app.models import ImageRecord
from app.service.groups import groups_of
from app.service.matching import Matching, SearchOptions
from app.service.pairs import DuplicatePairs, Pair
from app.store import ImageStore

# Other parameters search the index once per stored image: bounded to stay within seconds.
ON_DEMAND_MAX_IMAGES = 10_000
# How long a request waits for the pairs to reach the index (a write this client just made).
PAIRS_WAIT_S = 5.0
RECORDS_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class GroupOptions:
    """Which pairs count (as in a search) and which page of groups of at least `min_size`."""

    max_distance: int | None = None  # None: the service default
    confirm: bool = True
    all_orientations: bool = False
    min_size: int = 2
    limit: int = 100
    after: str | None = None  # the first id of the last group of the previous page


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Images connected by matching pairs: members in id order, and every pair between them,
    nearest first (then by id)."""

    members: list[ImageRecord]
    pairs: list[Pair]


@dataclass(frozen=True, slots=True)
class GroupsPage:
    """Groups in the order of their first id; `next` is the cursor for the following page.
    `complete` is False while the pairs are being built at start (`progress` 0-1)."""

    groups: list[DuplicateGroup]
    total: int
    next: str | None
    complete: bool
    progress: float


class Duplicates:
    def __init__(self, store: ImageStore, matching: Matching, pairs: DuplicatePairs | None) -> None:
        self.store = store
        self.matching = matching
        self.pairs = pairs

    def groups(self, options: GroupOptions) -> GroupsPage:
        pairs, complete, progress = self._pairs(options)
        first_id: dict[int, str] = {}
        for pair in pairs:
            first_id[pair.a], first_id[pair.b] = pair.a_id, pair.b_id
        ranked = sorted(
            (min(first_id[key] for key in members), members)
            for members in groups_of((pair.a, pair.b) for pair in pairs)
            if len(members) >= options.min_size
        )
        total = len(ranked)
        if options.after is not None:
            ranked = [group for group in ranked if group[0] > options.after]
        page = ranked[: options.limit]
        keys = sorted(key for _, members in page for key in members)
        records: dict[int, ImageRecord] = {}
        for start in range(0, len(keys), RECORDS_CHUNK):
            # read back: an image deleted since the pairs were read is left out
            records |= self.store.get_by_keys(keys[start : start + RECORDS_CHUNK])
        group_of = {key: n for n, (_, members) in enumerate(page) for key in members}
        between: list[list[Pair]] = [[] for _ in page]
        for pair in pairs:
            if pair.a in group_of and pair.a in records and pair.b in records:
                between[group_of[pair.a]].append(pair)
        groups = [
            DuplicateGroup(
                sorted((records[key] for key in members if key in records), key=lambda r: r.id),
                sorted(group_pairs, key=lambda pair: (pair.distance, *sorted((pair.a_id, pair.b_id)))),
            )
            for (_, members), group_pairs in zip(page, between, strict=True)
        ]
        next_cursor = page[-1][0] if len(ranked) > options.limit else None
        return GroupsPage(groups, total, next_cursor, complete, progress)

    def _pairs(self, options: GroupOptions) -> tuple[list[Pair], bool, float]:
        """The matching pairs under these options, whether they cover the store, and how far."""
        threshold = self.matching.max_distance if options.max_distance is None else options.max_distance
        if self.pairs is not None and not options.all_orientations and threshold <= self.pairs.max_distance:
            status = self.pairs.status()
            kept = [
                pair
                for pair in self.pairs.current(PAIRS_WAIT_S)
                if (
                    pair.reach <= threshold and self.matching.accepts(pair.score, exact=pair.exact)
                    if options.confirm
                    else pair.distance <= threshold
                )
            ]
            return kept, status.complete, status.progress
        return self._pairs_on_demand(threshold, options), True, 1.0

    def _pairs_on_demand(self, threshold: int, options: GroupOptions) -> list[Pair]:
        """Search the index for every stored image: the matching's own rule, any parameters."""
        if self.store.count() > ON_DEMAND_MAX_IMAGES:
            held = "" if self.pairs is None else f" (kept for max_distance up to {self.pairs.max_distance})"
            raise InvalidInput(
                f"groups for all_orientations or this max_distance are computed on demand only for "
                f"stores of up to {ON_DEMAND_MAX_IMAGES:,} images{held}"
            )
        search = SearchOptions(
            max_distance=threshold,
            limit=None,
            confirm=options.confirm,
            all_orientations=options.all_orientations,
        )
        found: dict[tuple[int, int], Pair] = {}
        after = None
        while batch := self.store.page(limit=RECORDS_CHUNK, after=after):
            for record in batch:
                for match in self.matching.matches_of(record, options=search):
                    a, b = sorted((record, match.record), key=lambda r: r.key)
                    pair = Pair(
                        a.key,
                        b.key,
                        a.id,
                        b.id,
                        match.distance,
                        match.dct_distance,
                        match.exact,
                        match.score,
                        reach=match.distance,  # only the pairs kept in memory are filtered by it
                    )
                    # Turned variants may be nearer one way than the other: the nearest counts.
                    known = found.get((pair.a, pair.b))
                    if known is None or pair.distance < known.distance:
                        found[pair.a, pair.b] = pair
            after = batch[-1].id
        return list(found.values())
