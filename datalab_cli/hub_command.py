"""``datalab server`` and ``datalab users``: the hub's commands, called by ``datalab_cli/main.py``.

Settings come from ``DATALAB_HUB_*`` variables, overridden by the options given here. A bad
option or setting prints one clear line on stderr and exits 2 — no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from datalab.errors import DatalabError
from lab_server import users
from lab_server.permissions import Role
from lab_server.services import open_database
from lab_server.settings import HubSettings

EXIT_USAGE = 2


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", type=Path, default=None, help="hub state folder (DATALAB_HUB_STATE_DIR)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default sqlite:///STATE/hub.db; DATALAB_HUB_DATABASE_URL)",
    )


def _settings(args: argparse.Namespace, **extra: Any) -> HubSettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "state", None) is not None:
        overrides["state_dir"] = args.state
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return HubSettings(**overrides)


def _settings_error(command: str, exc: ValidationError) -> int:
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        prefix = f"{where}: " if where else ""
        print(f"datalab {command}: bad setting: {prefix}{error['msg']}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------- server


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    _add_store_arguments(parser)
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8700)")
    parser.add_argument(
        "--environment", choices=["development", "production"], default=None, help="deployment"
    )
    parser.add_argument(
        "--flower",
        action="store_true",
        default=None,
        help="start and supervise a Flower SuperLink for training recipes (DATALAB_HUB_FLOWER)",
    )
    parser.add_argument(
        "--flower-port", type=int, default=None, help="the SuperLink's port (default: a free one)"
    )


def run_server(args: argparse.Namespace) -> int:
    """Run the hub in this process with uvicorn (one worker: the notifier is in-process)."""
    import uvicorn

    from lab_server.app import create_app

    try:
        settings = _settings(
            args,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            environment=getattr(args, "environment", None),
            flower=getattr(args, "flower", None),
            flower_port=getattr(args, "flower_port", None),
        )
    except ValidationError as exc:
        return _settings_error("server", exc)
    app = create_app(settings)
    print(
        f"datalab hub listening on http://{settings.host}:{settings.port} "
        f"(state {settings.state_dir})",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level="warning",
        access_log=False,
    )
    return 0


# ---------------------------------------------------------------------- users


def add_users_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION")
    add = sub.add_parser("add", help="create a person and print their token (shown once)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--agency", default=None, help="the agency (required for agency_admin)")
    _add_store_arguments(add)
    listing = sub.add_parser("list", help="list people and their roles (never tokens)")
    _add_store_arguments(listing)


def create_user(settings: HubSettings, name: str, role: str, agency: str | None = None) -> str:
    """Create a person directly in the hub database; returns their token."""
    db = open_database(settings)
    try:
        with db.write() as session:
            return users.create(session, by="operator-cli", name=name, role=role, agency=agency)
    finally:
        db.dispose()


def run_users_command(args: argparse.Namespace) -> int:
    action = getattr(args, "users_command", None)
    if action not in ("add", "list"):
        print("datalab users: say 'add NAME --role ROLE' or 'list'", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = _settings(args)
    except ValidationError as exc:
        return _settings_error("users", exc)
    if action == "add":
        try:
            token = create_user(settings, args.name, args.role, args.agency)
        except DatalabError as exc:
            print(f"datalab users: error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        print(f"created {args.role} {args.name}; their token (shown once):", file=sys.stderr)
        print(token)
        return 0
    db = open_database(settings)
    try:
        with db.read() as session:
            for user in users.all_users(session):
                print(f"{user.name}\t{user.role}\t{user.agency or '-'}")
    finally:
        db.dispose()
    return 0
