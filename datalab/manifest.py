"""The dataset manifest an agency's data folder carries, as written by ``datalab synth`` and loaded
as-is by a node agent.

A manifest describes datasets and columns (type, class, geography), never rows. The node sends the
catalogue part of it (plus row counts) to the hub; the column classes drive the node's policy.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from datalab.geography import Level

MANIFEST_FILE = "manifest.json"


class ColumnClass(StrEnum):
    """How a column may be used; set by the agency that owns it."""

    #: only as a PSI / join key inside the node; never output, never a group key.
    IDENTIFIER = "identifier"
    #: group key only at an approved granularity (geography rolled up to a level).
    QUASI_IDENTIFIER = "quasi_identifier"
    #: aggregated only (count, sum, mean); never a group key.
    SENSITIVE = "sensitive"
    #: free to use as a group key or filter.
    PUBLIC = "public"


ColumnType = Literal["string", "integer", "float", "boolean", "date", "timestamp"]


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnType
    klass: ColumnClass = Field(alias="class")
    description: str = ""
    #: set for columns holding area codes (see datalab.geography): the finest level they hold.
    geo_level: Level | None = None
    #: for categorical columns: the values the column may hold (lets filters be validated).
    values: list[str] | None = None


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    #: the schema this dataset follows; datasets of one kind held by several agencies (e.g. each
    #: district's ``district_population``) can be computed over together.
    kind: str
    path: str  # relative to the agency folder
    format: Literal["parquet", "csv"] = "parquet"
    rows: int
    description: str = ""
    columns: list[ColumnSpec]

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


class AgencyManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency: str
    title: str
    description: str = ""
    generated_by: str = ""
    datasets: list[DatasetSpec]

    def dataset(self, name: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.name == name), None)

    @classmethod
    def load(cls, folder: Path) -> AgencyManifest:
        return cls.model_validate_json((folder / MANIFEST_FILE).read_text(encoding="utf-8"))

    def write(self, folder: Path) -> None:
        data = self.model_dump(mode="json", by_alias=True)
        (folder / MANIFEST_FILE).write_text(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
