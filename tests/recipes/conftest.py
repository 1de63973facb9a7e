"""A small catalogue shaped like the synthetic city's (docs/synthetic-city.md), built by hand so
the recipe tests need no generated data."""

from __future__ import annotations

from typing import Any

import pytest

from datalab.manifest import ColumnSpec
from datalab.wire import CatalogueDataset

SEX = ["M", "F"]
AGE_BANDS = ["0-14", "15-24", "25-44", "45-59", "60-79", "80+"]


def col(name: str, type_: str, klass: str, **extra: Any) -> ColumnSpec:
    return ColumnSpec.model_validate({"name": name, "type": type_, "class": klass, **extra})


def population(name: str = "population") -> CatalogueDataset:
    return CatalogueDataset(
        name=name,
        kind="district_population",
        rows=1000,
        refreshed_at=0.0,
        columns=[
            col("id_number", "string", "identifier"),
            col("sex", "string", "public", values=SEX),
            col("age", "integer", "quasi_identifier"),
            col("age_band", "string", "public", values=AGE_BANDS),
            col("grid", "string", "quasi_identifier", geo_level="grid"),
            col("is_migrant", "boolean", "public"),
            col("employed", "boolean", "public"),
            col("monthly_income", "float", "sensitive"),
            col("household_size", "integer", "sensitive"),
        ],
    )


def health_records() -> CatalogueDataset:
    return CatalogueDataset(
        name="health_records",
        kind="health_conditions",
        rows=500,
        refreshed_at=0.0,
        columns=[
            col("id_number", "string", "identifier"),
            col("name", "string", "identifier"),
            col("sex", "string", "quasi_identifier", values=SEX),
            col("birth_date", "date", "quasi_identifier"),
            col("residence_grid", "string", "quasi_identifier", geo_level="grid"),
            col(
                "condition",
                "string",
                "public",
                values=["chronic_illness", "disability", "pregnancy"],
            ),
            col("recorded_on", "date", "public"),
        ],
    )


def benefits() -> CatalogueDataset:
    return CatalogueDataset(
        name="benefits",
        kind="benefit_recipients",
        rows=300,
        refreshed_at=0.0,
        columns=[
            col("id_number", "string", "identifier"),
            col("name", "string", "identifier"),
            col("sex", "string", "quasi_identifier", values=SEX),
            col("birth_date", "date", "quasi_identifier"),
            col("grid", "string", "quasi_identifier", geo_level="grid"),
            col(
                "benefit", "string", "public", values=["elderly_allowance", "disability_allowance"]
            ),
            col("since", "date", "public"),
        ],
    )


@pytest.fixture
def catalogue() -> list[tuple[str, CatalogueDataset]]:
    return [
        ("district_440103", population()),
        ("district_440104", population()),
        ("health", health_records()),
        ("civil_affairs", benefits()),
    ]
