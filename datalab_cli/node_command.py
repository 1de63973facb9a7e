"""``datalab node``: run a node agent, and the agency admin's commands beside it.

    datalab node run --agency A --data DIR --hub URL [...]   run the agent
    datalab node --agency A --data DIR --hub URL [...]       the same (``run`` is the default)
    datalab node approve --agency A --recipe NAME@VERSION [--sha256 H] [--bounds JSON] [--by N]
    datalab node revoke --agency A --recipe NAME@VERSION [--reason TEXT]
    datalab node approvals --agency A
    datalab node log --agency A [--verify] [--tail N]
    datalab node lists --agency A                              owner-only verification lists
    datalab node export-list --agency A --job JOB --out FILE   export one (.csv or .parquet)
    datalab node rank --agency A --data DIR --model M.json --out FILE [--dataset D]
                                        order the district's list by a released federated model

Options left out fall back to ``DATALAB_NODE_*`` environment variables (see docs/node.md).
The main ``datalab`` command mounts this with :func:`add_node_arguments` and dispatches to
:func:`run_node_command`. Bad input prints one clear line on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from datalab.errors import DatalabError
from datalab.geography import LEVELS
from datalab.signing import SigningKey
from node_agent.grant_store import ApprovalStore
from node_agent.log import read_entries, verify_log
from node_agent.settings import NodeSettings, StateSettings
from recipes.registry import RecipeRegistry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the command line: printed on stderr, exit status 2."""


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the node's options and subcommands to ``parser`` (the ``datalab node`` parser)."""
    _add_run_options(parser)
    sub = parser.add_subparsers(dest="node_command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the node agent (the default)")
    _add_run_options(run)

    approve = sub.add_parser("approve", help="approve a recipe version for this agency")
    _add_state_options(approve)
    approve.add_argument("--recipe", required=True, metavar="NAME@VERSION")
    approve.add_argument(
        "--sha256", metavar="HASH", help="the code hash to pin (default: the local recipe's)"
    )
    approve.add_argument(
        "--bounds",
        metavar="JSON",
        help='parameter bounds, e.g. \'{"level": {"choices": ["street", "district"]}}\'',
    )
    approve.add_argument("--by", metavar="NAME", help="who approves (default: the OS user)")
    approve.add_argument("--note", default="", help="why (kept with the approval)")

    revoke = sub.add_parser("revoke", help="withdraw a recipe version's approval")
    _add_state_options(revoke)
    revoke.add_argument("--recipe", required=True, metavar="NAME@VERSION")
    revoke.add_argument("--by", metavar="NAME", help="who revokes (default: the OS user)")
    revoke.add_argument("--reason", default="", help="why (signed with the revocation)")

    approvals = sub.add_parser("approvals", help="list this agency's approvals")
    _add_state_options(approvals)
    approvals.add_argument("--json", action="store_true", help="print JSON")

    log = sub.add_parser("log", help="show or verify the node's local log")
    _add_state_options(log)
    log.add_argument("--verify", action="store_true", help="check the chain and signatures")
    log.add_argument("--tail", type=int, metavar="N", help="show only the last N entries")

    lists = sub.add_parser("lists", help="list the verification lists this node keeps")
    _add_state_options(lists)
    export = sub.add_parser(
        "export-list", help="export a verification list for grid workers (stays in the agency)"
    )
    _add_state_options(export)
    export.add_argument("--job", required=True, help="the matching job's id")
    export.add_argument("--out", required=True, metavar="FILE", help="a new .csv or .parquet file")
    ranking = sub.add_parser(
        "rank",
        help="order this district's flags by a released federated model (stays in the agency)",
    )
    _add_state_options(ranking)
    ranking.add_argument("--data", metavar="DIR", help="agency folder (env DATALAB_NODE_DATA_DIR)")
    ranking.add_argument("--model", required=True, metavar="FILE", help="the model file (JSON)")
    ranking.add_argument(
        "--dataset", help="the dataset to rank (default: the one the model was trained on)"
    )
    ranking.add_argument("--out", required=True, metavar="FILE", help="a new .csv or .parquet file")


def _add_state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agency", help="the agency (env DATALAB_NODE_AGENCY)")
    parser.add_argument("--state", metavar="DIR", help="state folder (default ./var/node-AGENCY)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_state_options(parser)
    parser.add_argument("--data", metavar="DIR", help="agency folder with manifest.json")
    parser.add_argument("--hub", metavar="URL", help="the hub's base URL")
    parser.add_argument("--min-cell", type=int, metavar="N", help="minimum cell / query set")
    parser.add_argument("--finest-level", choices=LEVELS, help="finest area level to group at")
    parser.add_argument("--environment", choices=("development", "production"))
    parser.add_argument("--hub-public-key", metavar="HEX", help="pin the hub's key")
    parser.add_argument("--poll-wait", type=float, metavar="S", help="long-poll seconds")
    parser.add_argument("--threads", type=int, metavar="N", help="DuckDB threads")
    parser.add_argument("--max-tasks", type=int, metavar="N", help="concurrent tasks")
    parser.add_argument(
        "--flower-superlink",
        metavar="HOST:PORT",
        help="join federated training: start a SuperNode for this SuperLink, gated by approvals",
    )


def run_node_command(args: argparse.Namespace, *, registry: RecipeRegistry | None = None) -> int:
    """Dispatch a parsed ``datalab node`` command; returns the exit status."""
    command = getattr(args, "node_command", None) or "run"
    try:
        if command == "run":
            return _run(args, registry)
        state = _state_settings(args)
        if command == "approve":
            return _approve(args, state, registry)
        if command == "revoke":
            return _revoke(args, state)
        if command == "approvals":
            return _list(args, state)
        if command == "log":
            return _log(args, state)
        if command == "lists":
            return _lists(state)
        if command == "export-list":
            return _export_list(args, state)
        if command == "rank":
            return _rank(args, state)
        raise UsageError(f"unknown node command {command!r}")
    except UsageError as exc:
        print(f"datalab node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"datalab node: {_validation_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except DatalabError as exc:
        print(f"datalab node: {exc.message}", file=sys.stderr)
        return EXIT_USAGE


def _given(**values: Any) -> dict[str, Any]:
    """Only the options given, so the environment supplies the rest."""
    return {k: v for k, v in values.items() if v is not None}


def _state_settings(args: argparse.Namespace) -> StateSettings:
    return StateSettings(**_given(agency=args.agency, state_dir=args.state))


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        option = {"data_dir": "--data", "agency": "--agency"}.get(where, where)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{option}: {msg}" if option else msg)
    return "; ".join(parts)


def _registry(registry: RecipeRegistry | None) -> RecipeRegistry:
    if registry is not None:
        return registry
    from recipes.registry import default_registry

    return default_registry()


def _split_recipe(text: str) -> tuple[str, str]:
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise UsageError(f"--recipe must be NAME@VERSION, e.g. aggregate@1.0.0; got {text!r}")
    return name, version


# ------------------------------------------------------------------ commands


def _run(args: argparse.Namespace, registry: RecipeRegistry | None) -> int:
    settings = NodeSettings(
        **_given(
            agency=args.agency,
            state_dir=args.state,
            data_dir=args.data,
            hub_url=args.hub,
            min_cell=args.min_cell,
            finest_level=args.finest_level,
            environment=args.environment,
            hub_public_key=args.hub_public_key,
            poll_wait_s=args.poll_wait,
            duckdb_threads=args.threads,
            max_concurrent_tasks=args.max_tasks,
            flower_superlink=args.flower_superlink,
        )
    )
    if not (settings.data_dir / "manifest.json").is_file():
        raise UsageError(f"--data: no manifest.json in {settings.data_dir}")
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per long-poll
    from node_agent.agent import NodeAgent  # imports httpx/duckdb only when running

    agent = NodeAgent(settings, registry=_registry(registry))
    return asyncio.run(agent.run())


def _approve(
    args: argparse.Namespace, state: StateSettings, registry: RecipeRegistry | None
) -> int:
    name, version = _split_recipe(args.recipe)
    local_sha: str | None = None
    try:
        local_sha = _registry(registry).get(name, version).code_sha256()
    except (DatalabError, ImportError):
        if args.sha256 is None:
            raise UsageError(
                f"no recipe {name}@{version} in this node's library; pass --sha256 to pin a hash"
            ) from None
    sha = (args.sha256 or local_sha or "").lower()
    if local_sha is not None and sha != local_sha:
        print(
            f"warning: this node's copy of {name}@{version} hashes {local_sha[:12]}…; "
            "tasks are refused until the hub and node run the approved code",
            file=sys.stderr,
        )
    try:
        bounds = json.loads(args.bounds) if args.bounds else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--bounds is not valid JSON: {exc.msg}") from None
    store = ApprovalStore(state.state, state.agency)
    approval = store.approve(
        name, version, sha, bounds, approved_by=args.by or getpass.getuser(), note=args.note
    )
    print(
        f"approved {approval.key} (sha256 {approval.code_sha256[:12]}…, signed with the agency "
        f"key, id {approval.approval_id[:12]}) for agency "
        f"{state.agency} by {approval.approved_by}"
        + (f" with bounds {json.dumps(approval.bounds)}" if approval.bounds else "")
    )
    return EXIT_OK


def _revoke(args: argparse.Namespace, state: StateSettings) -> int:
    name, version = _split_recipe(args.recipe)
    if not ApprovalStore(state.state, state.agency).revoke(
        name, version, revoked_by=args.by or getpass.getuser(), reason=args.reason
    ):
        raise UsageError(f"{name}@{version} is not approved by agency {state.agency}")
    print(f"revoked {name}@{version} for agency {state.agency}")
    return EXIT_OK


def _list(args: argparse.Namespace, state: StateSettings) -> int:
    approvals = ApprovalStore(state.state, state.agency).list()
    if args.json:
        print(json.dumps([a.model_dump(mode="json") for a in approvals], indent=2))
        return EXIT_OK
    if not approvals:
        print(f"agency {state.agency} has approved no recipes")
    for a in approvals:
        when = datetime.fromtimestamp(a.issued_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        bounds = f"  bounds {json.dumps(a.bounds)}" if a.bounds else ""
        note = f"  — {a.note}" if a.note else ""
        print(f"{a.key}  sha256 {a.code_sha256[:12]}…  by {a.approved_by} {when}{bounds}{note}")
    return EXIT_OK


def _log(args: argparse.Namespace, state: StateSettings) -> int:
    path = state.log_path
    if not path.exists():
        raise UsageError(f"no local log at {path}; has this node run yet?")
    if args.verify:
        key_path = state.key_path
        if not key_path.exists():
            raise UsageError(f"no node key at {key_path}; cannot verify signatures")
        public_key = SigningKey.from_pem(key_path.read_text(encoding="ascii")).public_key
        result = verify_log(path, public_key)
        print(("ok: " if result.ok else "FAILED: ") + result.message)
        return EXIT_OK if result.ok else EXIT_FAILED
    entries = list(read_entries(Path(path)))
    if args.tail is not None:
        entries = entries[-args.tail :] if args.tail > 0 else []
    for e in entries:
        when = datetime.fromtimestamp(e["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        data = json.dumps(e["data"], ensure_ascii=False, sort_keys=True)
        print(f"{e['seq']:>6} {when} {e['event']:<14} {data}")
    return EXIT_OK


def _lists(state: StateSettings) -> int:
    from node_agent import verification_lists

    kept = verification_lists.available(state.verification_dir)
    if not kept:
        print(f"agency {state.agency} keeps no verification lists")
    for job_id, rows in kept:
        print(f"{job_id}  {rows} records")
    return EXIT_OK


def _export_list(args: argparse.Namespace, state: StateSettings) -> int:
    from node_agent import verification_lists

    rows = verification_lists.export(state.verification_dir, args.job, Path(args.out))
    print(f"exported {rows} records of job {args.job} to {args.out}")
    return EXIT_OK


def _rank(args: argparse.Namespace, state: StateSettings) -> int:
    from node_agent import ranking

    data = args.data or os.environ.get("DATALAB_NODE_DATA_DIR")
    if not data:
        raise UsageError("--data DIR (the agency folder) is required")
    model = ranking.load_model(Path(args.model))
    dataset = args.dataset or str(model.provenance.params.get("dataset", ""))
    if not dataset:
        raise UsageError("--dataset is required: the model file names no training dataset")
    table = ranking.rank(Path(data), dataset, model, Path(args.out))
    ranking.log_ranking(state, dataset, model, table.num_rows, Path(args.out))
    print(
        f"ranked {table.num_rows} rows of {dataset!r} for agency {state.agency} by model "
        f"{model.provenance.recipe} (job {model.job_id}) into {args.out}"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m node_agent``: the same commands without the main ``datalab`` CLI."""
    parser = argparse.ArgumentParser(prog="datalab node", description=__doc__.split("\n")[0])
    add_node_arguments(parser)
    return run_node_command(parser.parse_args(argv))
