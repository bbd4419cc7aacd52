"""`index`: load the images of folders into a running service through POST /images/batch,
sending only what it does not hold yet, so a run can be started again after an interruption."""

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx

from app.errors import InvalidInput
from app.imaging.hashing import NOT_AN_IMAGE
from app.scan.progress import progress
from app.scan.scanner import SNIFF_BYTES, might_be_image
from app.scan.walk import Found, walk
from app.validation import check_image_id

MAX_FILES = 100  # the service's limit per batch
# Bytes of files per request; a service with a lower DOPPEL_MAX_BATCH_BYTES answers 413 and the
# batch is sent again in halves.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
PAGE = 1000  # ids per GET /images
RETRIES = 10  # of a request the service answers 503 (its database busy or away)
TIMEOUT_S = 300.0


class IndexingFailed(Exception):
    """The service cannot be used (unreachable, the API key refused, a bad answer): stop."""


@dataclass(frozen=True, slots=True)
class _Item:
    found: Found
    id: str
    metadata: str


@dataclass
class IndexReport:
    stored: int = 0  # sent and stored by this run
    present: int = 0  # already held by the service
    refused: list[tuple[Path, str]] = field(default_factory=list)  # skipped here or refused there

    def summary(self) -> str:
        refused = len(self.refused)
        return f"{self.stored} images stored, {self.present} already there, {refused} refused or skipped"


def path_id(relative: str) -> str:
    """The id of a file at `relative` (a '/'-separated path): ids cannot hold '/', so it is written
    %2F, and '%' is written %25 to keep two paths from meeting."""
    return relative.replace("%", "%25").replace("/", "%2F")


def index_folders(
    folders: list[Path],
    *,
    url: str,
    id_from: Literal["path", "sha256"],
    metadata: str,
    hidden: bool,
    batch_size: int,
    api_key: str | None,
    progress_out: TextIO | None = None,
) -> IndexReport:
    """Send the images under `folders` that the service at `url` lacks; raises IndexingFailed."""
    extra = _metadata_object(metadata)
    walked = walk(folders, hidden=hidden)
    report = IndexReport(refused=[(s.path, s.reason) for s in walked.skipped])
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_S) as client:
        held = _stored_ids(client)
        items = _items(walked.files, id_from, extra, held, report)
        with progress(len(items), label="sending", out=progress_out) as bar:
            for chunk in _chunks(items, batch_size):
                _send(client, chunk, report)
                bar.update(len(chunk))
    return report


def _metadata_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IndexingFailed(f"--metadata is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise IndexingFailed("--metadata must be a JSON object")
    return value


def _items(
    files: list[Found], id_from: str, extra: dict[str, Any], held: set[str], report: IndexReport
) -> list[_Item]:
    """The files to send: images, with a valid id the service does not hold, each id once."""
    items: list[_Item] = []
    taken: dict[str, Path] = {}
    for found in files:
        try:
            with found.path.open("rb") as handle:
                head = handle.read(SNIFF_BYTES)
                if not might_be_image(found.path, head):
                    report.refused.append((found.path, NOT_AN_IMAGE))
                    continue
                if id_from == "sha256":
                    image_id = hashlib.sha256(head + handle.read()).hexdigest()
                else:
                    image_id = check_image_id(path_id(found.relative))
        except OSError as exc:
            report.refused.append((found.path, f"cannot be read: {exc.strerror or exc}"))
            continue
        except InvalidInput as exc:
            report.refused.append(
                (found.path, f"its path is not a valid id ({exc.detail}); try --id-from sha256")
            )
            continue
        if image_id in held:
            report.present += 1
        elif image_id in taken:
            report.refused.append((found.path, f"id {image_id!r} is also that of {taken[image_id]}"))
        else:
            taken[image_id] = found.path
            items.append(
                _Item(found, image_id, json.dumps(extra | {"path": found.relative}, ensure_ascii=False))
            )
    return items


def _chunks(items: list[_Item], batch_size: int) -> Iterator[list[_Item]]:
    chunk: list[_Item] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) >= batch_size or size + item.found.size > MAX_REQUEST_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.found.size
    if chunk:
        yield chunk


def _stored_ids(client: httpx.Client) -> set[str]:
    """Every id the service holds, a page at a time."""
    ids: set[str] = set()
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": PAGE} | ({"after": after} if after is not None else {})
        response = _request(client, "GET", "/images", params=params)
        if response.status_code != 200:
            raise IndexingFailed(f"GET /images answered {response.status_code}: {_detail(response)}")
        page = response.json()
        ids.update(record["id"] for record in page["items"])
        after = page["next"]
        if after is None:
            return ids


def _send(client: httpx.Client, chunk: list[_Item], report: IndexReport) -> None:
    """Store the chunk's files; a file the service refuses is reported and the rest sent again."""
    pending = chunk
    while pending:
        try:
            contents = [item.found.path.read_bytes() for item in pending]
        except OSError:  # a file went away since the walk: find which, one at a time
            if len(pending) == 1:
                report.refused.append((pending[0].found.path, "cannot be read any more"))
                return
            _halves(client, pending, report)
            return
        response = _request(
            client,
            "POST",
            "/images/batch",
            files=[
                ("file", (item.found.path.name, data, "application/octet-stream"))
                for item, data in zip(pending, contents, strict=True)
            ],
            data={"id": [item.id for item in pending], "metadata": [item.metadata for item in pending]},
        )
        if response.status_code == 201:
            report.stored += len(pending)
            return
        faults = _item_faults(response)
        if faults:
            for index, fault in faults.items():
                if fault.get("status") == 409:  # stored since the listing (another run, another client)
                    report.present += 1
                else:
                    report.refused.append(
                        (pending[index].found.path, f"{fault.get('status')}: {fault.get('reason')}")
                    )
            pending = [item for n, item in enumerate(pending) if n not in faults]
        elif len(pending) > 1:  # refused as a whole (too large, say): halves until the fault is found
            _halves(client, pending, report)
            return
        else:
            report.refused.append((pending[0].found.path, f"{response.status_code}: {_detail(response)}"))
            return


def _halves(client: httpx.Client, items: list[_Item], report: IndexReport) -> None:
    middle = len(items) // 2
    _send(client, items[:middle], report)
    _send(client, items[middle:], report)


def _item_faults(response: httpx.Response) -> dict[int, dict[str, Any]]:
    """The refused items a batch's answer names, by their position in the batch."""
    detail = _json(response).get("detail")
    if not isinstance(detail, list):
        return {}
    return {f["index"]: f for f in detail if isinstance(f, dict) and isinstance(f.get("index"), int)}


def _request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """The answer to a request, after waiting out 503s; raises IndexingFailed for an unreachable
    service or a refused API key."""
    for _ in range(RETRIES):
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise IndexingFailed(
                f"cannot reach {client.base_url}: {exc!r}; what was stored is kept: run the command "
                "again to go on"
            ) from exc
        if response.status_code in (401, 403):
            raise IndexingFailed(f"the service refused the API key (set DOPPEL_API_KEY): {_detail(response)}")
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise IndexingFailed(f"the service kept answering 503: {_detail(response)}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(response: httpx.Response) -> str:
    return str(_json(response).get("detail", response.text[:300]))
