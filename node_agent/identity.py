"""Identifier normalisation and the matching cascade: the strings a node feeds into PSI.

Every agency writes identities its own way (``docs/synthetic-city.md``): lower-case ``x`` check
characters, sex as ``M``/``F``, ``男``/``女`` or ``1``/``2``, birth dates as dates,
``YYYY/MM/DD`` or ``YYYYMMDD``. Both parties of a match must derive the *same* string from the
same person, so normalisation is one function used by both roles:

* national ID → 18 characters, upper-case ``X``, GB 11643 checksum valid
  (``datalab.gb11643.valid_ids``, the one checksum implementation), key ``id:<ID>``;
* otherwise (missing or invalid ID) → ``nbs:<name>|<yyyy-mm-dd>|<M/F>`` from the NFKC-normalised
  name without spaces, the birth date's digits and the mapped sex code.

The cascade never double-counts: each client record yields at most ONE key (its ID when valid,
else its name+birth+sex), and a name+birth+sex key is dropped when a record with a valid ID in
the same area carries the same name+birth+sex (the same person filed twice). The server side
inserts both keys of each of its records, so either pass can find it. Invalid and missing IDs
are reported only as counts. Keys are derived strings that never leave the node in clear: they
go into openmined-psi, which sends only blinded points, and are never logged.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from datalab.gb11643 import valid_ids
from datalab.geography import CODE_LENGTH, Level

SEX_CODES: dict[str, str] = {
    "M": "M",
    "F": "F",
    "MALE": "M",
    "FEMALE": "F",
    "男": "M",
    "女": "F",
    "1": "M",
    "2": "F",
}
_NOT_DIGIT = re.compile(r"[^0-9]")


@dataclass(frozen=True)
class IdentityColumns:
    """Which of a dataset's columns hold the identity (any but ``id`` may be absent)."""

    id: str
    name: str | None = None
    birth: str | None = None
    sex: str | None = None

    @property
    def has_nbs(self) -> bool:
        return self.name is not None and self.birth is not None and self.sex is not None


@dataclass
class KeyCounts:
    """How a dataset's records fared in normalisation: counts only, never values."""

    records: int = 0
    valid_id: int = 0
    invalid_id: int = 0
    missing_id: int = 0
    by_name_birth_sex: int = 0
    no_key: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def normalise_ids(values: pa.Array | pa.ChunkedArray) -> tuple[list[str | None], list[bool]]:
    """Upper-cased, trimmed IDs and whether each is valid (nulls are invalid)."""
    arr = pc.utf8_upper(pc.utf8_trim_whitespace(pc.cast(values, pa.string())))
    ids = arr.to_pylist()
    return ids, valid_ids(arr).tolist()


def normalise_name(value: str | None) -> str | None:
    if value is None:
        return None
    text = "".join(unicodedata.normalize("NFKC", value).split())
    return text or None


def normalise_birth(value: object) -> str | None:
    """``yyyy-mm-dd`` from a date, ``YYYY/MM/DD``, ``YYYYMMDD`` or ``YYYY-MM-DD``."""
    if value is None:
        return None
    digits = _NOT_DIGIT.sub("", str(value))
    if len(digits) != 8:
        return None
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def normalise_sex(value: object) -> str | None:
    if value is None:
        return None
    return SEX_CODES.get(str(value).strip().upper())


def nbs_keys(table: pa.Table, cols: IdentityColumns) -> list[str | None]:
    """``nbs:<name>|<birth>|<sex>`` per row, or None where a part is missing or unreadable."""
    if not cols.has_nbs:
        return [None] * table.num_rows
    assert cols.name and cols.birth and cols.sex
    names = table.column(cols.name).to_pylist()
    births = pc.cast(table.column(cols.birth), pa.string()).to_pylist()
    sexes = pc.cast(table.column(cols.sex), pa.string()).to_pylist()
    out: list[str | None] = []
    for name, birth, sex in zip(names, births, sexes, strict=True):
        n, b, s = normalise_name(name), normalise_birth(birth), normalise_sex(sex)
        out.append(f"nbs:{n}|{b}|{s}" if n and b and s else None)
    return out


def areas(table: pa.Table, column: str, level: Level) -> list[str | None]:
    codes = pc.utf8_slice_codeunits(
        pc.cast(table.column(column), pa.string()), 0, CODE_LENGTH[level]
    )
    return codes.to_pylist()


def client_elements(
    table: pa.Table, cols: IdentityColumns, area_column: str, match_level: Level, *, cascade: bool
) -> tuple[list[str | None], KeyCounts]:
    """One element ``<key>@<area>`` per record (None when it has no usable key), and counts.

    ``cascade=False`` is ID-only matching: records without a valid ID get no element.
    """
    ids, valid = normalise_ids(table.column(cols.id))
    nbs = nbs_keys(table, cols)
    area = areas(table, area_column, match_level)
    counts = KeyCounts(records=table.num_rows)
    # name+birth+sex keys of records with a valid ID, per area: the same person filed again
    # without (or with a mistyped) ID must not count twice
    covered = {f"{k}@{a}" for k, ok, a in zip(nbs, valid, area, strict=True) if ok and k and a}
    out: list[str | None] = []
    for id_value, ok, key, where in zip(ids, valid, nbs, area, strict=True):
        if ok:
            counts.valid_id += 1
        elif id_value is None or id_value == "":
            counts.missing_id += 1
        else:
            counts.invalid_id += 1
        if where is None:
            counts.no_key += 1
            out.append(None)
        elif ok:
            out.append(f"id:{id_value}@{where}")
        elif cascade and key is not None:
            element = f"{key}@{where}"
            if element in covered:
                out.append(None)  # counted under its valid ID already
            else:
                counts.by_name_birth_sex += 1
                out.append(element)
        else:
            counts.no_key += 1
            out.append(None)
    return out, counts


def server_elements(
    table: pa.Table, cols: IdentityColumns, area_column: str, match_level: Level
) -> tuple[list[str], KeyCounts]:
    """Every key of every record (its valid ID and its name+birth+sex), deduplicated."""
    ids, valid = normalise_ids(table.column(cols.id))
    nbs = nbs_keys(table, cols)
    area = areas(table, area_column, match_level)
    counts = KeyCounts(records=table.num_rows)
    out: set[str] = set()
    for id_value, ok, key, where in zip(ids, valid, nbs, area, strict=True):
        if ok:
            counts.valid_id += 1
        elif id_value is None or id_value == "":
            counts.missing_id += 1
        else:
            counts.invalid_id += 1
        if where is None:
            counts.no_key += 1
            continue
        if ok:
            out.add(f"id:{id_value}@{where}")
        if key is not None:
            out.add(f"{key}@{where}")
            counts.by_name_birth_sex += 1
    return sorted(out), counts
