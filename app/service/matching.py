"""Matching: which stored images look like a query. Candidates come from the index by the distance
of the whole picture's dHash or DCT hash (or of its other cuts', on either side), or of its
centre's dHash, in any orientation when asked; each is then judged on all its hashes at once, by one
score (`score`), the best of the whole pictures' (and cuts') and of the centres'. Reads only."""

from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass

from app.errors import ImageNotFound
from app.image_index import Hits, ImageIndex
from app.imaging import Parts, Signature, hamming, variants_of_image, variants_of_stored
from app.models import ImageRecord, Match, Orientation
from app.service.uploads import Upload, UploadHasher
from app.store import ImageStore
from app.validation import check_image_id

RESOLVE_CHUNK = 256
ORIGINAL = Orientation.ORIGINAL
# The weights of the dHash, vertical dHash and DCT distances in the score: equal weights did as well
# as any other on the tuning half of the evaluation (docs/accuracy.md), and are the simplest.
WEIGHTS = (1.0, 1.0, 1.0)
# A distance that cannot be measured (a hash-only record, a search by dHash alone) counts as this
# many bits, well under what distinct pictures' average (32) yet pessimistic: with both unknown,
# the default score of 10 needs a dHash within 4 bits, so a made-up hash cannot claim a picture
# 10 bits away as its copy.
UNKNOWN_DISTANCE = 13


def score(distance: int, vertical_distance: int | None, dct_distance: int | None) -> float:
    """How far a candidate is, in bits (0-64): the weighted mean of its dHash, vertical dHash and
    DCT distances, each unknown one counted as UNKNOWN_DISTANCE."""
    distances = (
        distance,
        UNKNOWN_DISTANCE if vertical_distance is None else vertical_distance,
        UNKNOWN_DISTANCE if dct_distance is None else dct_distance,
    )
    return sum(w * d for w, d in zip(WEIGHTS, distances, strict=True)) / sum(WEIGHTS)


def signature_score(a: Signature, b: Signature) -> float:
    """The score of two signatures (of whole pictures, or of parts)."""
    return score(hamming(a.dhash, b.dhash), _distance(a.vertical, b.vertical), _distance(a.dct, b.dct))


def parts_score(query: Parts, record: ImageRecord) -> float:
    """A candidate's score: the best of its whole picture's and cuts' against the query's, and of
    its centre against the query's centre and windows (a copy with text along its edges, or
    cropped)."""
    stored = whole_parts(parts_of(record))
    best = min(signature_score(part, whole) for part in whole_parts(query) for whole in stored)
    centre = centre_of(record)
    if centre is not None:
        for part in _centre_parts(query):
            best = min(best, signature_score(part, centre))
    return best


def whole_of(record: ImageRecord) -> Signature:
    return Signature(record.dhash, record.dhash_vertical, record.dct_hash)


def centre_of(record: ImageRecord) -> Signature | None:
    if record.centre_dhash is None:
        return None
    return Signature(record.centre_dhash, record.centre_vertical, record.centre_dct)


def parts_of(record: ImageRecord) -> Parts:
    """A stored record as a query: its whole picture, centre and cuts (no windows are stored)."""
    cuts = tuple(Signature(*cut) for cut in record.cuts)
    return Parts(whole_of(record), centre_of(record), alternatives=cuts)


@dataclass(frozen=True, slots=True)
class Query:
    """What a search looks for: the query's hashes per orientation, and its bytes' SHA-256."""

    variants: dict[Orientation, Parts]
    sha256: str | None


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How to search: threshold (None: the service default), how many, and which checks."""

    max_distance: int | None = None
    limit: int | None = 100  # None: every match
    confirm: bool = True
    all_orientations: bool = False


# Every stored image whose dHash equals the query's, unconfirmed: where identical files are.
EVERY_IDENTICAL_HASH = SearchOptions(max_distance=0, limit=None, confirm=False)


class Matching:
    """Searches the index, then resolves and confirms its hits against the store, so a record
    deleted since the index was searched is never returned."""

    def __init__(
        self,
        store: ImageStore,
        index: ImageIndex,
        hasher: UploadHasher,
        *,
        max_distance: int,
        max_score: float,
    ) -> None:
        self.store = store
        self.index = index
        self.hasher = hasher
        self.max_distance = max_distance
        self.max_score = max_score

    def search(self, data: bytes, *, options: SearchOptions) -> tuple[Upload, list[Match]]:
        """The query file's hashes and the stored images that match it."""
        upload = self.hasher.hash(data)
        return upload, self.find(query_of_upload(upload, all_orientations=options.all_orientations), options)

    def search_hash(self, signature: Signature, *, options: SearchOptions) -> list[Match]:
        """The same search for hashes computed elsewhere (only the dHash is required)."""
        return self.find(Query(variants_of_stored(signature, None), sha256=None), options)

    def duplicates_of(self, image_id: str, *, options: SearchOptions) -> tuple[ImageRecord, list[Match]]:
        """A stored image and the other stored images that match it."""
        record = self.store.get(check_image_id(image_id))
        if record is None:
            raise ImageNotFound(image_id)
        return record, self.matches_of(record, options=options)

    def matches_of(self, record: ImageRecord, *, options: SearchOptions) -> list[Match]:
        """The other stored images that match a stored record."""
        # The turned variants only when they are searched: making them costs more than the search.
        parts = parts_of(record)
        variants = (
            variants_of_stored(parts.whole, parts.centre, parts.alternatives)
            if options.all_orientations
            else {ORIGINAL: parts}
        )
        return self.find(Query(variants, sha256=record.sha256), options, exclude_key=record.key)

    def find(self, query: Query, options: SearchOptions, *, exclude_key: int | None = None) -> list[Match]:
        """Stored images whose whole picture's dHash is within `max_distance` of the query's, or
        when confirmation is asked whose whole picture's or cuts' dHash or DCT hash is within it
        of the query's or its cuts', or whose centre's dHash is within it of the query's centre or
        windows; and whose score is at most `max_score`; in any of the query's variants when
        asked; nearest first (by the whole pictures' dHash distance), ties by id."""
        variants = _variants(query, options)
        # Unconfirmed, a search is the plain dHash's: a part alone is no evidence without a score.
        wholes = [whole_parts(p) if options.confirm else (p.whole,) for p in variants.values()]
        dct_parts = [_dct_hashes(p) if options.confirm else () for p in variants.values()]
        centre_parts = [_centre_parts(p) if options.confirm else () for p in variants.values()]
        found = self.index.search(
            [part.dhash for parts in wholes for part in parts],
            [dct for dcts in dct_parts for dct in dcts],
            [part.dhash for parts in centre_parts for part in parts],
            max_distance=self._threshold(options),
            cuts=options.confirm,
        )
        # (how near the match may be, variant) per candidate, at most its whole pictures' dHash
        # distance as _resolve needs: the query whole's hit among the stored wholes is that
        # distance; among the cuts, under the radius, so under it unless that hit is there too.
        # Another part's hit says nothing of it (0).
        hits: dict[int, list[tuple[int, Orientation]]] = {}
        # variants come ORIGINAL first, so an equally good original beats a turned variant
        for orientation, by_whole, by_dct, by_centre in zip(
            variants,
            _split(found.wholes, wholes),
            _split(found.dcts, dct_parts),
            _split(found.centres, centre_parts),
            strict=True,
        ):
            for number, near in enumerate(by_whole):
                for key, distance in near:
                    hits.setdefault(key, []).append((distance if number == 0 else 0, orientation))
            for near in by_dct + by_centre:
                for key, _ in near:
                    hits.setdefault(key, []).append((0, orientation))
        if exclude_key is not None:
            hits.pop(exclude_key, None)
        return self._resolve(query, variants, hits, options)

    def match_among(self, query: Query, records: list[ImageRecord], options: SearchOptions) -> list[Match]:
        """`find` over a few records in hand (the earlier files of a batch) instead of the index."""
        variants = _variants(query, options)
        threshold = self._threshold(options)
        matches = []
        for record in records:
            found = [
                (0, o) for o, parts in variants.items() if _near(parts, record, threshold, options.confirm)
            ]
            matches += self._best(query, record, found, variants, options)
        return matches

    def _resolve(
        self,
        query: Query,
        variants: dict[Orientation, Parts],
        hits: dict[int, list[tuple[int, Orientation]]],
        options: SearchOptions,
    ) -> list[Match]:
        """Fetch, confirm and order candidates, nearest first, until `limit` matches are certain.

        Candidates are read from the store a chunk at a time in distance order: a far candidate
        is never read once `limit` nearer ones are confirmed (ties at the cut are all read, since
        they are ordered by id).
        """
        # by the nearest of each candidate's variants: a match's distance is never nearer
        candidates = sorted(hits.items(), key=lambda item: min(item[1])[0])
        matches: list[Match] = []
        for start in range(0, len(candidates), RESOLVE_CHUNK):
            chunk = candidates[start : start + RESOLVE_CHUNK]
            if options.limit is not None and len(matches) >= options.limit:
                matches.sort(key=match_order)
                if min(chunk[0][1])[0] > matches[options.limit - 1].distance:
                    break
            records = self.store.get_by_keys([key for key, _ in chunk])
            for key, found in chunk:
                record = records.get(key)  # None: deleted since the index was searched
                if record is not None:
                    matches += self._best(query, record, found, variants, options)
        matches.sort(key=match_order)
        return matches[: options.limit]

    def _best(
        self,
        query: Query,
        record: ImageRecord,
        found: list[tuple[int, Orientation]],
        variants: dict[Orientation, Parts],
        options: SearchOptions,
    ) -> list[Match]:
        """The record as a match in the variant that scores best (of equal ones, the nearer dHash,
        then the first), or nothing when none is kept. Judged by the score, not by the dHash
        alone: a turned variant can be nearer in dHash and yet be refuted where the original
        matches."""
        orientations = dict.fromkeys(o for _, o in found)  # each once, in the order found
        kept = [m for o in orientations for m in self._kept(query, record, variants[o], o, options)]
        return [min(kept, key=lambda m: (m.score, m.distance))] if kept else []

    def _threshold(self, options: SearchOptions) -> int:
        return self.max_distance if options.max_distance is None else options.max_distance

    def _kept(
        self,
        query: Query,
        record: ImageRecord,
        variant: Parts,
        orientation: Orientation,
        options: SearchOptions,
    ) -> list[Match]:
        """The candidate as a match, or nothing when confirmation is asked and its score is over
        `max_score` (identical files always match)."""
        exact = query.sha256 is not None and query.sha256 == record.sha256
        whole = variant.whole
        match = Match(
            record,
            hamming(whole.dhash, record.dhash),
            parts_score(variant, record),
            vertical_distance=_distance(whole.vertical, record.dhash_vertical),
            dct_distance=_distance(whole.dct, record.dct_hash),
            orientation=orientation,
            exact=exact,
        )
        return [match] if not options.confirm or self.accepts(match.score, exact=exact) else []

    def accepts(self, match_score: float, *, exact: bool) -> bool:
        """Whether confirmation keeps a dHash candidate of this score; identical files are always
        kept."""
        return exact or match_score <= self.max_score


def query_of_upload(upload: Upload, *, all_orientations: bool = True) -> Query:
    """The query for an uploaded file: with every orientation's hashes, or (cheaper, when the
    search will not turn it) only the original's."""
    if all_orientations:
        return Query(variants_of_image(upload.hashes), sha256=upload.sha256)
    return Query({ORIGINAL: upload.hashes.parts}, sha256=upload.sha256)


def _distance(query: int | None, stored: int | None) -> int | None:
    return None if query is None or stored is None else hamming(query, stored)


def match_order(match: Match) -> tuple[int, str]:
    return match.distance, match.record.id


def whole_parts(parts: Parts) -> tuple[Signature, ...]:
    """The parts of a query or a record compared with the other's whole parts: its whole and its
    other cuts (a screenshot's picture, a padded picture unpadded), whichever side holds them."""
    return (parts.whole, *parts.alternatives)


def _dct_hashes(parts: Parts) -> tuple[int, ...]:
    """The DCT hashes of a query looked up among the stored whole pictures' and cuts': its whole
    parts', where known. The score is a mean of three distances, and a copy whose dHash a filter or
    a vignette moved past the radius often keeps its DCT hash near."""
    return tuple(part.dct for part in whole_parts(parts) if part.dct is not None)


def whole_reach(a: Parts, b: Parts) -> int:
    """The nearest of the dHash and DCT distances between a whole part of `a` and one of `b`."""
    return min(
        min(hamming(x.dhash, y.dhash) for x in whole_parts(a) for y in whole_parts(b)),
        min((hamming(x, y) for x in _dct_hashes(a) for y in _dct_hashes(b)), default=64),
    )


def _centre_parts(parts: Parts) -> tuple[Signature, ...]:
    """The parts of a query compared with stored centres: its centre and its windows."""
    return ((parts.centre,) if parts.centre is not None else ()) + parts.windows


def _split(found: list[Hits], parts: Sequence[Sized]) -> Iterator[list[Hits]]:
    """The index's answers to every variant's parts in one list, split by variant."""
    at = 0
    for variant_parts in parts:
        yield found[at : at + len(variant_parts)]
        at += len(variant_parts)


def _near(parts: Parts, record: ImageRecord, threshold: int, by_parts: bool) -> bool:
    """Whether a record is a candidate for a query, as `Matching.find` looks them up: the whole
    pictures' dHashes within `threshold`; or (`by_parts`) the dHashes or DCT hashes of a whole part
    of each, or the record's centre's and the query's centre's or a window's."""
    if not by_parts:
        return hamming(parts.whole.dhash, record.dhash) <= threshold
    return whole_reach(parts, parts_of(record)) <= threshold or (
        record.centre_dhash is not None
        and any(hamming(part.dhash, record.centre_dhash) <= threshold for part in _centre_parts(parts))
    )


def _variants(query: Query, options: SearchOptions) -> dict[Orientation, Parts]:
    """The query's variants the search looks for: all, or the original alone."""
    return query.variants if options.all_orientations else {ORIGINAL: query.variants[ORIGINAL]}
