"""Progress on stderr: tqdm's bar on a terminal, else one plain line every few seconds (a log
or a pipe would otherwise fill with carriage returns)."""

import sys
from typing import Never, TextIO

from tqdm import tqdm

PLAIN_INTERVAL_S = 5.0


class _Lines:
    """A file for tqdm that writes each of its status lines as a line of its own."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self._out.write(text + "\n")

    def flush(self) -> None:
        self._out.flush()


def progress(total: int, *, label: str, initial: int = 0, out: TextIO | None = None) -> "tqdm[Never]":
    """A progress meter of `total` files: done / total, rate and time left."""
    out = out or sys.stderr
    if out.isatty():
        return tqdm(total=total, initial=initial, desc=label, unit="file", file=out, dynamic_ncols=True)
    return tqdm(
        total=total,
        initial=initial,
        desc=label,
        unit="file",
        file=_Lines(out),
        mininterval=PLAIN_INTERVAL_S,
        maxinterval=PLAIN_INTERVAL_S,
        ncols=100,
        ascii=True,
    )
