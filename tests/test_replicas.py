"""Several server processes on one store: real `python main.py` processes on one SQLite file, on one
PostgreSQL database (each with its own data folder, as on separate machines), and
`uvicorn main:app --workers 2`. What one process writes, the others serve; a copy refused with
on_duplicate=reject is stored once however the copies are spread; a replica killed with SIGKILL
loses nothing acknowledged and catches up when it comes back; a database that goes away gets a
clear 503 and the service recovers by itself.

Timeouts here only stop a hung run; nothing asserts on time (bench/replicas.py measures the lag).
"""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import encode, make_photo, search, upload
from live_server import LiveServer
from pg import Relay

EVENTUALLY_S = 60.0
IO_TIMEOUT_S = 60.0


def eventually(check: Callable[[], bool]) -> bool:
    """Whether `check()` comes true, asking again until it does (or a hung run is given up)."""
    deadline = time.monotonic() + EVENTUALLY_S
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def photo(seed: int) -> bytes:
    return encode(make_photo(seed, (96, 72)))


def found_ids(client: httpx.Client, data: bytes) -> list[str]:
    response = search(client, data)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return [match["id"] for match in response.json()["matches"]]


StartReplica = Callable[[str], LiveServer]


@pytest.fixture(params=["sqlite", "postgres"])
def start(request: pytest.FixtureRequest, tmp_path: Path) -> StartReplica:
    """Starts replica NAME: all on one SQLite file, or on one PostgreSQL database with a data folder
    (for index snapshots) each, as on separate machines."""
    if request.param == "sqlite":
        return lambda name: LiveServer(tmp_path / "data")
    url: str = request.getfixturevalue("postgres_url")
    return lambda name: LiveServer(tmp_path / name, database_url=url)


@pytest.fixture
def two_replicas(start: StartReplica) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with start("a") as a, start("b") as b:
        with (
            httpx.Client(base_url=a.url, timeout=IO_TIMEOUT_S) as client_a,
            httpx.Client(base_url=b.url, timeout=IO_TIMEOUT_S) as client_b,
        ):
            yield client_a, client_b


def test_what_one_replica_writes_the_other_serves(two_replicas: tuple[httpx.Client, httpx.Client]) -> None:
    a, b = two_replicas
    data = photo(1)
    assert upload(a, data, "one").status_code == 201  # type: ignore[arg-type]
    assert eventually(lambda: found_ids(b, data) == ["one"])
    assert b.get("/images/one").status_code == 200

    assert b.delete("/images/one").status_code == 204
    # A's index may still hold it for a moment, but A reads every hit from the store
    assert found_ids(a, data) == []
    assert a.get("/images/one").status_code == 404
    assert eventually(lambda: a.get("/health").json()["images"] == 0)

    # a replace through B: A finds the new picture under the id, never the old one
    assert upload(b, data, "two").status_code == 201  # type: ignore[arg-type]
    assert b.put("/images/two", files={"file": ("x", photo(2))}).status_code == 200
    assert found_ids(a, data) == []
    assert eventually(lambda: found_ids(a, photo(2)) == ["two"])


def test_adds_on_one_replica_interleaved_with_searches_on_the_other(
    two_replicas: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = two_replicas
    for n in range(40):
        data = photo(100 + n)
        assert upload(a, data, f"i{n}").status_code == 201  # type: ignore[arg-type]
        assert eventually(lambda data=data, n=n: found_ids(b, data) == [f"i{n}"]), n  # type: ignore[misc]
    assert a.get("/health").json()["images"] == 40
    assert eventually(lambda: b.get("/health").json()["images"] == 40)
    ready = b.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["position"] == 40


def test_a_copy_sent_to_both_replicas_at_once_is_stored_once(
    two_replicas: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = two_replicas
    for seed in (7, 8):
        data = photo(seed)
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(
                    lambda n, data=data: upload((a, b)[n % 2], data, on_duplicate="reject").status_code,  # type: ignore[arg-type]
                    range(16),
                )
            )
        assert sorted(statuses) == [201] + [409] * 15
    assert len(a.get("/images").json()["items"]) == 2


def test_a_replica_killed_during_writes_loses_nothing_and_catches_up(start: StartReplica) -> None:
    acknowledged: list[str] = []
    with start("a") as a, httpx.Client(base_url=a.url, timeout=IO_TIMEOUT_S) as client_a:
        b = start("b")
        stop_writing = threading.Event()

        def write_to_b() -> None:
            with httpx.Client(base_url=b.url, timeout=IO_TIMEOUT_S) as client_b:
                for n in range(10_000):
                    if stop_writing.is_set():
                        return
                    try:
                        response = upload(client_b, photo(200 + n), f"b{n}")  # type: ignore[arg-type]
                    except httpx.TransportError:
                        return  # killed
                    assert response.status_code == 201
                    acknowledged.append(f"b{n}")

        writer = threading.Thread(target=write_to_b)
        writer.start()
        assert eventually(lambda: len(acknowledged) >= 5)
        b.process.kill()
        b.stop()
        writer.join(IO_TIMEOUT_S)
        stop_writing.set()

        # A keeps serving, and holds every write B acknowledged
        assert client_a.get("/health/ready").status_code == 200
        for image_id in acknowledged:
            assert client_a.get(f"/images/{image_id}").status_code == 200, image_id
        assert upload(client_a, photo(1), "while-b-was-down").status_code == 201  # type: ignore[arg-type]

        with (
            start("b") as again,
            httpx.Client(base_url=again.url, timeout=IO_TIMEOUT_S) as client_b,
        ):
            stored = len(client_a.get("/images", params={"limit": 1000}).json()["items"])
            assert client_b.get("/health").json()["images"] == stored
            assert found_ids(client_b, photo(1)) == ["while-b-was-down"]
            assert found_ids(client_b, photo(200)) == ["b0"]


def test_uvicorn_workers_on_one_data_folder_agree(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", workers=2) as server:
        pids = set()
        for n in range(20):
            # a new connection each time, so the kernel spreads them over both workers
            with httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as client:
                assert upload(client, photo(300 + n), f"w{n}").status_code == 201  # type: ignore[arg-type]
        for n in range(20):
            with httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as client:
                assert eventually(lambda client=client, n=n: found_ids(client, photo(300 + n)) == [f"w{n}"])  # type: ignore[misc]
                assert eventually(lambda client=client: client.get("/health").json()["images"] == 20)  # type: ignore[misc]
        data = photo(9)

        def add_copy(_: int) -> int:
            with httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as client:
                return upload(client, data, on_duplicate="reject").status_code  # type: ignore[arg-type]

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert sorted(pool.map(add_copy, range(16))) == [201] + [409] * 15
        pids = {
            line.split("[")[1].rstrip("]\n")
            for line in server.log.splitlines()
            if "Started server process" in line
        }
        assert len(pids) == 2


# --- the database goes away ----------------------------------------------------------------------


def test_postgres_away_answers_503_and_the_service_recovers_by_itself(
    postgres_url: str, tmp_path: Path
) -> None:
    proxy = Relay(postgres_url)
    with (
        LiveServer(tmp_path, database_url=proxy.url) as server,
        httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as client,
    ):
        for n in range(5):
            assert upload(client, photo(400 + n), f"p{n}").status_code == 201  # type: ignore[arg-type]

        proxy.cut()
        refused = upload(client, photo(500), "during")  # type: ignore[arg-type]
        assert refused.status_code == 503, refused.text
        assert "database" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1"
        assert search(client, photo(400)).status_code == 503  # type: ignore[arg-type]
        assert eventually(lambda: client.get("/health/ready").status_code == 503)
        assert client.get("/health/live").status_code == 200

        proxy.restore()
        assert eventually(lambda: upload(client, photo(500), "after").status_code == 201)  # type: ignore[arg-type]
        assert eventually(lambda: client.get("/health/ready").status_code == 200)
        for n in range(5):
            assert found_ids(client, photo(400 + n)) == [f"p{n}"]
        assert client.get("/images/during").status_code == 404
        proxy.cut()
