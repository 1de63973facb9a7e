"""``datalab audit``: verify the hub's audit log independently, filter it, export it.

    datalab audit verify --hub URL --token T [--node-state DIR ...]
    datalab audit export --hub URL --token T --out FILE.csv|FILE.parquet [filters]

``verify`` fetches every entry and every signed checkpoint, recomputes the hash chain and the
Merkle tree on this machine, checks each checkpoint's hub signature, root and consistency, and —
given node state folders — checks each node's own signed log and cross-checks its receipts
against the hub's entries. It prints the first bad entry and exits 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from datalab.client import Lab
from datalab.errors import DatalabError
from datalab.log_proofs import RECEIPT_EVENT, verify_log

FILTERS = ("analyst", "agency", "recipe", "outcome", "since", "until")


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = sub.add_parser("verify", help="recompute and check the whole audit log")
    _connection(verify)
    verify.add_argument(
        "--node-state",
        action="append",
        default=[],
        metavar="DIR",
        help="a node's state folder: check its signed log and cross-check its receipts",
    )
    export = sub.add_parser("export", help="filter the audit log and write CSV or Parquet")
    _connection(export)
    export.add_argument("--out", required=True, metavar="FILE", help="*.csv or *.parquet")
    for name in FILTERS:
        export.add_argument(f"--{name}", metavar="VALUE")


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", default=os.environ.get("DATALAB_URL"), help="env DATALAB_URL")
    parser.add_argument(
        "--token", default=os.environ.get("DATALAB_TOKEN"), help="an auditor's token"
    )


def run_audit_command(args: argparse.Namespace) -> int:
    if not args.hub or not args.token:
        print(
            "datalab audit: give --hub and --token (or DATALAB_URL, DATALAB_TOKEN)", file=sys.stderr
        )
        return 2
    with Lab(args.hub, args.token) as lab:
        if args.audit_command == "verify":
            return _verify(lab, [Path(p) for p in args.node_state])
        return _export(lab, args)


def node_receipts(state: Path) -> tuple[str, list[dict[str, Any]], str | None]:
    """(agency, receipts, problem) from a node's state folder; the log must verify first."""
    from datalab.signing import SigningKey
    from node_agent.log import read_entries
    from node_agent.log import verify_log as verify_node_log
    from node_agent.settings import KEY_FILE, LOG_FILE

    log_path, key_path = state / LOG_FILE, state / KEY_FILE
    if not log_path.exists() or not key_path.exists():
        raise DatalabError(f"--node-state {state}: no node log and key there")
    public = SigningKey.from_pem(key_path.read_text(encoding="ascii")).public_key
    check = verify_node_log(log_path, public)
    problem = None if check.ok else f"node log {log_path}: {check.message}"
    receipts = [e["data"] for e in read_entries(log_path) if e["event"] == RECEIPT_EVENT]
    return state.name, receipts, problem


def _verify(lab: Lab, states: list[Path]) -> int:
    entries = lab.audit_entries()
    checkpoints = lab.audit_checkpoints()
    hub_key = lab.hub_public_key()
    receipts: dict[str, list[dict[str, Any]]] = {}
    node_problems = []
    for state in states:
        agency, items, problem = node_receipts(state)
        receipts[agency] = items
        if problem:
            node_problems.append(problem)
    result = verify_log(entries, checkpoints, hub_key, receipts)
    if result.ok and not node_problems:
        print(f"ok: {result.message}")
        return 0
    if not result.ok:
        print(f"FAILED: first bad entry {result.first_bad}: {result.message}")
        for extra in result.problems[1:]:
            print(f"  also: {extra}")
    for problem in node_problems:
        print(f"FAILED: {problem}")
    return 1


def _export(lab: Lab, args: argparse.Namespace) -> int:
    filters = {k: getattr(args, k) for k in FILTERS if getattr(args, k) is not None}
    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        print("datalab audit: --out must end in .csv or .parquet", file=sys.stderr)
        return 2
    frame = lab.audit(**filters)
    # each entry's data as its JSON text: one column type, readable back with json.loads
    frame["data"] = [json.dumps(d, sort_keys=True, ensure_ascii=False) for d in frame["data"]]
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    print(f"wrote {len(frame)} entries to {out}")
    return 0
