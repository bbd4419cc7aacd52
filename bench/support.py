"""What the benchmarks share: servers started on a free local port, timing, the shared images.

Benchmarks are scripts, not tests: each prints its figures and their ratio to a reference
measured in the same run, the two interleaved and repeated, medians reported, because the
machine is shared and absolute timings are noisy.
"""

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
READY_TIMEOUT_S = 60.0


def shared_images(folder: str) -> list[Path]:
    """The images of a shared folder, sorted; exits with a message when the folder is missing."""
    path = SHARED_IMAGES / folder
    if not path.is_dir():
        sys.exit(f"the shared images are not at {path} (the read-only shared/ folder beside the repo)")
    return sorted(p for p in path.iterdir() if p.suffix != ".tsv")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A service started as a subprocess on 127.0.0.1 and a free port; stopped on exit.

    "{port}" in `argv` or in the values of `env` becomes the port.
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        port = str(self.port)
        self.process = subprocess.Popen(
            [arg.replace("{port}", port) for arg in argv],
            cwd=REPO,
            env={**os.environ, **{k: v.replace("{port}", port) for k, v in (env or {}).items()}},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, path: str = "/health") -> float:
        """Seconds from the start of the process until `path` answers 200."""
        deadline = time.perf_counter() + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                assert self.process.stderr is not None  # started with stderr=PIPE
                raise RuntimeError(f"{self.url} exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.url} not ready after {READY_TIMEOUT_S} s")

    def rss_bytes(self) -> int:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def doppel(data_dir: Path) -> Server:
    """Doppel as it is deployed: `python main.py`, its store in `data_dir`."""
    env = {
        "DOPPEL_DATA_DIR": str(data_dir),
        "DOPPEL_HOST": "127.0.0.1",
        "DOPPEL_PORT": "{port}",
        "DOPPEL_LOG_LEVEL": "warning",
    }
    return Server([sys.executable, "main.py"], env=env)


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def timed(action: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
