"""What the benchmarks share: servers started on a free local port, timing, the shared images, a
PostgreSQL database of their own.

Benchmarks are scripts, not tests: each prints its figures and their ratio to a reference
measured in the same run, the two interleaved and repeated, medians reported, because the
machine is shared and absolute timings are noisy. Each stops the servers and drops the databases it
started, also on Ctrl-C or SIGTERM (see `stop_on_sigterm`).
"""

import math
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 120.0
# The PostgreSQL server the benchmarks use unless told otherwise: its database is only connected to,
# to create (and afterwards drop) a database of the benchmark's own.
DEFAULT_POSTGRES_URL = os.environ.get(
    "DOPPEL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def shared_images(folder: str) -> list[Path]:
    """The images of a shared folder, sorted; exits with a message when the folder is missing."""
    path = SHARED_IMAGES / folder
    if not path.is_dir():
        sys.exit(f"the shared images are not at {path} (the read-only shared/ folder beside the repo)")
    return sorted(p for p in path.iterdir() if p.suffix != ".tsv")


def status_bytes(field: str, pid: int | str = "self") -> int:
    """A memory field of a process's /proc status (VmRSS, VmHWM...), in bytes; this process's by default."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A service started as a subprocess on 127.0.0.1 and a free port; stopped on exit.

    "{port}" in `argv` or in the values of `env` becomes the port. Its output goes to a temporary
    file (`log`), never to a pipe nobody reads, which would stall a talkative server.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
        open_files: int | None = None,
    ) -> None:
        """`cwd`: the tree to run (another commit's, see `checkout`); `open_files` lowers the
        process's open-file limit."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        port = str(self.port)
        self._output = tempfile.TemporaryFile()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [arg.replace("{port}", port) for arg in argv],
            cwd=cwd,
            env={**os.environ, **{k: v.replace("{port}", port) for k, v in (env or {}).items()}},
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else lambda: _limit_open_files(open_files),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        """Everything the process has written so far (stdout and stderr)."""
        self._output.seek(0)
        return self._output.read().decode("utf-8", "replace")

    def wait_ready(self, path: str = "/health", timeout_s: float = READY_TIMEOUT_S) -> float:
        """Seconds from the start of the process until `path` answers 200."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.url} exited: {self.log[-2000:]}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.url} not ready after {timeout_s} s: {self.log[-2000:]}")

    def rss_bytes(self) -> int:
        """Resident memory of the server process (VmRSS)."""
        return status_bytes("VmRSS", self.process.pid)

    def peak_rss_bytes(self) -> int:
        """The most resident memory the server process has had (VmHWM)."""
        return status_bytes("VmHWM", self.process.pid)

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> float:
        """SIGTERM (a clean stop: Doppel saves its index snapshot) and wait; seconds until it exited.
        Raises if it has not exited in `timeout_s` or exited with an error."""
        start = time.perf_counter()
        self.process.terminate()
        returncode = self.process.wait(timeout=timeout_s)
        elapsed = time.perf_counter() - start
        if returncode not in (0, -signal.SIGTERM):  # uvicorn re-raises the signal once it has stopped
            raise RuntimeError(f"{self.url} exited with {returncode} on SIGTERM: {self.log[-2000:]}")
        return elapsed

    def stop(self) -> None:
        """End the process if it still runs: SIGTERM, and SIGKILL after 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def doppel(
    data_dir: Path, *, database_url: str | None = None, log_level: str = "warning", **settings: str
) -> Server:
    """Doppel as it is deployed: `python main.py`, its store in `data_dir` (SQLite, by default) or at
    `database_url`, its index snapshots in `data_dir`; more DOPPEL_ settings as keywords."""
    return Server([sys.executable, "main.py"], env=doppel_env(data_dir, database_url, log_level, settings))


def doppel_env(
    data_dir: Path, database_url: str | None, log_level: str, settings: dict[str, str]
) -> dict[str, str]:
    """The environment of `doppel`'s server (its port is "{port}")."""
    env = {
        "DOPPEL_DATA_DIR": str(data_dir),
        "DOPPEL_HOST": "127.0.0.1",
        "DOPPEL_PORT": "{port}",
        "DOPPEL_LOG_LEVEL": log_level,
    }
    if database_url is not None:
        env["DOPPEL_DATABASE_URL"] = database_url
    return env | {f"DOPPEL_{name.upper()}": value for name, value in settings.items()}


def doppel_of(
    tree: Path,
    data_dir: Path,
    settings: dict[str, str],
    *,
    log_level: str = "warning",
    open_files: int | None = None,
) -> Server:
    """`doppel` from the code in `tree` (see `checkout`), with its open-file limit lowered to
    `open_files` if given."""
    env = doppel_env(data_dir, None, log_level, settings)
    return Server([sys.executable, "main.py"], env=env, cwd=tree, open_files=open_files)


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The repository's files at commit `ref` in a temporary folder, to run as a reference."""
    with tempfile.TemporaryDirectory(prefix="doppel-ref-") as folder:
        archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new empty database on the PostgreSQL server that `server_url` reaches (its own database is
    only connected to), dropped afterwards, also on Ctrl-C; yields the new database's URL.

    A database rather than a schema: LISTEN/NOTIFY channels are per database, so other users of the
    server (tests running meanwhile) do not wake the benchmark's replicas, nor it theirs."""
    import psycopg  # only the PostgreSQL runs need it
    from psycopg import sql

    name = f"doppel_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            # WITH (FORCE): a server the benchmark could not stop must not keep the database alive.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def is_postgres(url: str | None) -> bool:
    return url is not None and url.startswith(("postgresql://", "postgres://"))


def stop_on_sigterm() -> None:
    """Make SIGTERM end the benchmark as Ctrl-C does: by an exception, so that every `with` and
    `finally` stops its servers and drops its databases on the way out."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def spread(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    """'median (min-max)' of repeated measurements, e.g. '1.23 s (1.20-1.31)'."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} {unit}"
    low, high = min(values), max(values)
    return f"{statistics.median(values):.{digits}f} {unit} ({low:.{digits}f}-{high:.{digits}f})"


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def timed(action: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_threads(threads: Sequence[threading.Thread]) -> float:
    """Start the threads, wait for all of them; the seconds that took."""
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start
