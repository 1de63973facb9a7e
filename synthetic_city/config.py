"""Every knob of the synthetic city, in one frozen dataclass.

The defaults are tuned to the seed account of Guangzhou (more than half migrants, most of them in
urban villages, a verification campaign that confirmed 58.61% of its flags). A run is a pure
function of this object: the reference date is fixed here rather than read from the wall clock so
that the same seed gives the same bytes on any day.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

#: Upper bound on districts: the city has eleven real district codes (see ``origins.py``).
MAX_DISTRICTS = 11


def default_districts(people: int) -> int:
    """Districts scale with the city: 4 up to 100k people, growing to all 11 by about 3M."""
    if people <= 100_000:
        return 4
    return min(MAX_DISTRICTS, 4 + math.ceil(3.5 * math.log10(people / 100_000) * 2) // 2)


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator; every share is a probability in [0, 1]."""

    # --- size and determinism -------------------------------------------------------------
    #: people ever resident in the window (alive, dead within ``death_window_years``, or left).
    people: int = 20_000
    seed: int = 7
    #: districts; None means ``default_districts(people)``.
    districts: int | None = None
    #: people generated per chunk; bounds memory. Output depends on it (row groups, ID sequence).
    chunk_size: int = 500_000
    #: "today" for the whole city; never the wall clock.
    reference_date: dt.date = dt.date(2026, 6, 30)
    #: "parquet" or "csv" for agency datasets (geography and truth are always Parquet).
    format: str = "parquet"

    # --- geography ------------------------------------------------------------------------
    #: average people per grid; the number of grids is ``people / people_per_grid``.
    people_per_grid: int = 600
    #: share of communities that are urban villages (城中村).
    urban_village_community_share: float = 0.12
    #: people per employer (sets the number of employers and so workplace grids).
    people_per_employer: int = 25

    # --- people ---------------------------------------------------------------------------
    #: share of people who are migrants (floating population, household registered elsewhere).
    migrant_share: float = 0.55
    #: share of migrants whose home is in an urban-village grid.
    migrant_urban_village_share: float = 0.60
    #: share of locals whose home is in an urban-village grid.
    local_urban_village_share: float = 0.08
    #: age-band shares (bands 0-14, 15-24, 25-44, 45-59, 60-79, 80+) for locals.
    local_age_bands: tuple[float, ...] = (0.14, 0.09, 0.28, 0.25, 0.20, 0.04)
    #: age-band shares for migrants: mostly working age.
    migrant_age_bands: tuple[float, ...] = (0.09, 0.17, 0.52, 0.17, 0.045, 0.005)
    #: share of locals whose ID region code is one of the city's district codes (born here).
    local_born_here_share: float = 0.8
    #: employment among working-age (18-59) people in the city.
    local_employment_rate: float = 0.68
    migrant_employment_rate: float = 0.82
    #: share of the employed with a formal job known to HRSS (contract + contributions).
    local_insured_share: float = 0.9
    migrant_insured_share: float = 0.6
    #: share renting their home (a tenancy contract in their home grid).
    local_renter_share: float = 0.15
    migrant_renter_share: float = 0.7

    # --- life course ----------------------------------------------------------------------
    #: deaths are drawn over this many years before the reference date (Gompertz-like by age).
    death_window_years: float = 3.0
    #: share who left the city (in the last four years).
    local_left_share: float = 0.02
    migrant_left_share: float = 0.08
    #: share of in-city people who moved between grids within the city.
    local_moved_share: float = 0.20
    migrant_moved_share: float = 0.25
    #: share of movers who moved their registration with them (the rest leave it behind).
    local_reregister_share: float = 0.40
    migrant_reregister_share: float = 0.50

    # --- registration (public security) ---------------------------------------------------
    #: share of migrants who ever took out a floating-population registration.
    migrant_registered_share: float = 0.70
    #: share of deaths whose registration gets cancelled (after a lag) at all.
    death_cancel_share: float = 0.85
    #: mean lag in days between a death and its registration cancellation (late updates).
    death_cancel_lag_days: float = 45.0
    #: share of leavers whose registration is cancelled.
    local_left_cancel_share: float = 0.5
    migrant_left_cancel_share: float = 0.3
    #: minimum age for a missed-registration flag (residence permits start at 16).
    registration_min_age: int = 16

    # --- other agencies -------------------------------------------------------------------
    #: months of social-insurance contributions up to the reference month.
    contribution_months: int = 12
    #: mean activity events per in-city person over the last ``activity_days`` days.
    events_per_person: float = 8.0
    activity_days: int = 30
    #: share of in-city people seen by the activity source at all.
    activity_coverage: float = 0.85
    #: share of activity events at night (at home); the rest are by day.
    night_event_share: float = 0.45
    #: age from which locals receive the elderly allowance, and its take-up.
    elderly_allowance_age: int = 70
    elderly_allowance_takeup: float = 0.9
    disability_allowance_takeup: float = 0.6
    #: school enrolment of in-city children aged 6-17.
    local_enrolment_rate: float = 0.98
    migrant_enrolment_rate: float = 0.85

    # --- dirt -----------------------------------------------------------------------------
    #: share of ID values (outside public security, deaths, district nodes) with one digit wrong.
    id_typo_rate: float = 0.01
    #: share of IDs missing (null), per dataset.
    missing_id_tenancy: float = 0.04
    missing_id_health: float = 0.03
    missing_id_activity: float = 0.08
    #: share of housing IDs ending in X that are written with a lower-case x.
    lowercase_x_housing: float = 0.7
    #: share of rows duplicated (tenancy: near duplicates; others exact).
    duplicate_rate: float = 0.01
    #: share of records that miss an update: tenancy contracts left open after the tenant left or
    #: died, allowances still listed after the recipient died.
    late_update_share: float = 0.2

    # --- verification campaign ------------------------------------------------------------
    #: share of true flags that a past campaign sent for verification.
    verification_sample_share: float = 0.3
    #: target overall confirmation rate (the seed's campaign: 789,700 / 1,347,400).
    verification_confirm_rate: float = 0.5861
    #: P(confirmed | flag true) and P(confirmed | flag false): grid workers make mistakes.
    verification_true_positive: float = 0.88
    verification_false_positive: float = 0.10

    def __post_init__(self) -> None:
        if self.people < 1:
            raise ValueError("people must be at least 1")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        if self.districts is not None and not 1 <= self.districts <= MAX_DISTRICTS:
            raise ValueError(f"districts must be between 1 and {MAX_DISTRICTS}")
        if self.chunk_size < 1000:
            raise ValueError("chunk_size must be at least 1000")
        if self.format not in ("parquet", "csv"):
            raise ValueError("format must be 'parquet' or 'csv'")
        for band in (self.local_age_bands, self.migrant_age_bands):
            if len(band) != 6 or abs(sum(band) - 1.0) > 1e-6:
                raise ValueError("age bands must be six shares summing to 1")
        tp, fp = self.verification_true_positive, self.verification_false_positive
        if not fp < self.verification_confirm_rate < tp:
            raise ValueError("verification_confirm_rate must lie between the FP and TP rates")

    @property
    def n_districts(self) -> int:
        return self.districts if self.districts is not None else default_districts(self.people)

    @property
    def verification_true_share(self) -> float:
        """Share of verified flags that are true, so that the confirmation rate hits the target."""
        tp, fp = self.verification_true_positive, self.verification_false_positive
        return (self.verification_confirm_rate - fp) / (tp - fp)

    def with_(self, **changes: object) -> SynthConfig:
        return replace(self, **changes)  # type: ignore[arg-type]
