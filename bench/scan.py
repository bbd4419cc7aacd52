"""`python main.py scan` against findimagedupes on one folder of 1,000 ordinary images.

The folder: the photos of shared/images/dev, each shrunk to at most 1600 px (the originals; not
large/, whose photos are larger copies of some of dev's), and edited copies of them made with the
edits of `python main.py eval` (app/evaluation.py; all but 'resize 200%', which would exceed
1600 px), drawn at random (seeded) until the folder holds --files images. Files made from one
original are the true duplicate pairs.

Timed, start to finish as a user runs them, in turns (--rounds, medians): findimagedupes -R -q DIR
(no fingerprint database: a cold run), `python main.py scan DIR` with a new cache (cold) and again
with that cache (warm). Targets (issue 13): cold at most half of findimagedupes, warm under 2 s.
Then pair precision and recall of each tool's groups (every two members of a group are a pair),
also for `scan --all-orientations`, and the recall of the pairs whose files are originals or copies
by benign edits (eval's kind: not crops, letterbox, rotations or flips).

Run: python bench/scan.py [--files 1000] [--rounds 3] [--folder DIR (kept and reused)]
"""

import argparse
import itertools
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from support import REPO, shared_images

sys.path.insert(0, str(REPO))
from app.evaluation import EDITS, viewed  # noqa: E402

MAX_SIDE = 1600
SEED = 13
SKIPPED_EDITS = {"resize 200%"}


def make_original(job: tuple[int, Path, Path]) -> Path:
    n, source, folder = job
    image = viewed(source.read_bytes())
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    path = folder / f"o{n:03d}.jpg"
    image.save(path, "JPEG", quality=90)
    return path


def make_copy(job: tuple[Path, str, Path]) -> Path:
    original, edit, target = job
    target.write_bytes(EDITS[edit][1](Image.open(original).convert("RGB")))
    return target


def build_folder(folder: Path, files: int) -> None:
    sources = shared_images("dev")
    folder.mkdir(parents=True)
    with ProcessPoolExecutor() as pool:
        originals = list(pool.map(make_original, [(n, s, folder) for n, s in enumerate(sources)]))
        rng = random.Random(SEED)
        edits = [e for e in EDITS if e not in SKIPPED_EDITS]
        wanted = [(o, e) for o in originals for e in edits]
        rng.shuffle(wanted)
        jobs = [(o, e, folder / f"{o.stem}_{slug(e)}.jpg") for o, e in wanted[: files - len(originals)]]
        list(pool.map(make_copy, jobs))


def slug(edit: str) -> str:
    return edit.replace(" ", "-").replace("%", "pc").replace(">", "")


KIND_OF_SLUG = {slug(edit): kind for edit, (kind, _) in EDITS.items()}


def benign(name: str) -> bool:
    """An original, or a copy by an edit that keeps the frame and the orientation."""
    _, _, edit = name.removesuffix(".jpg").partition("_")
    return not edit or KIND_OF_SLUG[edit] == "benign"


def original_of(path: str) -> str:
    return Path(path).name.split("_")[0].removesuffix(".jpg")


def pairs_of(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations([Path(f).name for f in g], 2)}


def truth(folder: Path) -> set[frozenset[str]]:
    by_original: dict[str, list[str]] = {}
    for path in folder.iterdir():
        by_original.setdefault(original_of(path.name), []).append(path.name)
    return pairs_of(list(by_original.values()))


CPU_TIMES: dict[str, list[float]] = {}  # command -> CPU seconds of each run, its processes' all


def run(label: str, command: list[str]) -> tuple[float, str]:
    """Wall-clock seconds and output of a command; its CPU time (user and system, of every process
    it started) goes to CPU_TIMES: on a machine shared with others, the part that load cannot inflate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    CPU_TIMES.setdefault(label, []).append(cpu)
    return seconds, done.stdout


def findimagedupes(folder: Path) -> tuple[float, list[list[str]]]:
    seconds, out = run("findimagedupes", ["findimagedupes", "-R", "-q", str(folder)])
    return seconds, [line.split() for line in out.splitlines() if line.strip()]


def doppel(label: str, folder: Path, cache: Path, report: Path, *extra: str) -> tuple[float, list[list[str]]]:
    command = [sys.executable, "main.py", "scan", str(folder), "--cache", str(cache), "--json", str(report)]
    seconds, _ = run(label, [*command, *extra])
    groups = json.loads(report.read_text())["groups"]
    return seconds, [[f["path"] for f in g["files"]] for g in groups]


def quality(found: list[list[str]], expected: set[frozenset[str]]) -> str:
    pairs = pairs_of(found)
    right = len(pairs & expected)
    precision = right / len(pairs) if pairs else 1.0
    kept = {pair for pair in expected if all(benign(name) for name in pair)}
    return (
        f"{len(pairs)} pairs, {len(pairs) - right} wrong: precision {100 * precision:.1f}%, "
        f"recall {100 * right / len(expected):.1f}% ({right}/{len(expected)}); "
        f"of the pairs of originals and benign edits {100 * len(pairs & kept) / len(kept):.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="the folder of images (made when absent, then kept)")
    args = parser.parse_args()
    if shutil.which("findimagedupes") is None:
        sys.exit("findimagedupes is not installed (Debian: apt-get install findimagedupes)")
    work = Path(tempfile.mkdtemp(prefix="doppel-scan-bench-"))
    try:
        folder = args.folder or work / "images"
        if not folder.exists():
            build_folder(folder, args.files)
        count = sum(1 for _ in folder.iterdir())
        print(f"{count} images in {folder}, {len(truth(folder))} true duplicate pairs")
        fid_times, cold_times, warm_times = [], [], []
        for n in range(args.rounds):
            fid_seconds, fid_groups = findimagedupes(folder)
            cache = work / f"cache-{n}.sqlite3"
            cold, groups = doppel("doppel cold", folder, cache, work / "cold.json")
            warm, warm_groups = doppel("doppel warm", folder, cache, work / "warm.json")
            assert warm_groups == groups, "a warm scan found other groups than the cold one"
            fid_times.append(fid_seconds)
            cold_times.append(cold)
            warm_times.append(warm)
            print(
                f"round {n + 1}: findimagedupes {fid_seconds:.2f} s, doppel cold {cold:.2f} s "
                f"({cold / fid_seconds:.2f}x), warm {warm:.2f} s"
            )
        fid, cold, warm = (statistics.median(t) for t in (fid_times, cold_times, warm_times))
        print(
            f"median: findimagedupes {fid:.2f} s, doppel scan cold {cold:.2f} s = {cold / fid:.2f}x of "
            f"findimagedupes (target <= 0.5x), warm {warm:.2f} s (target < 2 s)"
        )
        print(
            "median CPU time (user + system, all processes): "
            + ", ".join(f"{label} {statistics.median(t):.2f} s" for label, t in CPU_TIMES.items())
        )
        oriented_run = (
            "oriented",
            folder,
            work / "cache-0.sqlite3",
            work / "oriented.json",
            "--all-orientations",
        )
        _, oriented = doppel(*oriented_run)
        expected = truth(folder)
        print(f"findimagedupes:                 {quality(fid_groups, expected)}")
        print(f"doppel scan:                    {quality(groups, expected)}")
        print(f"doppel scan --all-orientations: {quality(oriented, expected)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
