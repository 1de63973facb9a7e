"""Differential-privacy noise, from OpenDP's measurements only (never numpy or random).

Two mechanisms, both OpenDP's ``make_laplace`` over a vector with an L1 sensitivity:

* counts — integers, so OpenDP samples the *discrete* Laplace (geometric) distribution exactly;
* sums — floats, OpenDP's floating-point-safe continuous Laplace.

The scale is chosen so that OpenDP's own privacy map says the release costs at most the epsilon
asked for; the epsilon charged to the budget is that epsilon, never a number we derived by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import opendp.prelude as dp

dp.enable_features("contrib")

#: a guard against float drift between OpenDP's map and the epsilon we charge.
_EPS_SLACK = 1e-9


def count_mechanism_with_scale(scale: float) -> dp.Measurement:
    """Discrete Laplace noise of ``scale`` on a vector of integer counts."""
    return dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale
    )


def count_mechanism(sensitivity: int, epsilon: float) -> dp.Measurement:
    """Noise for counts whose L1 distance between neighbouring datasets is ``sensitivity``,
    costing at most ``epsilon`` by OpenDP's own privacy map."""
    meas = count_mechanism_with_scale(sensitivity / epsilon)
    spent = float(meas.map(sensitivity))
    if spent > epsilon + _EPS_SLACK:  # pragma: no cover - OpenDP's map is d_in / scale
        raise ValueError(f"count mechanism would spend {spent}, more than {epsilon}")
    return meas


def sum_mechanism(sensitivity: float, epsilon: float) -> dp.Measurement:
    """Laplace noise for float sums with L1 ``sensitivity``, at most ``epsilon`` (OpenDP's map
    includes its floating-point slack, so the scale is found by OpenDP's binary search)."""
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    metric = dp.l1_distance(T=float)
    scale = dp.binary_search_param(
        lambda s: dp.m.make_laplace(domain, metric, scale=s), d_in=sensitivity, d_out=epsilon
    )
    return dp.m.make_laplace(domain, metric, scale=scale)


def noisy_counts(counts: Sequence[int], sensitivity: int, epsilon: float) -> list[int]:
    if not counts:
        return []
    return [int(v) for v in count_mechanism(sensitivity, epsilon)([int(c) for c in counts])]


def noisy_sums(sums: Sequence[float], sensitivity: float, epsilon: float) -> list[float]:
    if not sums:
        return []
    return [float(v) for v in sum_mechanism(sensitivity, epsilon)([float(s) for s in sums])]
