"""Fixtures: settings on a temporary data folder, a started app, and PostgreSQL schemas."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pg
import psycopg
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.factory import create_app


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on a temporary data folder, once with the SQLite store and once with PostgreSQL."""
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "data")
    url: str = request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings of the default store, a SQLite file in a temporary data folder."""
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def postgres_server() -> str:
    """The server of DOPPEL_TEST_DATABASE_URL. Unset: the test is skipped; set but unreachable: it
    fails, so that CI cannot pass without running the PostgreSQL tests."""
    server = pg.server_url()
    if server is None:
        pytest.skip(pg.SKIP_REASON)
    try:
        psycopg.connect(server, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"{pg.ENV} is set but its server cannot be reached: {str(exc).splitlines()[0]}")
    return server


@pytest.fixture
def make_postgres_url(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Makes URLs of fresh schemas on the test server (each dropped after the test)."""
    with ExitStack() as schemas:
        yield lambda: schemas.enter_context(pg.fresh_schema(postgres_server))


@pytest.fixture
def postgres_url(make_postgres_url: Callable[[], str]) -> str:
    """A URL whose connections use a schema of their own on the test server."""
    return make_postgres_url()
