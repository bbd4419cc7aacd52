"""The files under a list of folders: each file once, however many links lead to it."""

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Found:
    """A regular file: its path as reached, that path relative to the folder given, size and mtime."""

    path: Path
    relative: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class Walk:
    files: list[Found]
    skipped: list[Skipped]


def walk(folders: list[Path], *, hidden: bool = False) -> Walk:
    """Every regular file under `folders`, recursively, in path order. Symbolic links are followed,
    but a folder or file reached a second time (a loop, two links to one file, a folder given twice)
    is left out. Names starting with '.' are left out unless `hidden`. What cannot be read (a
    broken link, a folder without permission, a device) is listed as skipped with the reason."""
    files: list[Found] = []
    skipped: list[Skipped] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of every folder and file taken
    for folder in folders:
        try:
            info = folder.stat()
        except OSError as exc:
            skipped.append(Skipped(folder, _reason(exc)))
            continue
        if stat.S_ISREG(info.st_mode):  # a file given by name
            if _first_time(info, seen):
                files.append(Found(folder, folder.name, info.st_size, info.st_mtime_ns))
            continue
        if _first_time(info, seen):
            _walk_folder(folder, folder, hidden, seen, files, skipped)
    return Walk(files, skipped)


def _walk_folder(
    root: Path,
    folder: Path,
    hidden: bool,
    seen: set[tuple[int, int]],
    files: list[Found],
    skipped: list[Skipped],
) -> None:
    try:
        with os.scandir(folder) as entries:
            names = sorted(entry.name for entry in entries)
    except OSError as exc:
        skipped.append(Skipped(folder, _reason(exc)))
        return
    for name in names:
        if name.startswith(".") and not hidden:
            continue
        path = folder / name
        try:
            info = path.stat()  # follows links
        except OSError as exc:
            skipped.append(Skipped(path, _reason(exc)))
            continue
        if not _first_time(info, seen):
            continue
        if stat.S_ISDIR(info.st_mode):
            _walk_folder(root, path, hidden, seen, files, skipped)
        elif stat.S_ISREG(info.st_mode):
            files.append(Found(path, path.relative_to(root).as_posix(), info.st_size, info.st_mtime_ns))
        else:
            skipped.append(Skipped(path, "not a regular file"))


def _first_time(info: os.stat_result, seen: set[tuple[int, int]]) -> bool:
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "cannot be read: a broken link or a file that went away"
    return f"cannot be read: {exc.strerror or exc}"
