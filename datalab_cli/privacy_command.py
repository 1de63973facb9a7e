"""``datalab privacy``: disclosure rules and privacy budgets from a terminal.

Analysts list the rules and their own budget; agency admins set their agency's rules and budget
caps. Every subcommand talks to the hub's API with the person's token (``--token`` or
``DATALAB_TOKEN``), exactly as the notebook client does.
"""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd

from datalab.client import Lab
from datalab.errors import BadRequest


def add_privacy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("DATALAB_URL", "http://127.0.0.1:8700"), help="hub URL"
    )
    parser.add_argument(
        "--token", default=os.environ.get("DATALAB_TOKEN"), help="your token (DATALAB_TOKEN)"
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    rules = sub.add_parser("rules", help="list every disclosure setting with value and default")
    rules.add_argument("--recipe", help="only this recipe's policy (and the lab and agencies)")
    set_rule = sub.add_parser("set-rule", help="(agency admin) set a rule for your agency")
    set_rule.add_argument("agency")
    set_rule.add_argument("setting")
    set_rule.add_argument("value", help="a number, true or false")
    sub.add_parser("budget", help="your epsilon budget per dataset")
    set_budget = sub.add_parser("set-budget", help="(agency admin) cap an analyst's epsilon")
    set_budget.add_argument("scope", help="dataset:<agency>/<dataset>")
    set_budget.add_argument("epsilon", type=float)
    set_budget.add_argument("--analyst", default="*", help="one analyst, or * for everyone")


def run_privacy_command(args: argparse.Namespace) -> int:
    if not args.token:
        raise BadRequest("a token is needed: --token or DATALAB_TOKEN")
    with Lab(args.url, args.token) as lab:
        if args.action == "rules":
            _print(lab.disclosure_rules(args.recipe))
        elif args.action == "set-rule":
            try:
                value = json.loads(args.value)
            except json.JSONDecodeError:
                raise BadRequest(f"value {args.value!r} is not a number, true or false") from None
            _print(lab.set_rule(args.agency, args.setting, value))
        elif args.action == "budget":
            _print(lab.budget())
        else:
            view = lab.set_budget(args.scope, args.epsilon, analyst=args.analyst)
            print(
                f"{view.scope} for {view.analyst}: cap {view.cap:g}, spent {view.spent:g}, "
                f"remaining {view.remaining:g}"
            )
    return 0


def _print(frame: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", None, "display.width", 160):
        print(frame.drop(columns=["description"], errors="ignore").to_string(index=False))
