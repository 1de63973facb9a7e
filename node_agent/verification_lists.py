"""Owner-only verification lists: the asking node's own unmatched records, kept in its domain.

In ``reveal`` mode (approved by both agencies) the asking node learns which of its own records
have no registration where they are. That list holds the agency's own identifiers, so it is
written only to the node's state folder (``verification/<job_id>.parquet``, mode 0600), never to
the hub or an analyst; the agency admin exports it for grid workers with
``datalab node export-list``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from datalab.errors import BadRequest, NotFound

COLUMNS = ["id_number", "name", "birth_date", "sex", "area", "group", "status"]
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def split_key(element: str) -> dict[str, str | None]:
    """A match element (``id:<ID>@<area>`` or ``nbs:<name>|<birth>|<sex>@<area>``) as columns."""
    key, _, area = element.rpartition("@")
    row: dict[str, str | None] = dict.fromkeys(COLUMNS)
    row["area"] = area
    if key.startswith("id:"):
        row["id_number"] = key[3:]
    else:
        name, birth, sex = key[4:].split("|")
        row.update(name=name, birth_date=birth, sex=sex)
    return row


def write_list(folder: Path, job_id: str, rows: list[dict[str, str | None]]) -> Path:
    """Write the list atomically (temp file + rename), readable by the node's user only."""
    if not _JOB_ID.match(job_id):
        raise BadRequest("a job id is 32 hex characters")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in COLUMNS})
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o600)
        pq.write_table(table, tmp)
        target = folder / f"{job_id}.parquet"
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def list_path(folder: Path, job_id: str) -> Path:
    if not _JOB_ID.match(job_id):
        raise BadRequest(f"{job_id!r} is not a job id (32 hex characters)")
    path = folder / f"{job_id}.parquet"
    if not path.exists():
        raise NotFound(f"no verification list for job {job_id} in {folder}")
    return path


def available(folder: Path) -> list[tuple[str, int]]:
    """(job id, rows) of every list kept."""
    if not folder.exists():
        return []
    return sorted((p.stem, pq.read_metadata(p).num_rows) for p in folder.glob("*.parquet"))


def export(folder: Path, job_id: str, out: Path) -> int:
    """Copy a list to ``out`` (.csv or .parquet, not overwriting); returns its rows."""
    table = pq.read_table(list_path(folder, job_id))
    if out.exists():
        raise BadRequest(f"{out} exists; choose another file")
    if out.suffix == ".csv":
        pacsv.write_csv(table, out)
    elif out.suffix == ".parquet":
        pq.write_table(table, out)
    else:
        raise BadRequest("export to a .csv or .parquet file")
    return table.num_rows
