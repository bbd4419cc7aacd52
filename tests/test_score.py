"""The decision rule: one score over every distance, unknown distances counted pessimistically."""

import pytest

from app.config import Settings
from app.service.matching import UNKNOWN_DISTANCE, WEIGHTS, score

MAX_SCORE = Settings().max_score


def test_the_score_is_the_weighted_mean_of_the_distances() -> None:
    assert score(0, 0, 0) == 0
    assert score(64, 64, 64) == 64
    assert score(4, 4, 4) == pytest.approx(4)
    dhash, vertical, dct = WEIGHTS
    assert score(6, 2, 10) == pytest.approx((6 * dhash + 2 * vertical + 10 * dct) / sum(WEIGHTS))


@pytest.mark.parametrize("which", range(3))
def test_a_farther_hash_never_scores_nearer(which: int) -> None:
    base = [4, 6, 8]
    farther = list(base)
    farther[which] += 5
    assert score(*farther) > score(*base)


def test_an_unknown_distance_counts_as_the_pessimistic_value() -> None:
    assert score(3, None, 7) == score(3, UNKNOWN_DISTANCE, 7)
    assert score(3, 5, None) == score(3, 5, UNKNOWN_DISTANCE)
    assert score(3, None, None) == score(3, UNKNOWN_DISTANCE, UNKNOWN_DISTANCE)


def test_a_dhash_alone_must_be_much_closer_than_with_every_hash() -> None:
    """A hash-only record (or a search by dHash alone) cannot be refuted by the other hashes: it
    matches only when its dHash is close enough to outweigh their unknown distances."""
    alone = [d for d in range(65) if score(d, None, None) <= MAX_SCORE]
    with_all = [d for d in range(65) if score(d, d, d) <= MAX_SCORE]
    assert alone and max(alone) <= max(with_all) // 2
    assert score(0, None, None) <= MAX_SCORE  # a hash of the very picture still matches


def test_agreeing_hashes_can_carry_a_farther_dhash() -> None:
    """A caption or a logo moves the dHash more than the DCT hash: close DCT and vertical hashes
    keep a candidate whose dHash alone is at the edge of the search."""
    assert score(10, 4, 2) <= MAX_SCORE
    assert score(10, 14, 20) > MAX_SCORE
