"""The ``datalab`` command: one entry point for every party's tools.

Each subcommand's module is imported only when that subcommand runs, so a node agent never
imports the hub's server stack and ``datalab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from datalab import __version__
from datalab.errors import DatalabError


@dataclass(frozen=True)
class Command:
    module: str
    add_arguments: str
    run: str
    help: str


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "datalab_cli.demo",
        "add_demo_arguments",
        "run_demo_command",
        "synthesise a city, start a hub and its nodes, run the demo recipes, shut down",
    ),
    "synth": Command(
        "datalab_cli.synth_command",
        "add_synth_arguments",
        "run_synth_command",
        "generate a synthetic city (one folder per agency, ground truth apart)",
    ),
    "server": Command(
        "datalab_cli.hub_command", "add_server_arguments", "run_server", "run the lab server (hub)"
    ),
    "users": Command(
        "datalab_cli.hub_command",
        "add_users_arguments",
        "run_users_command",
        "manage people and their tokens on the hub (operator, on the hub machine)",
    ),
    "node": Command(
        "datalab_cli.node_command",
        "add_node_arguments",
        "run_node_command",
        "run an agency's node agent, and manage its approvals and local log",
    ),
    "privacy": Command(
        "datalab_cli.privacy_command",
        "add_privacy_arguments",
        "run_privacy_command",
        "list disclosure rules and budgets; agency admins set their agency's rules and caps",
    ),
    "approvals": Command(
        "datalab_cli.approvals_command",
        "add_approvals_arguments",
        "run_approvals_command",
        "request recipe approvals (analyst); sign and upload approvals or revocations (admin)",
    ),
    "audit": Command(
        "datalab_cli.audit_command",
        "add_audit_arguments",
        "run_audit_command",
        "verify the audit log (chain, Merkle tree, checkpoints, node receipts); export it",
    ),
    "bench": Command(
        "datalab_cli.bench_command",
        "add_bench_arguments",
        "run_bench_command",
        "run a benchmark from bench/ (e.g. datalab bench aggregate --quick)",
    ),
}


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datalab",
        description="A privacy-preserving data lab: raw records stay with each agency; "
        "analysts get safe aggregates.",
    )
    parser.add_argument("--version", action="version", version=f"datalab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = sub.add_parser(name, help=command.help, description=command.help)
        if name == selected:
            module = importlib.import_module(command.module)
            getattr(module, command.add_arguments)(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    run = getattr(importlib.import_module(command.module), command.run)
    try:
        return int(run(args) or 0)
    except DatalabError as exc:
        print(f"datalab {args.command}: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"datalab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
