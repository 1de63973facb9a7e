"""Attacks on the differentially private PSI cardinality (``dp_missed_registration``), through
the public client against the live lab. Each test asserts that the attack fails.

* averaging: the same noisy cardinality asked again and again is charged to the budget of the
  pair of agencies, seen from each side (``psi:housing/public_security``, capped by housing's
  admin, and ``psi:public_security/housing``, capped by public security's) until one refuses —
  a new session does not reset it, and both are visible through ``lab.budget()``;
* "S, then S plus a target": two reference dates whose tenancy sets differ by a handful of
  people — the second is refused by the answering node's minimum-change rule, with DP on as
  with it off, and the refused job keeps its debit (a refusal can depend on the data).

That one answer reveals a target's membership only up to a factor e^ε is checked statistically
on the recipe's own ``combine`` (``tests/recipes/test_dp_matching.py``): hundreds of PSI runs
on the live lab would take too long for the suite.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from datalab.client import Lab
from datalab.errors import BudgetExhausted, Forbidden, JobRefused
from datalab_cli.hub_command import create_user
from datalab_cli.local_lab import LocalLab
from lab_server.settings import HubSettings
from node_agent.identity import IdentityColumns, client_elements
from node_agent.psi_query_sets import bound_per_key
from recipes.missed_registration import SOURCES
from tests.support.proxy import RecordingProxy

RECIPE = "dp_missed_registration"
PAIR = "psi:housing/public_security"
#: the same pair seen from the answering side, capped by public security's admin
REVERSE = "psi:public_security/housing"
#: the answering node's default minimum change (DATALAB_NODE_PSI_MIN_CHANGE)
MIN_CHANGE = 10


@pytest.fixture
def attacker(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    name = f"mallory-{uuid.uuid4().hex[:8]}"
    token = create_user(HubSettings(state_dir=lab.hub_state()), name, "analyst", None)
    with Lab(proxy.url, token) as client:
        yield client


def tenancy_set(city: Path, as_of: str, *, bounded: bool = True) -> set[str]:
    """The god view of the asking node's set on ``as_of`` (the node's own code, run here)."""
    (path,) = city.glob("**/tenancy_contracts.parquet")
    table = pq.read_table(path)
    on = dt.date.fromisoformat(as_of)
    start, end = table.column("start_date"), table.column("end_date")
    current = pc.and_(pc.less_equal(start, on), pc.or_(pc.is_null(end), pc.greater_equal(end, on)))
    table = table.filter(current)
    identity = IdentityColumns(**SOURCES["tenancy"][1].model_dump())
    elements, _ = client_elements(table, identity, "grid", "grid", cascade=True)
    found = sorted({e for e in elements if e is not None})
    return set(bound_per_key(found, 1) if bounded else found)


def test_averaging_the_noisy_cardinality_runs_out_of_the_pairs_budget(
    attacker: Lab, lab: LocalLab, proxy: RecordingProxy
) -> None:
    # the answering agency caps what this analyst may learn about its people from housing
    me = attacker.whoami()["name"]
    with Lab(proxy.url, lab.tokens["admin-public_security"]) as admin:
        assert admin.set_budget(REVERSE, 2.0, analyst=me).cap == 2.0
    with Lab(proxy.url, lab.tokens["admin-housing"]) as other, pytest.raises(Forbidden):
        other.set_budget(REVERSE, 10.0, analyst=me)  # not housing's to raise
    for _ in range(2):  # at most 1.0 per query
        frame = attacker.run(
            RECIPE, source="tenancy", as_of="2026-04-30", epsilon=1.0, progress=False
        )
        assert list(frame.columns) == ["missed", "checked"]
        assert frame.attrs["provenance"].epsilon == 1.0
    with pytest.raises(BudgetExhausted) as err:
        attacker.run(RECIPE, source="tenancy", as_of="2026-04-30", epsilon=0.5, progress=False)
    assert REVERSE in err.value.message and "public_security" in err.value.message
    budget = attacker.budget().set_index("scope")
    for scope in (PAIR, REVERSE):  # both sides of the pair are charged, and shown
        assert budget.loc[scope, "spent"] == pytest.approx(2.0)
    assert budget.loc[REVERSE, "remaining"] == pytest.approx(0.0)
    assert budget.loc[PAIR, "remaining"] == pytest.approx(1.0)  # housing's default cap is 3
    others = budget.drop(index=[PAIR, REVERSE])
    assert (others["spent"] == 0).all()  # the datasets' own budgets are not touched
    # the pair is charged, not the query: another date, through a new session, is refused too
    token = attacker._http.headers["Authorization"].split()[1]
    with Lab(attacker.url, token) as again, pytest.raises(BudgetExhausted):
        again.run(RECIPE, source="tenancy", epsilon=0.1, progress=False)


def test_set_plus_one_target_is_refused_with_dp_on_and_still_charged(
    attacker: Lab, city: Path
) -> None:
    # two reference dates a few days apart whose sets differ by 1..3 people (a contract that
    # starts or ends in between): "S" and "S plus (or minus) a target"
    base = dt.date(2026, 2, 1)
    sets = {}
    pair = None
    for day in range(60):
        when = (base + dt.timedelta(days=day)).isoformat()
        sets[when] = tenancy_set(city, when)
        earlier = (base + dt.timedelta(days=day - 1)).isoformat()
        if earlier in sets and 1 <= len(sets[when] ^ sets[earlier]) <= 3:
            pair = (earlier, when)
            break
    assert pair is not None, "no two consecutive days differ by 1..3 tenancies"
    first, second = pair
    assert len(sets[first]) >= 100
    # far from every other set asked in this session (those are months away)
    assert len(sets[first] ^ tenancy_set(city, "2026-04-30")) >= MIN_CHANGE
    assert len(sets[first] ^ tenancy_set(city, "2026-06-30")) >= MIN_CHANGE

    attacker.run(RECIPE, source="tenancy", as_of=first, epsilon=0.5, progress=False)
    with pytest.raises(JobRefused) as err:
        attacker.run(RECIPE, source="tenancy", as_of=second, epsilon=0.5, progress=False)
    assert "public_security" in err.value.message
    budget = attacker.budget().set_index("scope")
    assert budget.loc[PAIR, "spent"] == pytest.approx(1.0)  # the refusal kept its debit
    # the exact recipe meets the same rule: it lives on the answering node, not in the recipe
    exact = tenancy_set(city, second, bounded=False)
    assert 1 <= len(exact ^ sets[first]) < MIN_CHANGE
    with pytest.raises(JobRefused):
        attacker.run(
            "missed_registration",
            source="tenancy",
            mode="cardinality",
            as_of=second,
            progress=False,
        )
