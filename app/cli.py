"""Command line: `python main.py [serve]` runs the HTTP service; `scan DIR...` finds the duplicates
in folders; `index DIR... --url URL` loads folders into a running service; `rehash [--from DIR]`
counts, and re-hashes from their files, the records hashed by an older version of the hashing;
`eval DIR` measures matching accuracy on a folder of images."""

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from app.config import Settings
from app.errors import StoreUnavailable
from app.image_index import ImageIndex
from app.imaging import HASHING_VERSION
from app.service.memory import DecodeMemory
from app.service.metrics import Metrics
from app.service.rehash import FolderFiles, count_older, rehash
from app.service.uploads import UploadHasher
from app.store import open_store
from app.store.base import StoreUnusable


def settings_help() -> str:
    """The settings table shown by --help: environment variable, default and meaning."""
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  DOPPEL_{name.upper():<22} default {default!s:<12} {field.description}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Doppel: duplicate-image detection over HTTP. Serves the API (OpenAPI docs at /docs).",
        epilog=settings_help()
        + "\n\nexample: DOPPEL_PORT=9000 DOPPEL_DATA_DIR=/var/lib/doppel python main.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP service (the default)")
    evaluate = commands.add_parser(
        "eval",
        help="measure recall and wrong matches on edited copies of folders of distinct images",
        description="Split the images of the folders in two halves by a hash of their names; for each "
        "half, index its images in memory, search 48 edited copies of each, and print recall per edit "
        "and wrong matches (markdown), then a sweep of the score threshold over both halves: choose it "
        "on the tuning half, read the held-out one. Uses DOPPEL_MAX_DISTANCE and DOPPEL_MAX_SCORE.",
    )
    evaluate.add_argument(
        "folders",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="distinct originals (a GROUPS.tsv adds its shipped duplicates)",
    )
    evaluate.add_argument(
        "--distinct",
        type=Path,
        action="append",
        default=[],
        metavar="DIR2",
        help="a folder of images searched as distinct ones, none a copy of DIR's (repeatable)",
    )
    evaluate.add_argument(
        "--hold-out-every",
        type=int,
        default=5,
        metavar="N",
        help="every N-th image of a DIR is not indexed but searched as a distinct one (default 5; 0: none)",
    )
    evaluate.add_argument(
        "--workers", type=int, default=2, help="processes making the edited copies (default 2)"
    )
    rehash = commands.add_parser(
        "rehash",
        help="count the records hashed by an older version of Doppel's hashing; re-hash those whose "
        "original files you have",
        description="Doppel keeps no pictures: a record hashed by an older version of the hashing keeps "
        "its old hashes, and goes on matching with them, until it is re-hashed from its original file. "
        "Without --from, count them; with it, re-hash those whose file is in DIR or its subfolders: "
        "the file with the bytes the record was uploaded with (same SHA-256), or, for a record added by "
        "its hashes, the file whose path relative to DIR is its id. Ids, metadata and creation times "
        "are kept; a running server follows the change.",
    )
    rehash.add_argument(
        "--from", dest="originals", type=Path, metavar="DIR", help="a folder of the original files"
    )
    add_scan_parser(commands)
    add_index_parser(commands)
    return parser


def add_scan_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    scan = commands.add_parser(
        "scan",
        help="find the duplicate images in folders (no server needed)",
        description="Hash every image under the folders (recursively, on every core, through a "
        "cache), group the duplicates with the service's matching rules, print them as a table and "
        "write them as JSON, CSV or an HTML page of thumbnails. Uses DOPPEL_MAX_DISTANCE, "
        "DOPPEL_MAX_SCORE and DOPPEL_MAX_PIXELS.",
    )
    scan.add_argument("folders", type=Path, nargs="+", metavar="DIR", help="folders (or files) to scan")
    scan.add_argument(
        "--max-distance",
        type=_distance,
        metavar="N",
        help="candidates within this distance in bits (dHash, DCT hash or centre), 0-64, then judged by "
        "their score (default DOPPEL_MAX_DISTANCE, 10)",
    )
    scan.add_argument(
        "--all-orientations", action="store_true", help="also match mirrored and quarter-turned copies"
    )
    scan.add_argument("--json", type=Path, metavar="FILE", help="write the groups as JSON")
    scan.add_argument("--csv", type=Path, metavar="FILE", help="write the groups as CSV, a row per file")
    scan.add_argument("--html", type=Path, metavar="FILE", help="write a page of the groups' thumbnails")
    scan.add_argument(
        "--cache",
        type=Path,
        metavar="FILE",
        help="the hash cache (default: doppel/scan-cache.sqlite3 in $XDG_CACHE_HOME or ~/.cache)",
    )
    scan.add_argument("--no-cache", action="store_true", help="hash every file again and keep nothing")
    scan.add_argument("--hidden", action="store_true", help="also scan files and folders named .*")
    scan.add_argument("--workers", type=_positive, metavar="N", help="hashing processes (default: the cores)")


def add_index_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    index = commands.add_parser(
        "index",
        help="load the images of folders into a running Doppel service",
        description="Send every image under the folders to URL's POST /images/batch, skipping those "
        "the service already holds (so a run that was interrupted can be started again). Ids are "
        "the paths relative to each folder ('/' written %2F, '%' written %25), or with --id-from "
        "sha256 the files' SHA-256; the metadata holds the path. The API key is read from "
        "DOPPEL_API_KEY. A file the service refuses is reported and skipped.",
    )
    index.add_argument("folders", type=Path, nargs="+", metavar="DIR", help="folders (or files) to index")
    index.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    index.add_argument(
        "--id-from",
        choices=("path", "sha256"),
        default="path",
        help="what the ids are made of (default path)",
    )
    index.add_argument(
        "--metadata", metavar="JSON", default="{}", help="a JSON object added to every image's metadata"
    )
    index.add_argument("--hidden", action="store_true", help="also send files and folders named .*")
    index.add_argument(
        "--batch", type=_positive, default=100, metavar="N", help="files per request (default and most 100)"
    )


def _distance(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError("a distance is 0 to 64 bits")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}")
        return 2
    if args.command == "eval":
        return run_evaluation(settings, args)
    if args.command == "rehash":
        return run_rehash(settings, args.originals)
    if args.command == "scan":
        return run_scan(settings, args)
    if args.command == "index":
        return run_index(settings, args)
    return serve(settings)


def serve(settings: Settings) -> int:
    # Imported here: the other commands start faster without the web stack.
    import uvicorn

    from app.api.connections import GuardedH11Protocol
    from app.factory import create_app
    from app.service import build_service

    try:
        service = build_service(settings)  # a store that cannot be opened: one clear line, not a traceback
    except (StoreUnusable, StoreUnavailable) as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    if settings.api_key is None and not is_loopback(settings.host):
        logging.getLogger("doppel").warning(
            "DOPPEL_HOST=%s lets other machines reach Doppel and DOPPEL_API_KEY is not set: "
            "anyone who reaches the port can add, read and delete images",
            settings.host,
        )
    protocol = GuardedH11Protocol.configured(
        header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections
    )
    uvicorn.run(
        create_app(settings, service),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=protocol,
        timeout_keep_alive=settings.keep_alive_s,
    )
    return 0


def run_rehash(settings: Settings, originals: Path | None) -> int:
    """Count the records on an older hashing version, and re-hash those whose originals are given.
    Status 1 when originals were found that could not be hashed, 2 when the store cannot be used."""
    if originals is not None and not originals.is_dir():
        print(f"not a folder: {originals}", file=sys.stderr)
        return 2
    try:
        store = open_store(settings)
    except (StoreUnusable, StoreUnavailable) as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    try:
        older = count_older(store)
        print(
            f"{older} of {store.count()} records were hashed by an older version of Doppel's hashing "
            f"than this one's ({HASHING_VERSION})."
        )
        if originals is None:
            if older:
                print(
                    "They still match with their old hashes. To re-hash those whose files you have: "
                    "python main.py rehash --from DIR"
                )
            return 0
        files = FolderFiles(originals)
        metrics = Metrics(ImageIndex(), store)  # counted by no one: the command serves no metrics
        hasher = UploadHasher(
            max_pixels=settings.max_pixels,
            max_concurrent_decodes=1,
            memory=DecodeMemory(settings.max_decode_memory),
            hash_seconds=metrics.hash_seconds,
            decode_wait_seconds=metrics.decode_wait_seconds,
        )
        report = rehash(store, hasher, files, max_file_bytes=settings.max_upload_bytes)
    finally:
        store.close()
    print(f"{report.rehashed} re-hashed from their files in {originals}.")
    if report.left:
        print(f"{report.left} left on their old hashes: they still match with them (docs/accuracy.md).")
    for path, why in files.unreadable + report.failed:
        print(f"not hashed: {path}: {why}")
    return 1 if files.unreadable or report.failed else 0


def run_evaluation(settings: Settings, args: argparse.Namespace) -> int:
    from app.evaluation import evaluate, format_report  # only this command needs the edit tooling

    for path in [*args.folders, *args.distinct]:
        if not path.is_dir():
            print(f"not a folder: {path}")
            return 2
    reports = evaluate(
        args.folders,
        distinct_folders=args.distinct,
        hold_out_every=args.hold_out_every,
        max_distance=settings.max_distance,
        max_score=settings.max_score,
        workers=args.workers,
    )
    print(format_report(reports, max_score=settings.max_score))
    return 0


def run_scan(settings: Settings, args: argparse.Namespace) -> int:
    import sqlite3

    from app.scan.cache import HashCache, default_cache_path
    from app.scan.report import write_csv, write_html, write_json, write_table
    from app.scan.scanner import scan

    missing = [path for path in args.folders if not path.exists()]
    if missing:
        print(f"doppel: no such folder or file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    unwritable = [p for p in (args.json, args.csv, args.html) if p is not None and not p.parent.is_dir()]
    if unwritable:
        print(f"doppel: no folder to write {', '.join(map(str, unwritable))} in", file=sys.stderr)
        return 2
    if args.max_distance is not None:
        settings = settings.model_copy(update={"max_distance": args.max_distance})
    cache = None
    if not args.no_cache:
        cache_path = args.cache or default_cache_path()
        try:
            cache = HashCache(cache_path)
        except (OSError, sqlite3.Error) as exc:  # a scan without its cache is slower, not wrong
            print(
                f"doppel: the hash cache {cache_path} cannot be used ({exc}); hashing every file",
                file=sys.stderr,
            )
    try:
        result = scan(
            args.folders,
            settings,
            all_orientations=args.all_orientations,
            cache=cache,
            workers=args.workers,
            hidden=args.hidden,
        )
    finally:
        if cache is not None:
            cache.close()
    write_table(result, sys.stdout)
    for path, write in ((args.json, write_json), (args.csv, write_csv), (args.html, write_html)):
        if path is not None:
            with path.open("w", encoding="utf-8", newline="" if write is write_csv else None) as out:
                write(result, out)
            print(f"wrote {path}", file=sys.stderr)  # beside the progress: stdout holds the table alone
    return 0


def run_index(settings: Settings, args: argparse.Namespace) -> int:
    from app.scan.indexer import IndexingFailed, index_folders

    try:
        report = index_folders(
            args.folders,
            url=args.url,
            id_from=args.id_from,
            metadata=args.metadata,
            hidden=args.hidden,
            batch_size=min(args.batch, 100),
            api_key=None if settings.api_key is None else settings.api_key.get_secret_value(),
        )
    except IndexingFailed as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    for path, reason in report.refused:
        print(f"refused {path}: {reason}")
    print(report.summary())
    return 0


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
