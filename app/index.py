"""In-memory Hamming index over 64-bit hashes: a cache of the store, rebuilt from it at start-up.

Exact range search by multi-index hashing (docs/index.md has the design and the measurements).
The 64 bits are cut into three chunks of 22, 21 and 21 bits. A hash within distance r of the
query is within t_i of it on chunk i for at least one i whenever the t_i + 1 add up to more than
r (pigeonhole), so probing, in each of three tables sorted by one chunk, the buckets whose
chunk prefix lies within t_i of the query's finds every candidate, and a popcount of each
candidate against the query gives the exact answer. Radii where the probes would cost more than
an exhaustive scan, and small tables, are scanned instead (faiss's `hamming_range_search`).
"""

import ctypes
import ctypes.util
import struct
import threading
import zlib
from collections.abc import Iterable
from functools import lru_cache
from math import comb, log2
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import faiss
import numpy as np
import numpy.typing as npt

HASH_BYTES = 8

Codes = npt.NDArray[np.uint64]
Keys = npt.NDArray[Any]  # int64, or uint32 while every key fits (it saves 4 bytes a hash twice)
Ints = npt.NDArray[np.int64]
Positions = npt.NDArray[np.intp]

# The three chunks: how far each is rotated left to bring it to the top of the word, its width.
SHIFTS = (0, 22, 43)
CHUNK_BITS = (22, 21, 21)

# A table's buckets are the top bits of its chunk, as many as make buckets of about this many
# hashes (up to the whole chunk): fewer bits would mean more candidates, more bits a bigger
# offsets array (4 bytes a bucket) and more probes at the same radius.
BUCKET_TARGET = 2.0
# Below this many hashes a table is only ever scanned.
MIN_INDEXED = 1 << 14

# Cost model, in nanoseconds on one core (measured with bench/mih.py): an exhaustive scan costs
# SCAN_NS a stored hash; the chunk search PROBE_NS a probed bucket and CANDIDATE_NS a candidate
# checked, plus TABLE_NS for each table probed. A search takes whichever is cheaper.
SCAN_NS = 0.36
PROBE_NS = 20.0
CANDIDATE_NS = 10.0
TABLE_NS = 15_000.0

# Writes go to a flat buffer (scanned by every search: 0.36 ns a hash) until it outgrows the main
# tables (so a bulk load from empty merges geometrically rarely), within DELTA_MIN and DELTA_MAX.
# Then it is merged into the side tables, or with them into the main ones once they would hold
# over a SIDE_RATIO-th of the main. Merges are linear in the tables they rewrite, so an add costs
# O(1) amortized, and a search visits at most two table sets and the buffer. They run in a
# thread of their own (BACKGROUND_MERGES), so that no add waits for one: the syncer must keep up
# with the store (a replica is not ready after 1 s of lag), and a merge into 100M hashes takes
# seconds.
DELTA_MIN = 1 << 16
DELTA_MAX = 1 << 19
SIDE_RATIO = 16
BACKGROUND_MERGES = True
# Removed keys of the table sets are filtered out of results until they are this many, then
# dropped from the tables (a linear pass over the main table).
DEAD_RATIO = 16

_MAGIC = b"DOPPELMIH\x00\x00\x01"
_HEADER = struct.Struct("<12sQQQQ")  # magic, entries in main, in side, in the flat buffer, dead keys
_SECTION = struct.Struct("<QBI")  # entries, key bytes (4 or 8), crc32 of the data


def hashes_to_codes(hashes: Iterable[int] | np.ndarray) -> np.ndarray:
    """Pack 64-bit hashes into faiss's binary layout: one row of 8 bytes each, big-endian."""
    values = np.asarray(hashes, dtype=np.uint64) if not isinstance(hashes, np.ndarray) else hashes
    return values.astype(">u8").view(np.uint8).reshape(-1, HASH_BYTES)


class FrozenIndex:
    """A state of a HammingIndex, saved as it was taken whatever the index does meanwhile
    (states are immutable)."""

    def __init__(self, state: "_State") -> None:
        self._state = state

    def save(self, path: Path) -> None:
        """Write it to `path` (docs/index.md describes the format)."""
        with open(path, "wb") as out:
            self.write(out)

    def write(self, out: BinaryIO) -> None:
        """Write it to an open file, at its current place."""
        state = self._state
        main_codes, main_keys, frozen = state.main.codes, state.main.keys, state.frozen
        if frozen.ordered and not len(state.main):  # loaded, its tables still being built
            main_codes, main_keys, frozen = frozen.codes, frozen.keys, _NO_FROZEN
        gone = _member(state.dead, frozen.keys)  # removed while being merged: left out
        size = state.delta_size
        buffer_keys = np.concatenate([frozen.keys[~gone], state.delta_keys[:size]])
        buffer_codes = np.concatenate([frozen.codes[~gone], state.delta_codes[:size]])
        dead = state.dead[~_member(frozen.members, state.dead)]
        header = _HEADER.pack(_MAGIC, len(main_keys), len(state.side), len(buffer_keys), dead.size)
        out.write(header)
        _write_section(out, main_codes, main_keys)
        _write_section(out, state.side.codes, state.side.keys)
        _write_section(out, buffer_codes, buffer_keys)
        _write_section(out, None, dead)


class HammingIndex:
    """Exact Hamming range search over 64-bit hashes, under the store's integer keys.

    Readers never wait: the index is an immutable snapshot (`_State`) replaced whole by each
    write, so a search works on the state it started with, and sees every write that returned
    before it started. Writers are serialized by a lock and never wait for a merge either: a
    merge runs in a thread of its own on a snapshot, beside the published state, and is swapped
    in when done (the writes made meanwhile stay in the buffer, or among the removed keys).
    """

    def __init__(self) -> None:
        self._state = _State.empty()
        self._writer = threading.Lock()
        self._merging = False  # a merge runs (changed under _writer)
        self._job: _State | None = None  # the merge just started, until its thread takes it
        self._merged = threading.Condition(self._writer)

    def __len__(self) -> int:
        return self._state.entries

    def add(self, keys: np.ndarray | list[int], hashes: np.ndarray | list[int]) -> None:
        """Add hashes under the given keys (the caller never reuses a key)."""
        ids = np.asarray(keys, dtype=np.int64)
        codes = np.asarray(hashes, dtype=np.uint64)
        if ids.shape != codes.shape or ids.ndim != 1:
            raise ValueError("keys and hashes must be two sequences of the same length")
        if len(ids) == 0:
            return
        with self._writer:
            before = self._state
            self._state = before.appended(ids, codes)
            grown = self._state.delta_keys is not before.delta_keys and len(before.delta_keys) > 0
            del before
            self._start(self._next_merge())
        if grown:  # the buffer was copied into one twice as big
            _release_freed_memory()
        self._run_merges()

    def remove(self, keys: np.ndarray | list[int]) -> None:
        """Remove the given keys; keys not in the index are ignored."""
        ids = np.unique(np.asarray(keys, dtype=np.int64))
        if len(ids) == 0:
            return
        with self._writer:
            self._state = self._state.without(ids)
            self._start(self._next_merge())
        self._run_merges()

    def search(self, hashes: list[int], *, max_distance: int) -> list[list[tuple[int, int]]]:
        """For each query hash, the (key, distance) pairs with distance <= max_distance (inclusive)."""
        queries = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64).reshape(-1))
        state = self._state
        if max_distance < 0 or len(queries) == 0 or state.entries == 0:
            return [[] for _ in range(len(queries))]
        radius = min(max_distance, 64)
        _one_openmp_thread()
        parts = [tables.search(queries, radius) for tables in (state.main, state.side) if len(tables)]
        if len(state.frozen.keys):
            found, positions, distances = _scan(state.frozen.codes, queries, radius)
            parts.append(_Hits(found, state.frozen.keys[positions], distances))
        if state.dead.size:
            parts = [_drop_dead(part, state.dead) for part in parts]
        if state.delta_size:
            size = state.delta_size
            found, positions, distances = _scan(state.delta_codes[:size], queries, radius)
            parts.append(_Hits(found, state.delta_keys[positions], distances))
        return _per_query(parts, len(queries))

    def save(self, path: Path) -> None:
        """Write the index to `path` (docs/index.md describes the format)."""
        self.frozen().save(path)

    def frozen(self) -> "FrozenIndex":
        """The index as it is now, to save while it goes on changing."""
        return FrozenIndex(self._state)

    def load(self, path: Path) -> None:
        """Replace the contents with an index saved by `save`; ValueError if the file is not one.

        It returns once the file is read and checked: the main entries are searched by a scan
        (as fast as the exhaustive index) while their tables are built in the merging thread,
        from the very arrays read (sorted as saved), so the load needs no memory beside the index.
        """
        with open(path, "rb") as source:
            state = _read_state(source, path)
            if source.read(1):
                raise ValueError(f"{path}: unexpected bytes after the index")
        self._install(state)

    def read(self, source: BinaryIO, path: Path) -> None:
        """`load` from an open file, at its current place (`path` names it in errors)."""
        self._install(_read_state(source, path))

    def _install(self, state: "_State") -> None:
        with self._writer:
            while self._merging:  # one merge at a time: the one running is for the state replaced
                self._merged.wait()
            self._state = state
            self._merging = True
            self._start(state)
            del state
        _release_freed_memory()
        self._run_merges()

    def _next_merge(self) -> "_State | None":
        """The state to merge, if a merge is due and none runs; its buffer is frozen, so that the
        writes made during the merge go to a new one. Called under the writer lock."""
        if self._merging or not self._state.merge_due():
            return None
        self._merging = True
        self._state = self._state.frozen_buffer()
        return self._state

    def _start(self, job: "_State | None") -> None:
        """Hand `job` to a merging thread (under the writer lock), or keep it for _run_merges."""
        if job is None:
            return
        self._job = job
        if BACKGROUND_MERGES:
            threading.Thread(target=self._merge, name="doppel-index-merge", daemon=True).start()

    def _run_merges(self) -> None:
        """Without BACKGROUND_MERGES: run the merge just started, in the writer's thread."""
        if not BACKGROUND_MERGES and self._job is not None:
            self._merge()

    def _merge(self) -> None:
        """Merge the job handed over and swap the result in, then the next merge due, if any.
        The job is held only here, so that the arrays it replaces are freed when it is done."""
        with self._writer:
            job, self._job = self._job, None
        while job is not None:
            try:
                main, side, purged = job.merge()
            except BaseException:
                with self._writer:  # the frozen buffer stays searched, and goes into the next merge
                    self._merging = False
                    self._merged.notify_all()
                raise
            with self._writer:
                state = self._state
                if state.main is job.main and state.side is job.side and state.frozen is job.frozen:
                    dead = np.setdiff1d(state.dead, purged, assume_unique=True)
                    self._state = state._replace(main=main, side=side, frozen=_NO_FROZEN, dead=dead)
                self._merging = False
                self._merged.notify_all()
                job = self._next_merge()
                self._job = None
            del state, main, side
            _release_freed_memory()

    def _settle(self) -> None:
        """Wait until no merge runs (for tests and benchmarks)."""
        with self._writer:
            while self._merging:
                self._merged.wait()


def _one_openmp_thread() -> None:
    """Make faiss run single-threaded in the calling thread.

    The request threads already use the cores, and OpenMP's thread count is a setting of each
    calling thread: set once at start-up, it leaves every request thread with a team of OpenMP
    threads that spin while they wait (measured: 0.8 ms of CPU per search of 1,000 hashes).
    Setting it costs nanoseconds, so it is set before every call.
    """
    faiss.omp_set_num_threads(1)


class _Hits(NamedTuple):
    """Matches of several queries: query number, key and distance of each."""

    queries: Positions
    keys: Keys
    distances: npt.NDArray[Any]


class _Plan(NamedTuple):
    """How a table set answers one radius: per table, the probe radius (-1: not probed) and the
    bucket offsets to XOR with the query's prefix (every prefix within that radius)."""

    radii: tuple[int, int, int]
    masks: tuple[Positions | None, Positions | None, Positions | None]


class _Tables:
    """An immutable set of three tables over the same (key, hash) entries.

    Table 0 is the hashes sorted (chunk 0 is their top 22 bits), with their keys in the same
    order; tables 1 and 2 hold the hashes rotated left by 22 and 43 bits (chunk 1 or 2 on top),
    sorted, without keys: a hash they find is looked up in table 0 for its keys. `members` holds
    the keys sorted, for removals. Per table, `offsets[b]` is where bucket b (the top `bits` bits)
    starts. 8 + 4 + 8 + 8 + 4 bytes a hash with keys below 2**32 (8 more otherwise), and the
    offsets: 4 bytes a bucket, about 2 bytes a hash up to 2**23 hashes, under 0.5 above 10**8.
    """

    def __init__(
        self, codes: Codes, keys: Keys, rotated: tuple[Codes, Codes], members: Keys, *, indexed: bool = True
    ) -> None:
        """`indexed`: with the offsets a search needs (not for tables about to be merged)."""
        self.codes = codes
        self.keys = keys
        self.tables = (codes, rotated[0], rotated[1])
        self.members = members
        size = len(codes)
        self.bits: tuple[int, ...] = tuple(
            0 if size < MIN_INDEXED else max(1, min(chunk, round(log2(size / BUCKET_TARGET))))
            for chunk in CHUNK_BITS
        )
        self.is_indexed = indexed
        self.offsets = tuple(
            _offsets(table, bits if indexed else 0)
            for table, bits in zip(self.tables, self.bits, strict=True)
        )
        self._plans: dict[int, _Plan | None] = {}

    def indexed(self) -> "_Tables":
        if self.is_indexed:
            return self
        return _Tables(self.codes, self.keys, (self.tables[1], self.tables[2]), self.members)

    def __len__(self) -> int:
        return len(self.codes)

    @staticmethod
    def from_sorted(
        codes: Codes, keys: Keys, *, members: Keys | None = None, indexed: bool = True
    ) -> "_Tables":
        """Tables over entries already sorted by hash (`members`: their keys sorted, if known)."""
        rotated = []
        for shift in SHIFTS[1:]:
            table = _rotl(codes, shift)
            table.sort()
            rotated.append(table)
        if members is None:
            members = keys.copy()
            members.sort()
        return _Tables(codes, keys, (rotated[0], rotated[1]), members, indexed=indexed)

    @staticmethod
    def build(keys: Ints, codes: Codes) -> "_Tables":
        """Tables (without offsets) over these entries."""
        order = np.argsort(codes)
        return _Tables.from_sorted(codes[order], _narrow(keys[order]), indexed=False)

    def contains(self, keys: Ints) -> npt.NDArray[np.bool_]:
        return _member(self.members, keys)

    def merged(self, other: "_Tables", dead: Ints, *, indexed: bool = True) -> "_Tables":
        """These entries and `other`'s, less those whose keys are in `dead` (sorted)."""
        codes, keys, rotated = self.codes, self.keys, list(self.tables[1:])
        members = self.members
        if dead.size:
            gone = _isin(keys, dead)
            if gone.any():
                dropped = codes[gone]
                members = _delete_values(members, keys[gone])
                kept = ~gone
                codes, keys = codes[kept], keys[kept]
                rotated = [
                    _delete_values(table, _rotl(dropped, shift))
                    for table, shift in zip(rotated, SHIFTS[1:], strict=True)
                ]
        wide = np.result_type(keys.dtype, other.keys.dtype)
        codes, keys = _merge(
            codes, other.codes, keys.astype(wide, copy=False), other.keys.astype(wide, copy=False)
        )
        rotated = [_merge(mine, theirs)[0] for mine, theirs in zip(rotated, other.tables[1:], strict=True)]
        members = _merge(members.astype(wide, copy=False), other.members.astype(wide, copy=False))[0]
        return _Tables(codes, keys, (rotated[0], rotated[1]), members, indexed=indexed)

    def without(self, dead: Ints, *, indexed: bool = True) -> tuple["_Tables", Ints]:
        """These entries less those whose keys are in `dead`; and the keys of `dead` still left."""
        if not dead.size or not len(self):
            return self, dead
        mine = self.contains(dead)
        if not mine.any():
            return self, dead
        return self.merged(_EMPTY, dead[mine], indexed=indexed), dead[~mine]

    def search(self, queries: Codes, radius: int) -> _Hits:
        plan = self._plan(radius)
        return self.scan(queries, radius) if plan is None else self.probe(queries, radius, plan)

    def scan(self, queries: Codes, radius: int) -> _Hits:
        found, positions, distances = _scan(self.codes, queries, radius)
        return _Hits(found, self.keys[positions], distances)

    def probe(self, queries: Codes, radius: int, plan: _Plan) -> _Hits:
        """The chunk search: exact when plan.radii are as _choose_plan picks them."""
        direct: list[_Hits] = []
        looked_up: list[tuple[Positions, Codes]] = []  # hashes found by tables 1 and 2, per query
        for table in range(3):
            probe = plan.radii[table]
            masks = plan.masks[table]
            if probe < 0 or masks is None:
                continue
            shift, bits = SHIFTS[table], self.bits[table]
            rotated = _rotl(queries, shift)
            prefixes = (rotated >> np.uint64(64 - bits)).astype(np.intp)
            probes = (prefixes[:, None] ^ masks[None, :]).ravel()
            offsets = self.offsets[table]
            starts = offsets[probes].astype(np.int64)
            counts = offsets[probes + 1].astype(np.int64) - starts
            nonempty = np.flatnonzero(counts)
            if not nonempty.size:
                continue
            starts, counts = starts[nonempty], counts[nonempty]
            positions = _ranges(starts, counts)
            of_query = np.repeat(nonempty // len(masks), counts)
            xor = self.tables[table][positions] ^ rotated[of_query]
            distances = np.bitwise_count(xor)
            hit = np.flatnonzero(distances <= radius)
            if not hit.size:
                continue
            positions, of_query, xor, distances = positions[hit], of_query[hit], xor[hit], distances[hit]
            if table == 0:
                direct.append(_Hits(of_query, self.keys[positions], distances))
                continue
            # Keep each match once: drop those that an earlier table's probes found.
            difference = _rotl(xor, 64 - shift)  # hash XOR query, chunk 0 on top again
            keep = np.ones(len(hit), dtype=np.bool_)
            for earlier in range(table):
                if plan.radii[earlier] >= 0:
                    near = _rotl(difference, SHIFTS[earlier]) >> np.uint64(64 - self.bits[earlier])
                    keep &= np.bitwise_count(near) > plan.radii[earlier]
            found = self.tables[table][positions[keep]]
            looked_up.append((of_query[keep], _rotl(found, 64 - shift)))
        if looked_up:
            direct.append(self._keys_of(queries, looked_up))
        return _concat(direct) if direct else _NO_HITS

    def _keys_of(self, queries: Codes, found: list[tuple[Positions, Codes]]) -> _Hits:
        """The keys in table 0 of the hashes that tables 1 and 2 found for each query (a hash
        stored n times is found n times, and has n keys)."""
        of_query = np.concatenate([part[0] for part in found])
        codes = np.concatenate([part[1] for part in found])
        parts = []
        for query in np.unique(of_query).tolist() if len(queries) > 1 else [0]:
            mine = np.sort(codes[of_query == query] if len(queries) > 1 else codes)
            if not mine.size:
                continue
            first = np.ones(len(mine), dtype=np.bool_)
            first[1:] = mine[1:] != mine[:-1]
            mine = mine[first]
            # Sorted, so each binary search starts where the last one ended.
            starts = np.searchsorted(self.codes, mine, side="left").astype(np.int64)
            runs = np.ones(len(mine), dtype=np.int64)
            after = np.minimum(starts + 1, len(self.codes) - 1)
            repeated = np.flatnonzero((self.codes[after] == mine) & (starts + 1 < len(self.codes)))
            if repeated.size:
                ends = np.searchsorted(self.codes, mine[repeated], side="right")
                runs[repeated] = ends - starts[repeated]
            positions = _ranges(starts, runs)
            distances = np.repeat(np.bitwise_count(mine ^ queries[query]), runs)
            parts.append(_Hits(np.full(len(positions), query), self.keys[positions], distances))
        return _concat(parts) if parts else _NO_HITS

    def _plan(self, radius: int) -> _Plan | None:
        if radius not in self._plans:
            self._plans[radius] = _choose_plan(len(self), self.bits, radius)
        return self._plans[radius]


class _Frozen(NamedTuple):
    """Entries being merged: still searched (scanned) until the merge is swapped in. The buffer,
    or, after a load, the main tables' entries (`ordered`: sorted by hash, as saved)."""

    keys: Keys
    codes: Codes
    members: Keys  # the keys sorted
    ordered: bool = False


class _State(NamedTuple):
    """Everything a search reads, never changed once published: the main and side table sets,
    the buffer being merged, the keys removed from these but still in their arrays (sorted), and
    the flat buffer of recent adds (its first `delta_size` entries; later appends write past
    them, where no search reads)."""

    main: _Tables
    side: _Tables
    frozen: _Frozen
    dead: Ints
    delta_keys: Ints
    delta_codes: Codes
    delta_size: int
    delta_sorted: bool  # the buffer's keys ascend (they do when the store hands out growing keys)

    @staticmethod
    def empty() -> "_State":
        return _State(_EMPTY, _EMPTY, _NO_FROZEN, _NO_KEYS, *_buffers(0), 0, True)

    @property
    def entries(self) -> int:
        return len(self.main) + len(self.side) + len(self.frozen.keys) + self.delta_size - self.dead.size

    def merge_due(self) -> bool:
        """The buffer has outgrown its bound (the main tables' size, within DELTA_MIN and DELTA_MAX),
        or the removed keys a sixteenth of the tables."""
        if self.delta_size > max(DELTA_MIN, min(len(self.main), DELTA_MAX)):
            return True
        return self.dead.size * DEAD_RATIO > max(DELTA_MIN, len(self.main) + len(self.side))

    def appended(self, keys: Ints, codes: Codes) -> "_State":
        """With these entries in the buffer (reallocated, twice as big, if they do not fit)."""
        size = self.delta_size
        filled = size + len(keys)
        delta_keys, delta_codes = self.delta_keys, self.delta_codes
        ascending = self.delta_sorted and bool(np.all(keys[1:] > keys[:-1]))
        ascending = ascending and (size == 0 or keys[0] > delta_keys[size - 1])
        if filled > len(delta_keys):
            delta_keys, delta_codes = _buffers(max(filled, 2 * len(delta_keys), DELTA_MIN))
            delta_keys[:size], delta_codes[:size] = self.delta_keys[:size], self.delta_codes[:size]
        delta_keys[size:filled], delta_codes[size:filled] = keys, codes
        return self._replace(
            delta_keys=delta_keys, delta_codes=delta_codes, delta_size=filled, delta_sorted=ascending
        )

    def frozen_buffer(self) -> "_State":
        """The buffer (and what an earlier, failed merge left frozen) frozen for a merge."""
        size = self.delta_size
        keys, codes = self.delta_keys[:size], self.delta_codes[:size]  # never written again
        if len(self.frozen.keys):
            keys = np.concatenate([self.frozen.keys.astype(np.int64), keys])
            codes = np.concatenate([self.frozen.codes, codes])
        sorted_keys = keys if self.delta_sorted and not len(self.frozen.keys) else np.sort(keys)
        frozen = _Frozen(keys, codes, sorted_keys)
        return self._replace(frozen=frozen, delta_keys=_NO_KEYS, delta_codes=_EMPTY_CODES, delta_size=0)

    def merge(self) -> tuple["_Tables", "_Tables", Ints]:
        """The frozen buffer merged into the side tables, or with them into the main ones once
        they would hold a SIDE_RATIO-th of them; removed keys dropped from the tables rewritten
        (and from the main ones when they are many). Returns the main and side tables and the
        removed keys dropped."""
        frozen, dead = self.frozen, self.dead
        if frozen.ordered:  # loaded: the main tables built from the very arrays read, as they are
            main = _Tables.from_sorted(frozen.codes, frozen.keys, members=frozen.members)
            return main, self.side, _NO_KEYS
        pending, dead = _Tables.build(frozen.keys, frozen.codes).without(dead, indexed=False)
        side, dead = self.side.without(dead, indexed=False)
        if len(side):
            pending = side.merged(pending, _NO_KEYS, indexed=False)
        main = self.main
        purge = dead.size * DEAD_RATIO > len(main)
        if purge or len(pending) * SIDE_RATIO > len(main):
            if purge:
                main, dead = main.without(dead, indexed=False)
            main = main.merged(pending, _NO_KEYS) if len(main) else pending.indexed()  # no copy
            side = _EMPTY
        else:
            side = pending.indexed()
        return main, side, np.setdiff1d(self.dead, dead, assume_unique=True)

    def without(self, keys: Ints) -> "_State":
        """Less the given keys (sorted, unique): out of the buffer, else among the removed keys."""
        state = self
        size = self.delta_size
        buffered = self._buffered(keys)
        if buffered.any():
            kept = ~buffered
            left = int(np.count_nonzero(kept))
            delta_keys, delta_codes = _buffers(len(self.delta_keys))
            delta_keys[:left], delta_codes[:left] = (
                self.delta_keys[:size][kept],
                self.delta_codes[:size][kept],
            )
            state = state._replace(delta_keys=delta_keys, delta_codes=delta_codes, delta_size=left)
        held = self.main.contains(keys) | self.side.contains(keys) | _member(self.frozen.members, keys)
        fresh = keys[held & ~_member(self.dead, keys)]
        if not fresh.size:
            return state
        return state._replace(dead=np.insert(self.dead, np.searchsorted(self.dead, fresh), fresh))

    def _buffered(self, keys: Ints) -> npt.NDArray[np.bool_]:
        """Which entries of the buffer have one of `keys` (sorted)."""
        buffer = self.delta_keys[: self.delta_size]
        if not self.delta_sorted:
            return _member(keys, buffer)  # a binary search for each entry of the buffer
        found = np.zeros(len(buffer), dtype=np.bool_)
        if buffer.size:
            at = np.minimum(np.searchsorted(buffer, keys), len(buffer) - 1)
            found[at[buffer[at] == keys]] = True
        return found


def _buffers(capacity: int) -> tuple[Ints, Codes]:
    """Room for `capacity` buffered entries: memory the system maps only as it is written."""
    return np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.uint64)


def _release_freed_memory() -> None:
    """Hand the arrays a merge freed back to the system. glibc serves allocations below its mmap
    threshold (which it raises up to 32 MiB as big blocks are freed) from its heap and keeps what
    is freed there: without this, merges at a million hashes left the process 30 bytes a hash
    bigger than its arrays."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _rotl(values: Codes, shift: int) -> Codes:
    """Rotate 64-bit words left by `shift` bits (a new array, also for a shift of 0 or 64), in
    slices, so that a big array needs little memory beside the result."""
    shift %= 64
    if shift == 0:
        return values.copy()
    out = np.empty_like(values)
    step = 1 << 20
    for start in range(0, len(values), step):
        part = values[start : start + step]
        np.left_shift(part, np.uint64(shift), out=out[start : start + step])
        out[start : start + step] |= part >> np.uint64(64 - shift)
    return out


def _narrow(keys: Ints) -> Keys:
    """Keys as uint32 when they all fit, else int64."""
    if keys.size and (keys.min() < 0 or keys.max() > 0xFFFFFFFF):
        return keys
    return keys.astype(np.uint32)


def _member(sorted_values: npt.NDArray[Any], values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Which of `values` are in `sorted_values` (sorted ascending, integers); a binary search each."""
    found = np.zeros(values.shape, dtype=np.bool_)
    if not sorted_values.size or not values.size:
        return found
    needles, where = values, np.arange(len(values))
    if values.dtype != sorted_values.dtype:  # searched in the haystack's type, without copying it
        limits = np.iinfo(sorted_values.dtype)
        where = np.flatnonzero((values >= limits.min) & (values <= limits.max))
        needles = values[where].astype(sorted_values.dtype)
    at = np.minimum(np.searchsorted(sorted_values, needles), len(sorted_values) - 1)
    found[where] = sorted_values[at] == needles
    return found


def _isin(values: Keys, sorted_set: Ints) -> npt.NDArray[np.bool_]:
    """Which of `values` (many, in any order) are in `sorted_set`: a lookup in a table of flags
    over the set's range when that is not much bigger than `values`, else a sort."""
    low, high = int(sorted_set[0]), int(sorted_set[-1])
    if high - low >= 4 * len(values) + (1 << 20):
        result: npt.NDArray[np.bool_] = np.isin(values, sorted_set, kind="sort")
        return result
    flags = np.zeros(high - low + 1, dtype=np.bool_)
    flags[sorted_set - low] = True
    found = np.zeros(len(values), dtype=np.bool_)
    step = 1 << 22
    for start in range(0, len(values), step):
        chunk = values[start : start + step].astype(np.int64) - low
        inside = np.flatnonzero((chunk >= 0) & (chunk <= high - low))
        found[start + inside] = flags[chunk[inside]]
    return found


def _merge(
    mine: npt.NDArray[Any],
    theirs: npt.NDArray[Any],
    mine_with: Keys | None = None,
    theirs_with: Keys | None = None,
) -> tuple[npt.NDArray[Any], Keys]:
    """Merge two sorted arrays (and arrays aligned with them) in linear time."""
    if not theirs.size:
        return mine, mine_with if mine_with is not None else _NO_KEYS
    size = len(mine) + len(theirs)
    at = np.searchsorted(mine, theirs, side="right") + np.arange(len(theirs))
    taken = np.zeros(size, dtype=np.bool_)
    taken[at] = True
    np.logical_not(taken, out=taken)
    out = np.empty(size, dtype=mine.dtype)
    out[at] = theirs
    out[taken] = mine
    if mine_with is None or theirs_with is None:
        return out, _NO_KEYS
    out_with = np.empty(size, dtype=mine_with.dtype)
    out_with[at] = theirs_with
    out_with[taken] = mine_with
    return out, out_with


def _delete_values(table: npt.NDArray[Any], values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`table` (sorted) less one occurrence of each of `values` (which it holds)."""
    values = np.sort(values)
    rank = np.arange(len(values)) - np.searchsorted(values, values, side="left")
    kept = np.ones(len(table), dtype=np.bool_)
    kept[np.searchsorted(table, values, side="left") + rank] = False
    return table[kept]


def _offsets(table: Codes, bits: int) -> npt.NDArray[Any]:
    """Where each bucket (value of the top `bits` bits) starts in the sorted `table`, and its end."""
    if bits == 0:
        return np.zeros(0, dtype=np.uint32)
    counts = np.zeros(1 << bits, dtype=np.int64)
    step = 1 << 21
    buffer = np.empty(min(step, len(table)), dtype=np.uint64)  # the only temporary, and small
    for start in range(0, len(table), step):
        part = table[start : start + step]
        prefixes = buffer[: len(part)]
        np.right_shift(part, np.uint64(64 - bits), out=prefixes)
        counts += np.bincount(prefixes.view(np.int64), minlength=1 << bits)
    offsets = np.zeros((1 << bits) + 1, dtype=np.uint32 if len(table) < 1 << 32 else np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _ranges(starts: Ints, counts: Ints) -> Ints:
    """The positions start, start + 1, ..., start + count - 1 of each range, concatenated."""
    ends = np.cumsum(counts)
    positions = np.repeat(starts - ends + counts, counts)
    positions += np.arange(int(ends[-1]) if len(ends) else 0)
    return positions


@lru_cache(maxsize=64)
def _buckets(bits: int) -> tuple[int, ...]:
    """How many `bits`-bit values lie within 0, 1, ..., bits flips of a given one."""
    return tuple(sum(comb(bits, flips) for flips in range(radius + 1)) for radius in range(bits + 1))


@lru_cache(maxsize=256)
def _masks(bits: int, radius: int) -> Positions:
    """Every `bits`-bit value of at most `radius` set bits."""
    values = np.arange(1 << bits, dtype=np.intp)
    masks: Positions = values[np.bitwise_count(values) <= radius]
    masks.flags.writeable = False
    return masks


def _choose_plan(size: int, bits: tuple[int, ...], radius: int) -> _Plan | None:
    """The probe radii that make the search exact at least cost, or None if a scan costs less."""
    best = _best_plan(size, bits, radius)
    return None if best is None or best[0] >= SCAN_NS * size else _plan_of(bits, best[1])


def _plan_of(bits: tuple[int, ...], radii: tuple[int, int, int]) -> _Plan:
    masks = tuple(_masks(bits[table], radii[table]) if radii[table] >= 0 else None for table in range(3))
    return _Plan(radii, (masks[0], masks[1], masks[2]))


def _best_plan(size: int, bits: tuple[int, ...], radius: int) -> tuple[float, tuple[int, int, int]] | None:
    """The cheapest exact chunk search (its modelled cost in ns), or None if there is none."""
    if not all(bits):
        return None

    def cost(table: int, probe: int) -> float:
        if probe < 0:
            return 0.0
        buckets = _buckets(bits[table])[probe]
        return TABLE_NS + PROBE_NS * buckets + CANDIDATE_NS * size * buckets / (1 << bits[table])

    best: tuple[float, tuple[int, int, int]] | None = None
    for first in range(-1, bits[0] + 1):
        for second in range(-1, bits[1] + 1):
            third = max(-1, radius - 2 - first - second)  # (t0 + 1) + (t1 + 1) + (t2 + 1) > radius
            if third > bits[2]:
                continue
            total = cost(0, first) + cost(1, second) + cost(2, third)
            if best is None or total < best[0]:
                best = (total, (first, second, third))
    return best


def _scan(codes: Codes, queries: Codes, radius: int) -> tuple[Positions, Ints, npt.NDArray[Any]]:
    """Exhaustive search: query numbers, positions in `codes` and distances of the matches."""
    result = faiss.RangeSearchResult(len(queries))
    faiss.hamming_range_search(  # type: ignore[attr-defined]
        faiss.swig_ptr(queries.view(np.uint8)),
        faiss.swig_ptr(np.ascontiguousarray(codes).view(np.uint8)),
        len(queries),
        len(codes),
        radius + 1,  # faiss keeps distances strictly below its radius
        HASH_BYTES,
        result,
    )
    limits = faiss.rev_swig_ptr(result.lims, len(queries) + 1).astype(np.int64)
    found = int(limits[-1])
    positions = faiss.rev_swig_ptr(result.labels, found).astype(np.int64) if found else _NO_KEYS
    distances = faiss.rev_swig_ptr(result.distances, found).astype(np.uint8) if found else _NO_HITS.distances
    return np.repeat(np.arange(len(queries)), np.diff(limits)), positions, distances


def _drop_dead(hits: _Hits, dead: Ints) -> _Hits:
    alive = ~_member(dead, hits.keys)
    return _Hits(hits.queries[alive], hits.keys[alive], hits.distances[alive])


def _concat(parts: list[_Hits], keys: type[np.integer[Any]] = np.int64) -> _Hits:
    if len(parts) == 1:
        return parts[0]
    return _Hits(
        np.concatenate([part.queries for part in parts]),
        np.concatenate([part.keys.astype(keys, copy=False) for part in parts]),
        np.concatenate([part.distances for part in parts]),
    )


def _per_query(parts: list[_Hits], queries: int) -> list[list[tuple[int, int]]]:
    hits = _concat(parts) if parts else _NO_HITS
    if queries == 1:
        return [list(zip(hits.keys.tolist(), hits.distances.tolist(), strict=True))]
    order = np.argsort(hits.queries, kind="stable")
    keys, distances = hits.keys[order].tolist(), hits.distances[order].tolist()
    ends = np.cumsum(np.bincount(hits.queries, minlength=queries)).tolist()
    starts = [0, *ends[:-1]]
    return [list(zip(keys[a:b], distances[a:b], strict=True)) for a, b in zip(starts, ends, strict=True)]


def _write_section(out: BinaryIO, codes: Codes | None, keys: Keys) -> None:
    key_bytes = keys.dtype.itemsize
    crc = zlib.crc32(np.ascontiguousarray(keys).data.cast("B"))
    if codes is not None:
        crc = zlib.crc32(np.ascontiguousarray(codes).data.cast("B"), crc)
    out.write(_SECTION.pack(len(keys), key_bytes, crc))
    if codes is not None:
        out.write(np.ascontiguousarray(codes, dtype="<u8").data.cast("B"))
    out.write(np.ascontiguousarray(keys).data.cast("B"))


def _read_section(source: BinaryIO, path: Path, size: int, *, with_codes: bool) -> tuple[Codes, Keys]:
    raw = source.read(_SECTION.size)
    if len(raw) != _SECTION.size:
        raise ValueError(f"{path}: truncated")
    count, key_bytes, crc = _SECTION.unpack(raw)
    if count != size or key_bytes not in (4, 8):
        raise ValueError(f"{path}: inconsistent section header")
    codes = _read_array(source, path, np.dtype("<u8"), count) if with_codes else _EMPTY_CODES
    keys = _read_array(source, path, np.dtype("<u4" if key_bytes == 4 else "<i8"), count)
    check = zlib.crc32(keys.data.cast("B"))
    if with_codes:
        check = zlib.crc32(codes.data.cast("B"), check)
    if check != crc:
        raise ValueError(f"{path}: checksum mismatch")
    return codes, keys


def _read_sorted(source: BinaryIO, path: Path, size: int) -> tuple[Codes, Keys]:
    codes, keys = _read_section(source, path, size, with_codes=True)
    step = 1 << 22
    for start in range(0, size - 1, step):
        chunk = codes[start : start + step + 1]
        if np.any(chunk[1:] < chunk[:-1]):
            raise ValueError(f"{path}: hashes out of order")
    return codes, keys


def _read_array(source: BinaryIO, path: Path, dtype: np.dtype[Any], count: int) -> npt.NDArray[Any]:
    array = np.empty(count, dtype=dtype)
    view = array.data.cast("B")
    read = 0
    while read < len(view):
        got = source.readinto(view[read:])  # type: ignore[attr-defined]
        if not got:
            raise ValueError(f"{path}: truncated")
        read += got
    return array


_NO_KEYS: Ints = np.zeros(0, dtype=np.int64)
_EMPTY_CODES: Codes = np.zeros(0, dtype=np.uint64)
_NO_FROZEN = _Frozen(_NO_KEYS, _EMPTY_CODES, _NO_KEYS)
_EMPTY = _Tables(
    _EMPTY_CODES, np.zeros(0, dtype=np.uint32), (_EMPTY_CODES, _EMPTY_CODES), np.zeros(0, dtype=np.uint32)
)
_NO_HITS = _Hits(np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8))


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _malloc_trim()


def _read_state(source: BinaryIO, path: Path) -> _State:
    """A saved index's state, read from an open file at its current place; ValueError if it is not
    one (`path` names it in the message)."""
    header = source.read(_HEADER.size)
    if len(header) != _HEADER.size or not header.startswith(_MAGIC):
        raise ValueError(f"{path} does not hold a saved HammingIndex")
    _, main_size, side_size, delta_size, dead_size = _HEADER.unpack(header)
    main_codes, main_keys = _read_sorted(source, path, main_size)
    side_codes, side_keys = _read_sorted(source, path, side_size)
    delta_codes, delta_keys = _read_section(source, path, delta_size, with_codes=True)
    _, dead = _read_section(source, path, dead_size, with_codes=False)
    members = main_keys.copy()
    members.sort()
    dead = dead.astype(np.int64)
    if dead.size and (
        np.any(dead[1:] <= dead[:-1]) or not np.all(_member(members, dead) | np.isin(dead, side_keys))
    ):
        raise ValueError(f"{path}: its removed keys are not keys of the index")
    frozen = _Frozen(main_keys, main_codes, members, ordered=True)
    side = _Tables.from_sorted(side_codes, side_keys)  # at most a sixteenth of the main
    delta_keys = delta_keys.astype(np.int64)
    ascending = bool(np.all(delta_keys[1:] > delta_keys[:-1]))
    state = _State(_EMPTY, side, frozen, dead, delta_keys, delta_codes, delta_size, ascending)
    return state
