"""Matching with the in-memory store: search results against a brute-force oracle."""

import random
from collections.abc import Iterator

import pytest

from app.config import Settings
from app.imaging import HASHING_VERSION
from app.imaging.hashing import Parts, Signature, hamming
from app.models import NewImage, Orientation
from app.service import DoppelService, build_service
from app.service.matching import RESOLVE_CHUNK, Query, SearchOptions
from app.store import MemoryImageStore


@pytest.fixture
def crowded() -> Iterator[tuple[DoppelService, dict[str, int]]]:
    """More candidates than one fetch chunk, at every distance from 0 to 12, and more ties at
    distance 1 than one chunk holds (their order, by id, spans chunks)."""
    rng = random.Random(3)
    hashes = {
        f"tie-{rng.randrange(10**6):06d}-{n}": 1 << rng.randrange(64) for n in range(2 * RESOLVE_CHUNK + 50)
    }
    for n in range(3 * RESOLVE_CHUNK):
        value = 0
        for bit in rng.sample(range(64), n % 13):
            value |= 1 << bit
        hashes[f"img-{rng.randrange(10**6):06d}-{n}"] = value
    service = build_service(Settings(max_distance=10), store=MemoryImageStore())
    with service.store.writing() as write:
        write.add(
            [
                NewImage(id=k, dhash=v, width=1, height=1, hashing_version=HASHING_VERSION)
                for k, v in hashes.items()
            ]
        )
    service.start()
    yield service, hashes
    service.close()


@pytest.mark.parametrize(
    ("limit", "max_distance"), [(1, 10), (5, 1), (5, 10), (40, 3), (300, 12), (1000, 12), (None, 7)]
)
def test_matches_equal_a_sorted_brute_force(
    crowded: tuple[DoppelService, dict[str, int]], limit: int | None, max_distance: int
) -> None:
    service, hashes = crowded
    found = service.matching.search_hash(
        Signature(0, None, None), options=SearchOptions(max_distance=max_distance, limit=limit, confirm=False)
    )
    expected = sorted((hamming(v, 0), k) for k, v in hashes.items() if hamming(v, 0) <= max_distance)
    assert [(m.distance, m.record.id) for m in found] == expected[:limit]


@pytest.fixture
def zeros() -> Iterator[DoppelService]:
    """A service that stores one image, "p", all of whose hashes are 0."""
    service = build_service(Settings(), store=MemoryImageStore())
    with service.store.writing() as write:
        write.add(
            [
                NewImage(
                    id="p",
                    dhash=0,
                    width=1,
                    height=1,
                    dhash_vertical=0,
                    dct_hash=0,
                    hashing_version=HASHING_VERSION,
                )
            ]
        )
    service.start()
    yield service
    service.close()


def test_the_variant_that_scores_best_is_the_match(zeros: DoppelService) -> None:
    """A turned variant nearer in dHash but refuted by the other hashes does not hide the original,
    which is farther in dHash but agrees in all three."""
    agreeing = Parts(Signature(0b1111111, 0, 0))  # 7 bits of dHash away, the others equal: a score of 7/3
    refuted = Parts(Signature(1, (1 << 30) - 1, (1 << 30) - 1))  # 1 bit away, the others 30: 61/3
    query = Query({Orientation.ORIGINAL: agreeing, Orientation.FLIP_HORIZONTAL: refuted}, sha256=None)
    options = SearchOptions(all_orientations=True)
    [match] = zeros.matching.find(query, options)
    assert (match.orientation, match.distance, match.score) == (Orientation.ORIGINAL, 7, 7 / 3)
    assert zeros.matching.match_among(query, [zeros.get("p")], options) == [match]
    assert zeros.matching.find(query, SearchOptions()) == [match]


@pytest.mark.parametrize(
    "parts",
    [
        # the dHash 12 bits away, the DCT hash 2: a candidate by the DCT hash, a score of 18/3
        pytest.param(Parts(Signature((1 << 12) - 1, 0b1111, 0b11)), id="by the DCT hash"),
        # the trimmed picture far in every hash, an alternative cut 3 bits of dHash away
        pytest.param(
            Parts(Signature(*[(1 << 64) - 1] * 3), alternatives=(Signature(0b111, 0, 0),)),
            id="by an alternative cut",
        ),
    ],
)
def test_a_batch_finds_the_candidates_a_search_finds(zeros: DoppelService, parts: Parts) -> None:
    """`match_among` (the earlier files of a batch) finds by the same hashes as the index search,
    and neither does unconfirmed, where only the whole pictures' dHashes count."""
    query = Query({Orientation.ORIGINAL: parts}, sha256=None)
    [match] = zeros.matching.find(query, SearchOptions())
    assert match.record.id == "p" and match.score <= 10
    assert zeros.matching.match_among(query, [zeros.get("p")], SearchOptions()) == [match]
    unconfirmed = SearchOptions(confirm=False)
    assert zeros.matching.find(query, unconfirmed) == []
    assert zeros.matching.match_among(query, [zeros.get("p")], unconfirmed) == []
