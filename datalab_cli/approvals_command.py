"""``datalab approvals``: approval requests from the command line, for analysts and admins.

    datalab approvals request --recipe NAME[@VERSION] --agencies A,B --purpose TEXT [--bounds JSON]
    datalab approvals list
    datalab approvals show REQUEST_ID [--code]
    datalab approvals approve REQUEST_ID --agency-key DIR [--bounds JSON] [--note TEXT]
    datalab approvals reject REQUEST_ID --reason TEXT
    datalab approvals revoke APPROVAL_ID --agency-key DIR [--reason TEXT]

``approve`` and ``revoke`` sign on THIS machine with the agency key in DIR (the agency admin's,
e.g. the node's state folder): the hub only receives the signed grant, never the key. Connection
from ``--hub``/``--token`` or ``DATALAB_URL``/``DATALAB_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from datalab.client import Lab
from datalab.errors import DatalabError
from datalab.grants import AGENCY_KEY_FILE, agency_key, new_grant, sign_grant, sign_revocation


def add_approvals_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", default=os.environ.get("DATALAB_URL"), help="env DATALAB_URL")
    parser.add_argument(
        "--token", default=os.environ.get("DATALAB_TOKEN"), help="env DATALAB_TOKEN"
    )
    sub = parser.add_subparsers(dest="approvals_command", metavar="COMMAND", required=True)
    request = sub.add_parser("request", help="ask agencies to approve a recipe (analyst)")
    request.add_argument("--recipe", required=True, metavar="NAME[@VERSION]")
    request.add_argument("--agencies", required=True, help="comma-separated agencies")
    request.add_argument("--purpose", required=True)
    request.add_argument("--bounds", metavar="JSON")
    sub.add_parser("list", help="the requests you may see")
    show = sub.add_parser("show", help="review a request: manifest, mock output, code (admin)")
    show.add_argument("request_id")
    show.add_argument("--code", action="store_true", help="print the recipe's source too")
    approve = sub.add_parser("approve", help="sign and upload an approval (agency admin)")
    approve.add_argument("request_id")
    approve.add_argument("--agency-key", required=True, metavar="DIR", type=Path)
    approve.add_argument("--bounds", metavar="JSON", help="narrower bounds (default: requested)")
    approve.add_argument("--note", default="")
    reject = sub.add_parser("reject", help="reject a request with a reason (agency admin)")
    reject.add_argument("request_id")
    reject.add_argument("--reason", required=True)
    revoke = sub.add_parser("revoke", help="sign and upload a revocation (agency admin)")
    revoke.add_argument("approval_id")
    revoke.add_argument("--agency-key", required=True, metavar="DIR", type=Path)
    revoke.add_argument("--reason", default="")


def _bounds(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatalabError(f"--bounds is not valid JSON: {exc.msg}") from None
    return value


def run_approvals_command(args: argparse.Namespace) -> int:
    if not args.hub or not args.token:
        print(
            "datalab approvals: give --hub and --token (or DATALAB_URL, DATALAB_TOKEN)",
            file=sys.stderr,
        )
        return 2
    with Lab(args.hub, args.token) as lab:
        command = args.approvals_command
        if command == "request":
            name, _, version = args.recipe.partition("@")
            view = lab.request_approval(
                name,
                version=version or None,
                agencies=[a.strip() for a in args.agencies.split(",") if a.strip()],
                purpose=args.purpose,
                bounds=_bounds(args.bounds),
            )
            print(f"requested {view.recipe}@{view.version}: request {view.request_id}")
        elif command == "list":
            for r in lab.approval_requests():
                states = ", ".join(f"{d.agency}: {d.state.value}" for d in r.decisions)
                print(
                    f"{r.request_id}  {r.recipe}@{r.version}  by {r.analyst}  [{states}]  "
                    + r.purpose
                )
        elif command == "show":
            _show(lab, args.request_id, args.code)
        elif command == "approve":
            return _approve(lab, args)
        elif command == "reject":
            d = lab.reject(args.request_id, args.reason)
            print(f"rejected request {args.request_id} for agency {d.agency}")
        elif command == "revoke":
            key_dir = _key_dir(args.agency_key)
            signed = lab.grant(args.approval_id)
            who = lab.whoami()["name"]
            lab.revoke(sign_revocation(agency_key(key_dir), signed.grant, who, args.reason))
            print(f"revoked approval {args.approval_id} ({signed.grant.key})")
    return 0


def _show(lab: Lab, request_id: str, code: bool) -> None:
    material = lab.review(request_id)
    r = material.request
    print(f"{r.recipe}@{r.version}  sha256 {r.code_sha256}")
    print(f"requested by {r.analyst} for: {r.purpose}")
    print(f"requested bounds: {json.dumps(r.bounds)}")
    for d in r.decisions:
        print(f"  {d.agency}: {d.state.value}" + (f" ({d.reason})" if d.reason else ""))
    print("parameters:")
    for p in material.manifest.get("params", []):
        print(f"  {p['name']} ({p['type']}): {p['description']}")
    print(f"mock output: {material.mock_note}")
    if material.mock is not None:
        print("  " + "\t".join(material.mock.columns))
        for row in material.mock.rows:
            print("  " + "\t".join(str(v) for v in row))
    if code:
        print(material.code)


def _key_dir(path: Path) -> Path:
    if not (path / AGENCY_KEY_FILE).is_file():
        raise DatalabError(f"--agency-key: no {AGENCY_KEY_FILE} in {path}")
    return path


def _approve(lab: Lab, args: argparse.Namespace) -> int:
    key_dir = _key_dir(args.agency_key)
    me = lab.whoami()
    if not me.get("agency"):
        raise DatalabError("only an agency admin (with an agency) can approve")
    request = lab.approval_request(args.request_id)
    bounds = _bounds(args.bounds)
    grant = new_grant(
        agency=me["agency"],
        recipe=request.recipe,
        version=request.version,
        code_sha256=request.code_sha256,
        bounds=request.bounds if bounds is None else bounds,
        approved_by=me["name"],
        request_id=request.request_id,
        note=args.note,
    )
    decision = lab.approve(request.request_id, sign_grant(agency_key(key_dir), grant))
    print(
        f"approved {grant.key} for agency {decision.agency} (approval {grant.approval_id}); "
        "the node takes it on its next poll"
    )
    return 0
