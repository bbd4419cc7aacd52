"""`scan`: hash every image under some folders on every core (through the hash cache), then group
the duplicates with the service's own matching, in an in-memory store."""

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from threadpoolctl import threadpool_limits

from app.config import Settings
from app.errors import DoppelError
from app.imaging import HASHING_VERSION, hash_image_bytes
from app.imaging.hashing import NOT_AN_IMAGE, open_image, sniff_known_format
from app.models import NewImage, Orientation
from app.scan.cache import FileHashes, HashCache, Outcome
from app.scan.progress import progress
from app.scan.walk import Found, Skipped, walk
from app.service import build_service
from app.service.groups import groups_of
from app.service.matching import SearchOptions
from app.store import MemoryImageStore

# Files named so are tried even when their first bytes are not a signature sniff_known_format knows.
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
}
SNIFF_BYTES = 64
CACHE_WRITE_EVERY = 256  # outcomes; an interrupted scan keeps what it hashed up to then
POOL_CHUNK = 4  # files a worker takes at once: fewer round trips, still an even spread


@dataclass(frozen=True, slots=True)
class ScannedFile:
    found: Found
    hashes: FileHashes

    @property
    def pixels(self) -> int:
        return self.hashes.width * self.hashes.height


@dataclass(frozen=True, slots=True)
class Pair:
    """Two files that match, as the service's duplicates search of the first finds the second."""

    a: ScannedFile
    b: ScannedFile
    distance: int
    dct_distance: int | None
    orientation: Orientation
    exact: bool


@dataclass(frozen=True, slots=True)
class Group:
    """Files connected by matching pairs, in path order, with those pairs."""

    members: list[ScannedFile]
    pairs: list[Pair]

    @property
    def largest(self) -> ScannedFile:
        """The member of most pixels, then of most bytes."""
        return max(self.members, key=lambda f: (f.pixels, f.found.size))

    @property
    def oldest(self) -> ScannedFile:
        return min(self.members, key=lambda f: f.found.mtime_ns)


@dataclass(frozen=True, slots=True)
class ScanResult:
    files: list[ScannedFile]
    groups: list[Group]  # most members first
    skipped: list[Skipped]
    hashed: int  # files read and decoded in this run
    cached: int  # files whose outcome came from the cache


def scan(
    folders: list[Path],
    settings: Settings,
    *,
    all_orientations: bool = False,
    cache: HashCache | None = None,
    workers: int | None = None,
    hidden: bool = False,
    progress_out: TextIO | None = None,
) -> ScanResult:
    """The duplicate groups among the images under `folders`, with the service's rules: within
    `settings.max_distance`, judged by the score over all hashes (`settings.max_score`), in any
    orientation when asked; identical files flagged as exact."""
    walked = walk(folders, hidden=hidden)
    outcomes, hashed = _hash_all(walked.files, settings.max_pixels, cache, workers, progress_out)
    files: list[ScannedFile] = []
    skipped = list(walked.skipped)
    for found, outcome in zip(walked.files, outcomes, strict=True):
        if isinstance(outcome, str):
            skipped.append(Skipped(found.path, outcome))
        else:
            files.append(ScannedFile(found, outcome))
    options = SearchOptions(limit=None, all_orientations=all_orientations)
    groups = _groups(files, find_pairs(files, settings, options))
    return ScanResult(files, groups, sorted(skipped, key=lambda s: s.path), hashed, len(outcomes) - hashed)


def might_be_image(path: Path, head: bytes) -> bool:
    """Whether a file may be an image the service reads, from its first SNIFF_BYTES bytes and its
    name: what plainly is not one is skipped without reading it all (a video can be gigabytes)."""
    return sniff_known_format(head) or path.suffix.lower() in IMAGE_SUFFIXES


def hash_file(path: str, max_pixels: int) -> Outcome:
    """The file's hashes, or why it is skipped (never raises: one bad file must not end a scan)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            if not might_be_image(Path(path), head):
                return NOT_AN_IMAGE
            data = head + handle.read()
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    try:
        hashes = hash_image_bytes(data, max_pixels=max_pixels)
        image_format = open_image(data).format or "?"
    except DoppelError as exc:
        return exc.detail
    except Exception as exc:  # a decoder's fault on one strange file
        return f"could not be decoded: {exc}"
    centre = hashes.centre.signature
    return FileHashes(
        hashes.dhash,
        hashes.dhash_vertical,
        hashes.dct_hash,
        (centre.dhash, centre.vertical or 0, centre.dct or 0),
        hashes.cuts,
        hashlib.sha256(data).hexdigest(),
        hashes.width,
        hashes.height,
        image_format,
    )


def _hash_all(
    files: list[Found], max_pixels: int, cache: HashCache | None, workers: int | None, out: TextIO | None
) -> tuple[list[Outcome], int]:
    """Each file's outcome, from the cache or hashed now, and how many were hashed now."""
    keys = [(os.path.abspath(f.path), f.size, f.mtime_ns) for f in files]
    cached = cache.get(keys) if cache is not None else {}
    todo = [n for n, key in enumerate(keys) if key[0] not in cached]
    results: dict[int, Outcome] = {}
    pending: list[tuple[str, int, int, Outcome]] = []
    with progress(len(files), label="hashing", initial=len(files) - len(todo), out=out) as bar:
        for n, outcome in zip(todo, _hashed([keys[n][0] for n in todo], max_pixels, workers), strict=True):
            results[n] = outcome
            pending.append((*keys[n], outcome))
            if cache is not None and len(pending) >= CACHE_WRITE_EVERY:
                cache.put(pending)
                pending = []
            bar.update()
    if cache is not None and pending:
        cache.put(pending)
    return [results[n] if n in results else cached[key[0]] for n, key in enumerate(keys)], len(results)


def _hashed(paths: list[str], max_pixels: int, workers: int | None) -> Iterator[Outcome]:
    """Each file's outcome in order, hashed by a process per core."""
    if not paths:
        return
    with ProcessPoolExecutor(
        max_workers=workers or os.cpu_count() or 1, initializer=_one_blas_thread
    ) as pool:
        yield from pool.map(hash_file, paths, [max_pixels] * len(paths), chunksize=POOL_CHUNK)


def _one_blas_thread() -> None:
    # A process per core already: BLAS threads on top fight over the cores (the resize's matrix
    # products took 4x as long with two threads per process on a loaded 2-core machine).
    threadpool_limits(1, user_api="blas")


def find_pairs(files: list[ScannedFile], settings: Settings, options: SearchOptions) -> list[Pair]:
    """Every matching pair: each file's duplicates as the service finds those of a stored image
    (GET /images/{id}/duplicates), in a service on an in-memory store of the files."""
    store = MemoryImageStore()
    with store.writing() as write:
        records = write.add([_new_image(n, f.hashes) for n, f in enumerate(files)])
    service = build_service(settings, store=store)
    service.start()
    found: dict[tuple[int, int], Pair] = {}
    try:
        for n, record in enumerate(records):
            _, matches = service.matching.duplicates_of(record.id, options=options)
            for match in matches:
                m = int(match.record.id)
                key = (min(n, m), max(n, m))
                # Seen from both sides; keep the nearer view (orientation variants can differ by a tie).
                if key not in found or match.distance < found[key].distance:
                    found[key] = Pair(
                        files[key[0]],
                        files[key[1]],
                        match.distance,
                        match.dct_distance,
                        match.orientation,
                        match.exact,
                    )
    finally:
        service.close()
    return [found[key] for key in sorted(found)]


def _new_image(n: int, hashes: FileHashes) -> NewImage:
    return NewImage(
        id=str(n),
        dhash=hashes.dhash,
        width=hashes.width,
        height=hashes.height,
        dhash_vertical=hashes.vertical,
        dct_hash=hashes.dct,
        centre_dhash=hashes.centre[0],
        centre_vertical=hashes.centre[1],
        centre_dct=hashes.centre[2],
        cuts=hashes.cuts,
        sha256=hashes.sha256,
        hashing_version=HASHING_VERSION,
    )


def _groups(files: list[ScannedFile], pairs: list[Pair]) -> list[Group]:
    index = {f.found.path: n for n, f in enumerate(files)}
    components = groups_of((index[p.a.found.path], index[p.b.found.path]) for p in pairs)
    group_of = {n: g for g, members in enumerate(components) for n in members}
    pairs_of: list[list[Pair]] = [[] for _ in components]
    for pair in pairs:
        pairs_of[group_of[index[pair.a.found.path]]].append(pair)
    groups = [
        Group(sorted((files[n] for n in members), key=lambda f: str(f.found.path)), pairs_of[g])
        for g, members in enumerate(components)
    ]
    groups.sort(key=lambda g: (-len(g.members), str(g.members[0].found.path)))
    return groups
