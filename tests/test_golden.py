"""Every file of tests/data/golden_hashes.tsv still hashes as the table says (see tests/golden.py)."""

import pytest
from golden import SHARED_PREFIX, Golden, hashed, path_of, read_table
from helpers import needs_shared

GOLDEN = read_table()


def case(row: Golden) -> object:
    marks = [needs_shared] if row.file.startswith(SHARED_PREFIX) else []
    return pytest.param(row, id=row.file, marks=marks)


def test_the_table_covers_the_committed_files_and_the_shared_photographs() -> None:
    committed = [row for row in GOLDEN if not row.file.startswith(SHARED_PREFIX)]
    assert len(committed) >= 12 and len(GOLDEN) > 100
    assert all(path_of(row.file).is_file() for row in committed)


@pytest.mark.parametrize("row", [case(row) for row in GOLDEN])
def test_hashes_have_not_moved(row: Golden) -> None:
    assert hashed(row.file) == row, "the hashes of this file moved: stored copies would stop matching"
