"""Command line: `python main.py [serve]` runs the HTTP service; `python main.py eval DIR` measures
matching accuracy on a folder of images."""

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from app.config import Settings
from app.errors import StoreUnavailable
from app.factory import create_app
from app.service import build_service
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
        help="measure recall and wrong matches on edited copies of a folder of distinct images",
        description="Index the images of DIR in memory, search ~20 edited copies of each, and print "
        "recall per edit and wrong matches (markdown). Uses DOPPEL_MAX_DISTANCE and DOPPEL_CONFIRM_DISTANCE.",
    )
    evaluate.add_argument(
        "folder",
        type=Path,
        metavar="DIR",
        help="distinct originals (a GROUPS.tsv adds its shipped duplicates)",
    )
    evaluate.add_argument(
        "--distinct", type=Path, metavar="DIR2", help="more held-out images, none a copy of DIR's"
    )
    evaluate.add_argument(
        "--hold-out-every",
        type=int,
        default=5,
        metavar="N",
        help="every N-th image of DIR is not indexed but searched as a distinct image (default 5; 0: none)",
    )
    evaluate.add_argument(
        "--workers", type=int, default=2, help="processes making the edited copies (default 2)"
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}")
        return 2
    if args.command == "eval":
        return run_evaluation(settings, args)
    return serve(settings)


def serve(settings: Settings) -> int:
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
    uvicorn.run(
        create_app(settings, service), host=settings.host, port=settings.port, log_level=settings.log_level
    )
    return 0


def run_evaluation(settings: Settings, args: argparse.Namespace) -> int:
    from app.evaluation import evaluate, format_report  # only this command needs the edit tooling

    for path in (args.folder, args.distinct):
        if path is not None and not path.is_dir():
            print(f"not a folder: {path}")
            return 2
    report = evaluate(
        args.folder,
        distinct_folder=args.distinct,
        hold_out_every=args.hold_out_every,
        max_distance=settings.max_distance,
        confirm_distance=settings.confirm_distance,
        workers=args.workers,
    )
    print(format_report(report, confirm_distance=settings.confirm_distance))
    return 0


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
