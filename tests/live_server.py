"""The real service, `python main.py`, in a subprocess on 127.0.0.1 and a port the OS picks.

Shared by the tests that need a real server (crashes, signals, streaming, logs, memory) and by
bench/load.py. The timeouts here only stop a hung run; no test asserts on time.
"""

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0


class LiveServer:
    """One run of the server process; its whole output (stdout and stderr) is kept in `log`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 1,
        under: Sequence[str] = (),
        open_files: int | None = None,
        **settings: str,
    ) -> None:
        """`python main.py` on `data_dir` with the given DOPPEL_ settings, or with `workers` > 1,
        `uvicorn main:app --workers N` (each worker a process of its own); run by the command
        `under` if given (which ends by running the command given after its own arguments);
        `open_files` lowers its open-file limit."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOPPEL_")}
        env |= {"DOPPEL_HOST": "127.0.0.1", "DOPPEL_PORT": "0", "DOPPEL_DATA_DIR": str(data_dir)}
        env |= {f"DOPPEL_{name.upper()}": value for name, value in settings.items()}
        command = [sys.executable, "main.py"]
        if workers > 1:
            command = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", "0"]
            command += ["--workers", str(workers)]
        command = [*under, *command]
        self._startups_expected = workers
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends uvicorn's workers with it
            preexec_fn=None if open_files is None else lambda: _limit_open_files(open_files),
        )
        self._lines: list[str] = []
        self._port: int | None = None
        self._startups = 0
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        if not self._listening.wait(START_TIMEOUT_S) or self._port is None:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the server did not start:\n{self.log}")
        self.port: int = self._port
        self.url: str = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return "".join(self._lines)

    def signal(self, signum: signal.Signals) -> int:
        """Send `signum`, wait for the process to end and for its output to close; its return code."""
        self.process.send_signal(signum)
        return self.wait()

    def wait(self) -> int:
        """Wait for the process to end and for its output to close; its return code."""
        returncode = self.process.wait(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        return returncode

    def stop(self) -> None:
        """End the process if it still runs (SIGKILL: tests that stop it cleanly use `signal`)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            self._lines.append(line)
            found = _LISTENING.search(line)
            if found and self._port is None:
                self._port = int(found.group(1))
            self._startups += "Application startup complete." in line
            if self._port is not None and self._startups >= self._startups_expected:
                self._listening.set()
        self._listening.set()  # the process ended: stop waiting for it


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def peak_rss_bytes(pid: int) -> int:
    """The highest resident memory the process has had so far (VmHWM, Linux)."""
    return _status_kib(pid, "VmHWM") * 1024


def rss_bytes(pid: int) -> int:
    """The process's resident memory now (VmRSS, Linux)."""
    return _status_kib(pid, "VmRSS") * 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


has_proc = Path("/proc/self/status").is_file()
