"""The parts of each picture hashed beside the whole: its centre, by which copies with text along
their edges and cropped copies are found, over HTTP, on both stores; and its other cuts (unpadded,
inset), by which a copy padded with the colour of its edge, or a screenshot, is found, stored first
or last. Records without a centre still match by the whole picture; the index keeps them all across
a restart."""

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import SHARED_IMAGES, needs_shared, search, upload
from PIL import Image, ImageOps

from app.config import Settings
from app.evaluation import (
    _caption_bar,
    _crop,
    _filter_vivid,
    _outlined_text,
    _padded_square,
    _save,
    _screenshot,
    viewed,
)
from app.factory import create_app
from app.image_index import SNAPSHOT_MAGIC, Found, ImageIndex
from app.imaging import HASHING_VERSION, MAX_CUTS, hash_image_bytes
from app.models import NewImage
from app.store import open_store
from app.store.base import StoredHashes

# A photo of dev/ whose 10%-cropped and meme-texted copies plain dHash misses (checked below).
PHOTO = "0058.jpg"


def ids(response: object) -> list[str]:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return [m["id"] for m in response.json()["matches"]]  # type: ignore[attr-defined]


@pytest.fixture
def photo() -> Image.Image:
    data = (SHARED_IMAGES / "dev" / PHOTO).read_bytes()
    return ImageOps.contain(viewed(data), (1024, 1024))


@needs_shared
@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda im: _crop(im, 0.10, share_left=0.2, share_top=0.9), id="crop 10% off-centre"),
        pytest.param(
            lambda im: _outlined_text(im, [("WHEN THE EVAL", 0.08), ("HOLDS OUT", 0.92)], 0.1),
            id="meme text top and bottom",
        ),
    ],
)
def test_copies_plain_dhash_misses_are_found_by_the_centre(
    client: TestClient, photo: Image.Image, edit: object
) -> None:
    assert (
        upload(client, (SHARED_IMAGES / "dev" / PHOTO).read_bytes(), image_id="original").status_code == 201
    )
    copy = _save(edit(photo))  # type: ignore[operator]
    assert ids(search(client, copy, confirm="false")) == []  # the whole pictures' dHashes are far
    [match] = search(client, copy).json()["matches"]
    assert match["id"] == "original" and match["distance"] > 10
    assert match["similarity"] >= 1 - 10 / 64


@pytest.fixture(
    params=[
        # dev/0004.jpg's sky is a few levels under white: padded with white to a square, its top
        # border does not end at an edge, so the border trim keeps it; the unpadded cut does not.
        pytest.param(("0004.jpg", lambda im: _save(_padded_square(im))), id="unpadded"),
        pytest.param((PHOTO, lambda im: _save(_screenshot(im), "PNG")), id="inset in a screenshot"),
    ]
)
def cut_copy(request: pytest.FixtureRequest) -> tuple[bytes, bytes]:
    """A copy of a dev/ picture that the border trim leaves framed, and the picture's file."""
    name, edit = request.param
    original = (SHARED_IMAGES / "dev" / name).read_bytes()
    return edit(ImageOps.contain(viewed(original), (1024, 1024))), original


@needs_shared
def test_copies_the_border_trim_misses_are_found_by_another_cut(
    client: TestClient, cut_copy: tuple[bytes, bytes]
) -> None:
    copy, original = cut_copy
    assert upload(client, original, image_id="original").status_code == 201
    assert ids(search(client, copy, confirm="false")) == []
    assert ids(search(client, copy)) == ["original"]
    assert upload(client, copy, image_id="copy").status_code == 201
    assert ids(client.get("/images/copy/duplicates")) == ["original"]


@needs_shared
def test_a_copy_stored_first_is_found_by_its_original_and_grouped_with_it(
    client: TestClient, cut_copy: tuple[bytes, bytes]
) -> None:
    """The copy's other cuts are stored with it: the picture found in a screenshot, or padded,
    matches whichever of the two came first."""
    copy, original = cut_copy
    assert upload(client, copy, image_id="copy").status_code == 201
    assert ids(search(client, original, confirm="false")) == []
    assert ids(search(client, original)) == ["copy"]
    assert upload(client, original, image_id="original").status_code == 201
    assert ids(client.get("/images/original/duplicates")) == ["copy"]
    assert ids(client.get("/images/copy/duplicates")) == ["original"]
    groups = client.get("/duplicates").json()["groups"]
    assert [[m["id"] for m in g["members"]] for g in groups] == [["copy", "original"]]


@needs_shared
def test_a_caption_bar_over_a_cut_outs_margin_is_found_in_either_order(client: TestClient) -> None:
    """dev/0217.png, a wheel on white: the bar stops the border trim on two sides, and the copy
    keeps a margin its original loses (its score was 11.0, over the threshold); its cornered cut
    trims past the bar, whichever of the two is stored."""
    original = (SHARED_IMAGES / "dev" / "0217.png").read_bytes()
    copy = _save(_caption_bar(ImageOps.contain(viewed(original), (1024, 1024), Image.Resampling.LANCZOS)))
    assert upload(client, original, image_id="original").status_code == 201
    assert ids(search(client, copy)) == ["original"]
    assert client.delete("/images/original").status_code == 204
    assert upload(client, copy, image_id="copy").status_code == 201
    assert ids(search(client, original)) == ["copy"]


@needs_shared
def test_cuts_leave_the_index_with_their_image_and_stay_out_of_plain_dhash(
    client: TestClient, cut_copy: tuple[bytes, bytes]
) -> None:
    copy, original = cut_copy
    assert upload(client, copy, image_id="copy").status_code == 201
    assert upload(client, original, image_id="original").status_code == 201
    assert client.get("/duplicates", params={"confirm": "false"}).json()["groups"] == []
    assert ids(client.get("/images/copy/duplicates", params={"confirm": "false"})) == []
    # the copy replaced by another picture, then put back, then deleted: its cuts go with it
    other = (SHARED_IMAGES / "dev" / "0002.jpg").read_bytes()
    assert client.put("/images/copy", files={"file": ("other.jpg", other)}).status_code == 200
    assert ids(search(client, original)) == ["original"]
    assert client.get("/duplicates").json()["groups"] == []
    assert client.put("/images/copy", files={"file": ("copy", copy)}).status_code == 200
    assert ids(client.get("/images/original/duplicates")) == ["copy"]
    assert client.delete("/images/copy").status_code == 204
    assert ids(client.get("/images/original/duplicates")) == []
    assert client.get("/duplicates").json()["groups"] == []


@needs_shared
def test_a_mirrored_screenshot_is_paired_with_its_original_from_either_side(client: TestClient) -> None:
    original = (SHARED_IMAGES / "dev" / PHOTO).read_bytes()
    mirrored = ImageOps.mirror(ImageOps.contain(viewed(original), (1024, 1024)))
    assert upload(client, _save(_screenshot(mirrored), "PNG"), image_id="mirrored").status_code == 201
    assert upload(client, original, image_id="original").status_code == 201
    turned = {"all_orientations": "true"}
    for one, other in (("mirrored", "original"), ("original", "mirrored")):
        [match] = client.get(f"/images/{one}/duplicates", params=turned).json()["matches"]
        assert (match["id"], match["orientation"]) == (other, "flip_horizontal")
    assert ids(client.get("/images/mirrored/duplicates")) == []


@needs_shared
def test_a_filtered_copy_whose_dhash_moved_is_found_by_its_dct_hash(client: TestClient) -> None:
    # A vivid filter with a vignette moves dev/0244.png's dHash past the radius, not its DCT hash.
    original = (SHARED_IMAGES / "dev" / "0244.png").read_bytes()
    assert upload(client, original, image_id="original").status_code == 201
    filtered = _save(_filter_vivid(ImageOps.contain(viewed(original), (1024, 1024))))
    assert ids(search(client, filtered, confirm="false")) == []
    [match] = search(client, filtered).json()["matches"]
    assert match["id"] == "original" and match["distance"] > 10
    assert upload(client, filtered, image_id="filtered").status_code == 201
    assert ids(client.get("/images/filtered/duplicates")) == ["original"]
    groups = client.get("/duplicates").json()["groups"]
    assert [[m["id"] for m in g["members"]] for g in groups] == [["filtered", "original"]]


@needs_shared
def test_stored_copies_with_text_along_their_edges_are_grouped(
    client: TestClient, photo: Image.Image
) -> None:
    assert (
        upload(client, (SHARED_IMAGES / "dev" / PHOTO).read_bytes(), image_id="original").status_code == 201
    )
    meme = _save(_outlined_text(photo, [("WHEN THE EVAL", 0.08), ("HOLDS OUT", 0.92)], 0.1))
    assert upload(client, meme, image_id="meme").status_code == 201
    response = client.get("/images/meme/duplicates")
    assert ids(response) == ["original"]
    groups = client.get("/duplicates").json()["groups"]
    assert [[m["id"] for m in g["members"]] for g in groups] == [["meme", "original"]]
    assert client.get("/duplicates", params={"confirm": "false"}).json()["groups"] == []


def test_records_without_a_centre_match_by_the_whole_picture(settings: Settings) -> None:
    """Records hashed before the centres were (or given by hash) keep matching as they did."""
    data = _save(Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (200, 1)), "L").convert("RGB"))
    hashes = hash_image_bytes(data, max_pixels=10**8)
    store = open_store(settings)
    with store.writing() as write:
        write.add(
            [
                NewImage(
                    id="older",
                    dhash=hashes.dhash,
                    width=hashes.width,
                    height=hashes.height,
                    dhash_vertical=hashes.dhash_vertical,
                    dct_hash=hashes.dct_hash,
                    hashing_version=HASHING_VERSION - 1,
                )
            ]
        )
    store.close()
    with TestClient(create_app(settings)) as client:
        assert ids(search(client, data)) == ["older"]


# One other cut of image 1: dHash 6, DCT hash 7.
CUT = (np.array([1], dtype=np.int64), np.array([6], dtype=np.uint64), np.array([7], dtype=np.uint64))


def test_the_snapshot_keeps_every_index(tmp_path: Path) -> None:
    index = ImageIndex()
    keys = np.array([1, 2, 3], dtype=np.int64)
    index.add(
        StoredHashes(
            keys,
            np.array([0, 1 << 63, 7], dtype=np.uint64),
            keys[:2],
            np.array([0xFF, 0xF0F0], dtype=np.uint64),
            keys[1:],
            np.array([0xAB, 0xCD], dtype=np.uint64),
            np.array([2, 3, 3], dtype=np.int64),  # image 3 has two other cuts
            np.array([0x11, 0x22, 0x33], dtype=np.uint64),
            np.array([0x44, 0x55, 0x66], dtype=np.uint64),
        )
    )
    index.remove(np.array([2]))
    path = tmp_path / "index"
    index.save(path)
    loaded = ImageIndex()
    loaded.load(path)
    assert len(loaded) == 2
    assert loaded.search([7, 0x11, 0x33], [0xAB, 0xCD, 0x55], [0xFF, 0xF0F0], max_distance=0) == Found(
        [[(3, 0)], [], [(3, 0)]], [[], [(3, 0)], [(3, 0)]], [[(1, 0)], []]
    )


def test_cuts_past_those_an_image_can_have_are_left_out() -> None:
    """Doppel makes MAX_CUTS at most; one more would take the next image's key in the cuts' indexes."""
    index = ImageIndex()
    keys, five = np.array([1, 2], dtype=np.int64), np.array([5, 5], dtype=np.uint64)
    cut_keys = np.ones(MAX_CUTS + 1, dtype=np.int64)
    cuts = np.arange(6, 7 + MAX_CUTS, dtype=np.uint64)
    index.add(StoredHashes(keys, five, keys, five, keys, five, cut_keys, cuts, cuts))
    assert len(index) == 2
    assert index.search(cuts.tolist(), [], [], max_distance=0).wholes == [[(1, 0)]] * MAX_CUTS + [[]]


def test_an_image_removed_takes_every_cut_it_can_have_out_of_the_index() -> None:
    index = ImageIndex()
    keys, five = np.array([1, 2], dtype=np.int64), np.array([5, 5], dtype=np.uint64)
    cut_keys = np.array([1] * MAX_CUTS + [2], dtype=np.int64)
    cuts = np.arange(6, 7 + MAX_CUTS, dtype=np.uint64)  # image 1's, then image 2's one
    index.add(StoredHashes(keys, five, keys, five, keys, five, cut_keys, cuts, cuts))
    index.remove(np.array([1]))
    assert index.search(cuts.tolist(), cuts.tolist(), [], max_distance=0) == Found(
        [[]] * MAX_CUTS + [[(2, 0)]], [[]] * MAX_CUTS + [[(2, 0)]], []
    )


def test_a_snapshot_of_another_layout_is_refused_and_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    """A snapshot whose cuts are keyed for another number of cuts an image (before version 6, two)
    would name other images: it is refused, and the index rebuilt from the store."""
    index = ImageIndex()
    key, five = np.array([1], dtype=np.int64), np.array([5], dtype=np.uint64)
    index.add(StoredHashes(key, five, key, five, key, five, *CUT))
    index.save(tmp_path / "current")
    older = tmp_path / "older"
    with open(older, "wb") as out:  # the five indexes as version 5 wrote them, with no layout first
        out.write((tmp_path / "current").read_bytes()[len(SNAPSHOT_MAGIC) :])
    with pytest.raises(ValueError, match="this version's indexes"):
        index.load(older)
    assert index.search([5, 6], [5, 7], [5], max_distance=0) == Found(
        [[(1, 0)], [(1, 0)]], [[(1, 0)], [(1, 0)]], [[(1, 0)]]
    )


@pytest.mark.parametrize(
    "held",
    [("whole",), ("whole", "centre"), ("whole", "dct", "centre")],
    ids=["version 2", "version 3", "version 4"],
)
def test_an_older_snapshot_is_refused_and_leaves_the_index_as_it_was(
    tmp_path: Path, held: tuple[str, ...]
) -> None:
    """A snapshot written before the centres were indexed holds the whole pictures' index alone;
    one written before the DCT hashes were, the whole pictures' and the centres'; one written
    before the cuts were, no cuts' indexes."""
    index = ImageIndex()
    key, five = np.array([1], dtype=np.int64), np.array([5], dtype=np.uint64)
    index.add(StoredHashes(key, five, key, five, key, five, *CUT))
    older = tmp_path / "older"
    with open(older, "wb") as out:
        for name in held:
            getattr(index, name).frozen().write(out)
    with pytest.raises(ValueError):
        index.load(older)
    assert index.search([5, 6], [5, 7], [5], max_distance=0) == Found(
        [[(1, 0)], [(1, 0)]], [[(1, 0)], [(1, 0)]], [[(1, 0)]]
    )
