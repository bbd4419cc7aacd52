"""GET /duplicates against a brute-force oracle, and the groups module on its own."""

import itertools
import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import encode, make_photo, upload
from PIL import Image

from app.config import Settings
from app.factory import create_app
from app.image_index import ImageIndex
from app.imaging import hamming, parse_hash_hex
from app.models import NewImage
from app.service import duplicates as duplicates_module
from app.service.groups import groups_of
from app.service.matching import UNKNOWN_DISTANCE, Matching
from app.service.memory import DecodeMemory
from app.service.metrics import Metrics
from app.service.pairs import DuplicatePairs, PairsStatus
from app.service.sync import IndexSyncer
from app.service.uploads import UploadHasher
from app.store import MemoryImageStore, SQLiteImageStore

HANG = 120  # seconds: only to stop a hung run, never a limit on how fast something must be
MAX_DISTANCE = 10  # the default DOPPEL_MAX_DISTANCE
MAX_SCORE = Settings().max_score


# --- the groups module -------------------------------------------------------------------------


def reachable(start: int, edges: list[tuple[int, int]]) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for a, b in edges:
            for here, there in ((a, b), (b, a)):
                if here == node and there not in seen:
                    seen.add(there)
                    todo.append(there)
    return seen


def test_groups_of_equal_the_components_found_by_search() -> None:
    rng = random.Random(5)
    for _ in range(30):
        edges = [(rng.randrange(40), rng.randrange(40)) for _ in range(rng.randrange(45))]
        nodes = {n for edge in edges for n in edge}
        expected = {frozenset(reachable(n, edges)) for n in nodes}
        assert sorted(map(sorted, groups_of(edges))) == sorted(map(sorted, expected))


def test_groups_of_of_nothing_and_of_a_chain() -> None:
    assert groups_of([]) == []
    assert groups_of([("a", "b"), ("c", "d"), ("b", "c"), ("e", "e")]) == [["a", "b", "c", "d"], ["e"]]


# --- the oracle ---------------------------------------------------------------------------------


def all_records(client: TestClient) -> list[dict[str, Any]]:
    records, after = [], None
    while True:
        params = {"limit": 1000} | ({"after": after} if after else {})
        page = client.get("/images", params=params).json()
        records += page["items"]
        if page["next"] is None:
            return records
        after = page["next"]


def brute_force_groups(
    records: list[dict[str, Any]],
    *,
    max_distance: int = MAX_DISTANCE,
    confirm: bool = True,
    min_size: int = 2,
) -> list[list[str]]:
    """Every pair compared, with the README's rule: dHashes within `max_distance`, and (when
    confirming) the mean of the three hashes' distances at most MAX_SCORE, a hash that either side
    lacks counted as UNKNOWN_DISTANCE bits."""
    pairs = []
    for a, b in itertools.combinations(records, 2):
        distance = hamming(parse_hash_hex(a["hash"]), parse_hash_hex(b["hash"]))
        if distance > max_distance:
            continue
        others = [
            hamming(parse_hash_hex(a[k]), parse_hash_hex(b[k])) if a[k] and b[k] else UNKNOWN_DISTANCE
            for k in ("vertical_hash", "dct_hash")
        ]
        if confirm and (distance + sum(others)) / 3 > MAX_SCORE:
            continue
        pairs.append((a["id"], b["id"]))
    groups = [sorted(group) for group in groups_of(pairs) if len(group) >= min_size]
    return sorted(groups)


def served_groups(client: TestClient, limit: int = 3, **params: object) -> list[list[str]]:
    """Every page of GET /duplicates, once the pairs cover the store; members' ids per group."""
    deadline = time.monotonic() + HANG
    while not client.get("/duplicates", params=params).json()["complete"]:
        assert time.monotonic() < deadline, "the pairs were never complete"
        time.sleep(0.05)
    groups: list[list[str]] = []
    after = None
    while True:
        response = client.get(
            "/duplicates", params=params | {"limit": limit} | ({"after": after} if after else {})
        )
        assert response.status_code == 200, response.text
        page = response.json()
        for group in page["groups"]:
            ids = [member["id"] for member in group["members"]]
            assert ids == sorted(ids) and group["size"] == len(ids)
            assert {pair["a"] for pair in group["pairs"]} | {pair["b"] for pair in group["pairs"]} == set(ids)
            groups.append(ids)
        assert page["total"] >= len(groups)
        if page["next"] is None:
            assert page["total"] == len(groups)
            return groups
        after = page["next"]


def striped(k: int, seed: int) -> bytes:
    """A horizontal pattern, plus k half-waves of brightness top to bottom: the same dHash for
    every k (rows only get brighter or darker), DCT hashes far apart for k = 0 and 1."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, 256)[None, :]
    y = np.linspace(0, 1, 256)[:, None]
    base = 60 + 80 * np.sin(3 * np.pi * x + rng.random() * 6) * np.ones((256, 1))
    pixels = base + (60 * np.cos(k * np.pi * y) if k else 0)
    return encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))


def clustered_hashes(n_clusters: int, seed: int) -> list[dict[str, str]]:
    """Random hashes, and near copies of some (0-12 bits away): groups, chains, near misses."""
    rng = random.Random(seed)
    items = []
    for c in range(n_clusters):
        centre = rng.getrandbits(64)
        for m in range(rng.choice([1, 1, 2, 3, 5])):
            flipped = centre
            for bit in rng.sample(range(64), rng.randrange(13) if m else 0):
                flipped ^= 1 << bit
            items.append({"id": f"h{c:03d}-{m}", "hash": f"{flipped:016x}"})
    return items


def fill(client: TestClient) -> None:
    """Hash-only records, photos and their copies, and a pair the DCT hash refutes."""
    response = client.post("/images/batch", json={"items": clustered_hashes(60, seed=1)})
    assert response.status_code == 201, response.text
    for seed in range(4):
        photo = make_photo(seed)
        assert upload(client, encode(photo, "JPEG", quality=90), f"p{seed}").status_code == 201
        assert upload(client, encode(photo.resize((320, 240)), "PNG"), f"p{seed}-small").status_code == 201
    assert upload(client, encode(make_photo(0), "JPEG", quality=90), "p0-again").status_code == 201
    for k in (0, 1, 2):
        assert upload(client, striped(k, seed=7), f"s{k}").status_code == 201


# --- GET /duplicates ----------------------------------------------------------------------------


def test_groups_equal_brute_force_at_the_defaults_and_under_them(client: TestClient) -> None:
    fill(client)
    records = all_records(client)
    assert served_groups(client) == brute_force_groups(records)
    for max_distance in (0, 4, 9):
        assert served_groups(client, max_distance=max_distance) == brute_force_groups(
            records, max_distance=max_distance
        )
    assert served_groups(client, confirm=False) == brute_force_groups(records, confirm=False)
    assert served_groups(client, min_size=3) == brute_force_groups(records, min_size=3)
    # the oracle's cases are all there: a refuted pair, identical files, chains of three or more
    assert brute_force_groups(records) != brute_force_groups(records, confirm=False)
    assert ["p0", "p0-again", "p0-small"] in brute_force_groups(records)
    assert brute_force_groups(records, min_size=3)


def test_a_group_lists_its_members_and_pairs(client: TestClient) -> None:
    photo = make_photo(3)
    upload(client, encode(photo, "JPEG", quality=90), "a", '{"owner":"ann"}')
    upload(client, encode(photo, "JPEG", quality=90), "b")
    served_groups(client)
    (group,) = client.get("/duplicates").json()["groups"]
    assert [m["id"] for m in group["members"]] == ["a", "b"]
    assert group["members"][0]["metadata"] == {"owner": "ann"}
    assert group["pairs"] == [
        {"a": "a", "b": "b", "distance": 0, "similarity": 1.0, "dct_distance": 0, "exact": True}
    ]


def test_deletes_and_replaces_keep_the_groups_right(client: TestClient) -> None:
    fill(client)
    for image_id in ("p1", "h000-0", "s1"):
        client.delete(f"/images/{image_id}")
    client.put("/images/p2-small", files={"file": ("f", encode(make_photo(40), "PNG"))})
    client.put("/images/s0", files={"file": ("f", striped(2, seed=7))})
    records = all_records(client)
    assert served_groups(client) == brute_force_groups(records)
    assert served_groups(client, confirm=False) == brute_force_groups(records, confirm=False)


def test_other_parameters_are_computed_on_demand(client: TestClient) -> None:
    fill(client)
    records = all_records(client)
    assert served_groups(client, max_distance=13) == brute_force_groups(records, max_distance=13)
    # turned copies: the oracle is each image's own duplicates, searched one by one
    turned = make_photo(2).transpose(Image.Transpose.ROTATE_90)
    upload(client, encode(turned, "PNG"), "p2-turned")
    pairs = []
    for record in all_records(client):
        answer = client.get(
            f"/images/{record['id']}/duplicates", params={"all_orientations": True, "limit": 1000}
        )
        pairs += [(record["id"], match["id"]) for match in answer.json()["matches"]]
    expected = sorted(sorted(group) for group in groups_of(pairs))
    served = served_groups(client, all_orientations=True)
    assert served == expected
    assert ["p2", "p2-small", "p2-turned"] in served


def test_on_demand_is_refused_for_large_stores(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duplicates_module, "ON_DEMAND_MAX_IMAGES", 2)
    client.post("/images/batch", json={"items": clustered_hashes(3, seed=2)})
    for params in ({"all_orientations": True}, {"max_distance": 11}):
        response = client.get("/duplicates", params=params)
        assert response.status_code == 422
        assert "on demand only for stores of up to 2 images" in response.json()["detail"]
    assert client.get("/duplicates", params={"max_distance": 10}).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"min_size": 1},
        {"limit": 0},
        {"limit": 1001},
        {"max_distance": 65},
        {"max_distance": -1},
        {"confirm": "x"},
    ],
)
def test_bad_parameters_are_unprocessable(client: TestClient, params: dict[str, object]) -> None:
    response = client.get("/duplicates", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_without_kept_pairs_the_groups_are_computed_on_demand(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", duplicate_groups=False)
    with TestClient(create_app(settings)) as client:
        fill(client)
        assert served_groups(client) == brute_force_groups(all_records(client))


def test_replicas_on_one_store_serve_the_same_groups(sqlite_settings: Settings) -> None:
    with TestClient(create_app(sqlite_settings)) as first:
        fill(first)
        with TestClient(create_app(sqlite_settings)) as second:
            # written through the first, read from the second: rebuilt there at start
            assert served_groups(second) == served_groups(first)
            client_delete = first.delete("/images/p0")
            assert client_delete.status_code == 204
            expected = brute_force_groups(all_records(first))
            deadline = time.monotonic() + HANG
            while served_groups(second) != expected:  # the second learns of it within a poll
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert served_groups(first) == expected
        # restarted on a store that has them all: rebuilt from the log
        with TestClient(create_app(sqlite_settings)) as again:
            assert served_groups(again) == expected


def test_a_restart_loads_the_saved_pairs_and_follows_the_changes_made_while_down(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(sqlite_settings)) as client:
        fill(client)
        before = served_groups(client)
    saved = list((sqlite_settings.data_dir / "snapshots").glob("pairs-*.json"))
    assert len(saved) == 1
    # another process writes while this one is down
    store = SQLiteImageStore(sqlite_settings.data_dir / "doppel.sqlite3")
    with store.writing() as write:
        write.delete("p0")
        write.add(
            [
                NewImage(
                    id="h000-0-copy",
                    dhash=store_hash(store, "h000-0") ^ 0b111,
                    width=None,
                    height=None,
                    hashing_version=1,
                )
            ]
        )
    store.close()
    with caplog.at_level(logging.INFO, logger="doppel"), TestClient(create_app(sqlite_settings)) as client:
        after = served_groups(client)
        assert after == brute_force_groups(all_records(client))
        assert after != before
    assert "duplicate pairs loaded from pairs-" in caplog.text
    # then brought up to the changes made while down, which the log says once they are
    assert re.search(
        r"duplicate pairs up to date at log position \d+: \d+ images have candidates", caplog.text
    )


def test_saved_pairs_of_another_threshold_are_rebuilt(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(sqlite_settings)) as client:
        fill(client)
        served_groups(client)
    stricter = sqlite_settings.model_copy(update={"max_distance": 6})
    with caplog.at_level(logging.INFO, logger="doppel"), TestClient(create_app(stricter)) as client:
        assert served_groups(client) == brute_force_groups(all_records(client), max_distance=6)
    assert "made for max_distance 10" in caplog.text


@pytest.mark.parametrize(
    ("found_by", "logged"),
    [
        (None, "found by whole and centre dHashes"),
        ("whole dHash, whole DCT hash, centre dHash", "found by whole dHash, whole DCT hash, centre dHash"),
    ],
    ids=["dHashes alone", "without the cuts"],
)
def test_saved_pairs_found_by_fewer_hashes_are_rebuilt(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture, found_by: str | None, logged: str
) -> None:
    """Pairs saved by a Doppel that found them by the dHashes alone lack those only a DCT hash
    finds; by one that did not store the cuts, those only a cut finds."""
    with TestClient(create_app(sqlite_settings)) as client:
        fill(client)
        expected = served_groups(client)
    [saved] = (sqlite_settings.data_dir / "snapshots").glob("pairs-*.json")
    older = json.loads(saved.read_text(encoding="utf-8"))
    if found_by is None:
        del older["found_by"]
    else:
        older["found_by"] = found_by
    older["pairs"] = []
    saved.write_text(json.dumps(older), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="doppel"), TestClient(create_app(sqlite_settings)) as client:
        assert served_groups(client) == expected
    assert logged in caplog.text


def store_hash(store: SQLiteImageStore, image_id: str) -> int:
    record = store.get(image_id)
    assert record is not None
    return record.dhash


def test_pairs_name_their_images_in_id_order_nearest_first(client: TestClient) -> None:
    photo = make_photo(8)
    upload(client, encode(photo, "PNG"), "z")
    upload(client, encode(photo, "JPEG", quality=90), "m")
    upload(client, encode(photo.resize((160, 120)), "JPEG", quality=40), "a")
    served_groups(client)
    (group,) = client.get("/duplicates").json()["groups"]
    pairs = [(pair["a"], pair["b"], pair["distance"]) for pair in group["pairs"]]
    assert all(a < b for a, b, _ in pairs)
    assert [d for _, _, d in pairs] == sorted(d for _, _, d in pairs)
    assert {(a, b) for a, b, _ in pairs} == {("a", "m"), ("a", "z"), ("m", "z")}


def test_the_pairs_report_their_progress_until_complete() -> None:
    store = MemoryImageStore()
    items = clustered_hashes(40, seed=3)
    with store.writing() as write:
        write.add(
            [
                NewImage(id=i["id"], dhash=int(i["hash"], 16), width=None, height=None, hashing_version=1)
                for i in items
            ]
        )
    index = ImageIndex()
    syncer = IndexSyncer(store, index, interval_s=0.05)
    metrics = Metrics(index, store)
    matching = Matching(
        store,
        index,
        UploadHasher(
            max_pixels=1,
            max_concurrent_decodes=1,
            memory=DecodeMemory(1),
            hash_seconds=metrics.hash_seconds,
            decode_wait_seconds=metrics.decode_wait_seconds,
        ),
        max_distance=10,
        max_score=10,
    )
    pairs = DuplicatePairs(store, index, syncer, matching, interval_s=0.05)
    syncer.start()
    try:
        assert pairs.status() == PairsStatus(complete=False, progress=0.0)
        assert pairs.current(timeout_s=0) == []  # not built yet: nothing, at once
        pairs.start()
        deadline = time.monotonic() + HANG
        while not pairs.status().complete:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pairs.status() == PairsStatus(complete=True, progress=1.0)
        found = {(p.a_id, p.b_id) for p in pairs.current(timeout_s=HANG)}
        expected = {
            tuple(sorted((a["id"], b["id"])))
            for a, b in itertools.combinations(items, 2)
            if hamming(int(a["hash"], 16), int(b["hash"], 16)) <= MAX_DISTANCE
        }
        assert {tuple(sorted(pair)) for pair in found} == expected and expected
    finally:
        pairs.stop()
        syncer.stop()
