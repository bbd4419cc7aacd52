"""The scan's hash cache: what hashing each file gave (its hashes, or why it was skipped), keyed
by its absolute path, size and modification time, in a SQLite file."""

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from app.imaging import HASHING_VERSION, hash_hex, parse_hash_hex
from app.models import Cut

# Part of every entry's key, so that older entries are hashed again: the hashing's version, times
# 100, plus that of what the cache keeps of a file (bump it when that changes).
CACHE_VERSION = HASHING_VERSION * 100 + 1
_CHUNK = 500  # host parameters per query, well under SQLite's limit


@dataclass(frozen=True, slots=True)
class FileHashes:
    """What the scan keeps of an image file."""

    dhash: int
    vertical: int
    dct: int
    centre: tuple[int, int, int]  # the centre's dHash, vertical dHash and DCT hash
    cuts: tuple[Cut, ...]  # the picture's other cuts' (app/imaging ImageHashes.cuts)
    sha256: str
    width: int
    height: int
    format: str


# The hashes of a file, or the reason it was skipped.
Outcome = FileHashes | str


def default_cache_path() -> Path:
    """The user's cache folder ($XDG_CACHE_HOME, else ~/.cache), as platformdirs would name it on Linux."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "doppel" / "scan-cache.sqlite3"


class HashCache:
    """Outcomes of earlier scans. Entries of files that changed are not returned (and are
    replaced when the file is hashed again)."""

    def __init__(self, path: Path) -> None:
        """Open or create the cache; raises sqlite3.Error or OSError when it cannot be used."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Another scan may write at once: wait for its lock rather than fail.
        self._db = sqlite3.connect(path, timeout=30)
        with self._db:
            self._db.execute("DROP TABLE IF EXISTS files")  # of scans before the centres were hashed
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS scanned (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " version INTEGER, hashes TEXT, sha256 TEXT, width INTEGER, height INTEGER, format TEXT,"
                " skipped TEXT)"
            )

    def get(self, files: list[tuple[str, int, int]]) -> dict[str, Outcome]:
        """The cached outcome of each (absolute path, size, mtime_ns) still as it was."""
        wanted = {path: (size, mtime_ns) for path, size, mtime_ns in files}
        paths = list(wanted)
        found: dict[str, Outcome] = {}
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            rows = self._db.execute(
                f"SELECT * FROM scanned WHERE version = ? AND path IN ({','.join('?' * len(chunk))})",
                [CACHE_VERSION, *chunk],
            )
            for path, size, mtime_ns, _, hashes, sha256, width, height, fmt, skipped in rows:
                if wanted[path] != (size, mtime_ns):
                    continue
                if skipped is not None:
                    found[path] = skipped
                    continue
                # the whole's three hashes, the centre's, then each cut's
                dhash, vertical, dct, *more = (parse_hash_hex(value) for value in hashes.split())
                centre, *cuts = ((a, b, c) for a, b, c in zip(*[iter(more)] * 3, strict=True))
                found[path] = FileHashes(
                    dhash, vertical, dct, centre, tuple(cuts), sha256, width, height, fmt
                )
        return found

    def put(self, entries: list[tuple[str, int, int, Outcome]]) -> None:
        """Keep the outcome of each (absolute path, size, mtime_ns) hashed."""
        rows = []
        for path, size, mtime_ns, outcome in entries:
            if isinstance(outcome, str):
                rows.append((path, size, mtime_ns, CACHE_VERSION, *([None] * 5), outcome))
            else:
                o = outcome
                values = (o.dhash, o.vertical, o.dct, *o.centre, *(value for cut in o.cuts for value in cut))
                hashes = " ".join(hash_hex(value) for value in values)
                rows.append(
                    (
                        path,
                        size,
                        mtime_ns,
                        CACHE_VERSION,
                        hashes,
                        o.sha256,
                        o.width,
                        o.height,
                        o.format,
                        None,
                    )
                )
        with self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO scanned VALUES ({','.join('?' * 10)})", rows)

    def close(self) -> None:
        self._db.close()
