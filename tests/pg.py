"""PostgreSQL for the tests: the server from DOPPEL_TEST_DATABASE_URL, a fresh schema per test, and a
relay that can cut the connections to the server, as a restart or a network fault would."""

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV = "DOPPEL_TEST_DATABASE_URL"
SKIP_REASON = f"{ENV} is not set: PostgreSQL tests need a server (see .ci/run)"


def server_url() -> str | None:
    return os.environ.get(ENV) or None


def with_query(url: str, **parameters: str) -> str:
    """`url` with these query parameters added (libpq reads them as connection options)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(parameters)) if q)
    return urlunsplit(parts._replace(query=query))


@contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    """A new empty schema, dropped afterwards; yields a URL whose connections (pooled or not) use it.
    Its connections also carry the schema's name as application_name, to find them on the server."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield with_query(server, options=f"-csearch_path={name}", application_name=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def application_name(url: str) -> str:
    return dict(q.split("=", 1) for q in urlsplit(url).query.split("&"))["application_name"]


def terminate(url: str, *, query: str | None = None) -> int:
    """End the server processes of the connections made with `url` (those last running `query`, if
    given), as a server restart would; returns once they are gone, with how many there were."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid() AND (%s::text IS NULL OR query = %s)",
            (application_name(url), query, query),
        ).fetchall()
    assert all(row[0] for row in rows), "a server process outlived pg_terminate_backend's wait"
    return len(rows)


def waiting_for_a_lock(url: str) -> bool:
    """Whether one of the connections made with `url` is waiting for a lock on the server."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application_name(url),),
        ).fetchone()
    assert row is not None
    return bool(row[0])


class Relay:
    """A TCP relay on 127.0.0.1 to the server. `cut()` ends every connection through it and refuses new
    ones; `restore()` accepts them again on the same port."""

    def __init__(self, server: str) -> None:
        parts = urlsplit(server)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        user, at, _ = parts.netloc.rpartition("@")
        self.url = urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{self.port}"))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._serve()

    def cut(self) -> None:
        with suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
