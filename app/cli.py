"""Command line: `python main.py [serve]` runs the HTTP service."""

import argparse
import ipaddress
import logging

import uvicorn
from pydantic import ValidationError

from app.config import Settings
from app.factory import create_app


def settings_help() -> str:
    """The settings table shown by --help: environment variable, default and meaning."""
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  DOPPEL_{name.upper():<20} default {field.default!s:<12} {field.description}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Doppel: duplicate-image detection over HTTP. Serves the API (OpenAPI docs at /docs).",
        epilog=settings_help() + "\n\nexample: DOPPEL_PORT=9000 DOPPEL_DATA_DIR=/var/lib/doppel python main.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP service (the default)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}")
        return 2
    if args.command in (None, "serve"):
        return serve(settings)
    return 2


def serve(settings: Settings) -> int:
    if settings.api_key is None and not is_loopback(settings.host):
        logging.getLogger("doppel").warning(
            "DOPPEL_HOST=%s lets other machines reach Doppel and DOPPEL_API_KEY is not set: "
            "anyone who reaches the port can add, read and delete images",
            settings.host,
        )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
