"""The statistical test of the noise: on neighbouring datasets, how often each output occurs
may differ by a factor of at most e^ε. A mechanism with half the noise breaks that bound, and
the same test must catch it — otherwise the test proves nothing.

Each output bin's log frequency ratio is estimated with its standard error
(``sqrt(1/a + 1/b)`` for counts a, b); a bin *violates* ε when even the lower end of its
4-sigma interval lies above ε. The draws come from one OpenDP call each (a vector of
identical inputs: the noise is independent per element).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from recipes.noise import (
    count_mechanism,
    count_mechanism_with_scale,
    noisy_counts,
    noisy_sums,
    sum_mechanism,
)

DRAWS = 60_000
EPSILON = 0.5
MIN_BIN = 100


def worst_violation(a: Sequence[float], b: Sequence[float], epsilon: float) -> float:
    """The largest (lower-confidence log ratio − ε) over well-populated bins; > 0 = violated."""
    ca, cb = Counter(a), Counter(b)
    worst = -math.inf
    for key in set(ca) | set(cb):
        x, y = ca.get(key, 0), cb.get(key, 0)
        if x < MIN_BIN or y < MIN_BIN:
            continue
        ratio = abs(math.log(x / y))
        se = math.sqrt(1 / x + 1 / y)
        worst = max(worst, ratio - 4 * se - epsilon)
    return worst


def draws(mechanism: Callable[[list[int]], list[int]], value: int) -> list[int]:
    return list(mechanism([value] * DRAWS))


def test_counts_on_neighbouring_datasets_stay_within_e_to_the_epsilon() -> None:
    meas = count_mechanism(1, EPSILON)
    assert float(meas.map(1)) <= EPSILON + 1e-9  # OpenDP's own accounting
    assert worst_violation(draws(meas, 20), draws(meas, 21), EPSILON) < 0


def test_the_same_test_catches_a_mechanism_with_half_the_noise() -> None:
    broken = count_mechanism_with_scale((1 / EPSILON) / 2)
    assert worst_violation(draws(broken, 20), draws(broken, 21), EPSILON) > 0


def test_sensitivity_is_respected_for_rows_per_person() -> None:
    # a person with 3 rows moves a count by 3: the mechanism for sensitivity 3 must hide that,
    # and the one for sensitivity 1 must not
    good = count_mechanism(3, EPSILON)
    assert worst_violation(draws(good, 20), draws(good, 23), EPSILON) < 0
    naive = count_mechanism(1, EPSILON)
    assert worst_violation(draws(naive, 20), draws(naive, 23), EPSILON) > 0


def test_bounded_sums_stay_within_e_to_the_epsilon_and_half_noise_is_caught() -> None:
    # one person clamped to [0, 10] moves a sum by at most 10; bins of width 2
    def binned(meas, value: float) -> list[float]:  # type: ignore[no-untyped-def]
        return [math.floor(v / 2.0) for v in meas([value] * DRAWS)]

    good = sum_mechanism(10.0, EPSILON)
    assert worst_violation(binned(good, 100.0), binned(good, 110.0), EPSILON) < 0
    from recipes.noise import dp

    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    broken = dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=10.0 / EPSILON / 2)
    assert worst_violation(binned(broken, 100.0), binned(broken, 110.0), EPSILON) > 0


@pytest.mark.parametrize("epsilon", [0.1, 1.0])
def test_noise_is_unbiased_and_scaled_as_asked(epsilon: float) -> None:
    out = noisy_counts([50] * 20_000, 1, epsilon)
    mean = sum(out) / len(out)
    mad = sum(abs(v - 50) for v in out) / len(out)
    assert abs(mean - 50) < 0.1 / epsilon
    assert 0.8 / epsilon < mad < 1.2 / epsilon  # E|Laplace(b)| = b
    assert noisy_counts([], 1, epsilon) == []
    assert len(noisy_sums([1.0, 2.0], 5.0, epsilon)) == 2
