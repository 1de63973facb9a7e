"""dp_missed_registration: parameters, the bounded client plan, and the noise on the pair.

The statistical test is the one of ``test_noise.py`` applied to the recipe's own ``combine``:
on neighbouring inputs (one more person on the asking side moves ``missed`` and ``checked``
by one each) the frequency of each released value may differ by at most e^ε, and a
recipe that calibrated its noise for one count instead of the pair is caught by the same test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from datalab.errors import InvalidParameters, JobFailed
from datalab.wire import Table
from recipes.contract import Combined, Target
from recipes.dp_matching import DPMissedRegistration
from recipes.noise import noisy_counts
from tests.recipes.test_missed_registration import CATALOGUE, REGISTRATIONS, TENANCY
from tests.recipes.test_noise import worst_violation

RECIPE = DPMissedRegistration()
EPSILON = 1.0
DRAWS = 10_000


def _params(**extra: Any) -> dict[str, Any]:
    return RECIPE.validate({"source": "tenancy", "epsilon": EPSILON, **extra}, CATALOGUE)


def _partial(missed: int, checked: int) -> Table:
    return Table(columns=["missed", "checked"], rows=[[missed, checked]])


def test_epsilon_is_required_and_only_the_cardinality_is_offered() -> None:
    with pytest.raises(InvalidParameters, match="epsilon"):
        RECIPE.validate({"source": "tenancy"}, CATALOGUE)
    for exact_only in ({"mode": "per_group"}, {"level": "grid"}):
        with pytest.raises(InvalidParameters, match="unknown parameter"):
            RECIPE.validate({"source": "tenancy", "epsilon": EPSILON, **exact_only}, CATALOGUE)
    with pytest.raises(InvalidParameters, match="max_areas_per_person"):
        RECIPE.validate({"source": "tenancy", "epsilon": EPSILON, "max_areas_per_person": 9})
    params = _params()
    assert RECIPE.privacy_cost(params) == EPSILON


def test_the_budget_is_the_pair_of_agencies_asking_first() -> None:
    params = _params()
    targets = RECIPE.targets(params, CATALOGUE)
    assert RECIPE.counterparties(targets) == ("housing", "public_security")
    from lab_server import budget

    assert budget.scopes_for(RECIPE, targets) == [
        "psi:housing/public_security",
        "psi:public_security/housing",
    ]


def test_the_asking_node_bounds_areas_per_person_and_asks_one_city_wide_unit() -> None:
    params = _params(max_areas_per_person=2)
    client = RECIPE.psi_plan(params, TENANCY)
    server = RECIPE.psi_plan(params, REGISTRATIONS)
    assert (client.role, client.mode, client.group_level) == ("client", "cardinality", None)
    assert client.max_areas_per_key == 2
    assert (server.role, server.mode, server.max_areas_per_key) == ("server", "cardinality", None)


def test_combine_releases_one_clamped_noisy_pair() -> None:
    params = _params()
    out = RECIPE.combine(params, [_partial(40, 100)])
    assert out.table.columns == ["missed", "checked"] and out.count_column == "missed"
    ((missed, checked),) = out.table.rows
    assert 0 <= missed <= checked
    # tiny true counts: the clamp keeps the pair possible, never negative
    for _ in range(50):
        ((missed, checked),) = RECIPE.combine(params, [_partial(0, 1)]).table.rows
        assert 0 <= missed <= checked
    with pytest.raises(JobFailed):
        RECIPE.combine(params, [_partial(5, 3)])  # more missed than checked: impossible
    with pytest.raises(JobFailed):
        RECIPE.combine(params, [Table(columns=["missed", "checked"], rows=[])])


def _released(recipe: DPMissedRegistration, missed: int, checked: int) -> list[int]:
    """The released ``missed + checked`` (a post-processing of the pair) over many runs."""
    params = _params()
    out = []
    for _ in range(DRAWS):
        ((m, c),) = recipe.combine(params, [_partial(missed, checked)]).table.rows
        out.append(m + c)
    return out


class _PerCountNoise(DPMissedRegistration):
    """Broken on purpose: noise calibrated for one count, though one person moves two."""

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        ((missed, checked),) = partials[0].rows
        m, c = noisy_counts([missed, checked], 1, float(params["epsilon"]))
        return Combined(
            table=Table(columns=["missed", "checked"], rows=[[m, c]]),
            key_columns=[],
            count_column="missed",
        )


def test_one_more_person_changes_the_release_by_at_most_e_to_the_epsilon() -> None:
    assert worst_violation(_released(RECIPE, 40, 100), _released(RECIPE, 41, 101), EPSILON) < 0


def test_the_same_test_catches_noise_calibrated_for_one_count() -> None:
    broken = _PerCountNoise()
    assert worst_violation(_released(broken, 40, 100), _released(broken, 41, 101), EPSILON) > 0


def test_targets_need_both_datasets() -> None:
    with pytest.raises(InvalidParameters, match="population_registration"):
        RECIPE.validate({"source": "tenancy", "epsilon": EPSILON}, [CATALOGUE[1]])
    assert RECIPE.targets(_params(), CATALOGUE)[0] == Target(
        agency="housing", dataset="tenancy_contracts"
    )
