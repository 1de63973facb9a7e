"""The demo's matching step: missed registrations found by PSI between two agencies' nodes,
scored against the synthetic city's ground truth (which only the demo and tests read)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datalab.client import Lab
from datalab_cli.local_lab import ANALYST, LocalLab
from synthetic_city.score import score_lists

RECIPE = "missed_registration"


def matching_session(lab: LocalLab, city: Path, heading: str) -> None:
    analyst = Lab(lab.url, lab.tokens[ANALYST])
    print(f"\n{heading}", flush=True)
    print("   housing asks public security, by PSI through the hub: which tenants have no")
    print("   active registration in the grid they rent in? Counts per street:")
    per_street = analyst.run(RECIPE, source="tenancy", level="street", progress=False)
    per_street = per_street.sort_values("missed", ascending=False, na_position="last")
    with pd.option_context("display.width", 120):
        text = per_street.head(8).to_string(index=False)
    print("\n".join("   " + line for line in text.splitlines()))
    prov = per_street.attrs["provenance"]
    print(
        f"   job {prov.job_id[:8]} · nodes {', '.join(prov.agencies)} · "
        f"{prov.suppressed_cells} cells suppressed"
    )

    print("   both agencies' admins approve owner-only reveal; each asking node keeps its list")
    for agency in ("housing", "activity", "public_security"):
        lab.approve_reveal(agency, RECIPE)
    lists: dict[str, Path] = {}
    for name, source, agency, extra in (
        ("tenancy", "tenancy", "housing", {}),
        ("tenancy, ID only", "tenancy", "housing", {"cascade": False}),
        ("night activity", "night_activity", "activity", {}),
    ):
        frame = analyst.run(
            RECIPE, source=source, mode="reveal", level="district", progress=False, **extra
        )
        lists[name] = lab.verification_list(agency, frame.attrs["provenance"].job_id)
        print(f"   {name:<17} {score_lists(city, [lists[name]], 'missed_registration').line()}")
    both = score_lists(city, [lists["tenancy"], lists["night activity"]], "missed_registration")
    print(f"   {'both sources':<17} {both.line()}")
    with_cascade = score_lists(city, [lists["tenancy"]], "missed_registration")
    id_only = score_lists(city, [lists["tenancy, ID only"]], "missed_registration")
    print(
        f"   the name + birth date + sex cascade raises tenancy recall from {id_only.recall:.1%} "
        f"to {with_cascade.recall:.1%}"
    )
    lab.approve_reveal("health", "should_cancel")
    lab.approve_reveal("public_security", "should_cancel")
    dead = analyst.run("should_cancel", mode="reveal", level="district", progress=False)
    path = lab.verification_list("public_security", dead.attrs["provenance"].job_id)
    score = score_lists(city, [path], "should_cancel", evidence="death_record")
    print(f"   registrations of the dead (public security asks health): {score.line()}")
    print("   person-household separation: household registered in the city, not where they live")
    for agency in ("housing", "activity", "public_security"):
        lab.approve_reveal(agency, "separation")
    separated = []
    for source, agency in (("tenancy", "housing"), ("night_activity", "activity")):
        frame = analyst.run(
            "separation", source=source, mode="reveal", level="district", progress=False
        )
        separated.append(lab.verification_list(agency, frame.attrs["provenance"].job_id))
        score = score_lists(city, separated[-1:], "separation", truth_area="home_grid")
        print(f"   {source:<17} {score.line()}")
    both = score_lists(city, separated, "separation", truth_area="home_grid")
    print(f"   {'both sources':<17} {both.line()}")
    print(
        "   registrations nobody sees: public security asks housing, hrss, activity, "
        "education and civil affairs at once"
    )
    for agency in ("public_security", "housing", "hrss", "activity", "education", "civil_affairs"):
        lab.approve_reveal(agency, "should_cancel_absent")
    absent = analyst.run("should_cancel_absent", mode="reveal", level="district", progress=False)
    path = lab.verification_list("public_security", absent.attrs["provenance"].job_id)
    print(f"   {'no presence':<17} {score_lists(city, [path], 'should_cancel').line()}")
    print("   the lists never left the nodes; an admin exports one with:")
    print(
        f"   datalab node export-list --agency housing --state {lab.node_state('housing')} "
        "--job JOB --out list.csv"
    )
