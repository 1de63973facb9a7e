"""Score a matching recipe's verification lists against the synthetic city's ground truth.

Only tests, the demo and benchmarks read ``DIR/truth/`` (no node loads it). A list row names a
person by normalised national ID or by name + birth date + sex
(``node_agent/verification_lists.py``) and an area; it is a true positive when that person
carries the flag and the flag's grid lies in the area. Precision is over the distinct persons
listed, recall over the city's flags of the type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Score:
    flag_type: str
    listed: int
    true_positives: int
    flags: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.listed if self.listed else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.flags if self.flags else 0.0

    def line(self) -> str:
        return (
            f"{self.flag_type}: precision {self.precision:.1%}, recall {self.recall:.1%} "
            f"({self.true_positives:,} of {self.listed:,} listed; {self.flags:,} true flags)"
        )


def score_lists(
    city_dir: Path,
    lists: Iterable[Path],
    flag_type: str,
    evidence: str | None = None,
    truth_area: str = "grid",
) -> Score:
    """Score the union of ``lists``; with ``evidence``, only flags carrying that evidence count
    (e.g. ``death_record``: the deceased half of should_cancel). ``truth_area`` is the flag's
    column a listed area must contain: ``grid`` (the grid the flag concerns) or ``home_grid``
    (where the person lives: a separation list names where people live, the flag's ``grid`` is
    the registered one)."""
    truth = Path(city_dir) / "truth"
    people = pq.read_table(
        truth / "people.parquet", columns=["person", "id_number", "name", "sex", "birth_date"]
    )
    by_id = dict(
        zip(
            people.column("id_number").to_pylist(), people.column("person").to_pylist(), strict=True
        )
    )
    births = pc.cast(people.column("birth_date"), "string").to_pylist()
    by_nbs = {
        (n, b, s): p
        for n, b, s, p in zip(
            people.column("name").to_pylist(),
            births,
            people.column("sex").to_pylist(),
            people.column("person").to_pylist(),
            strict=True,
        )
    }
    flags = pq.read_table(
        truth / "flags.parquet", columns=["person", "flag_type", truth_area, "evidence"]
    )
    flagged = {
        p: g
        for p, t, g, e in zip(
            flags.column("person").to_pylist(),
            flags.column("flag_type").to_pylist(),
            flags.column(truth_area).to_pylist(),
            flags.column("evidence").to_pylist(),
            strict=True,
        )
        if t == flag_type and (evidence is None or evidence in (e or "").split(","))
    }
    listed: dict[object, set[str]] = {}
    for path in lists:
        table = pq.read_table(path)
        for row in table.to_pylist():
            if row["id_number"]:
                person = by_id.get(row["id_number"], ("unknown-id", row["id_number"]))
            else:
                key = (row["name"], row["birth_date"], row["sex"])
                person = by_nbs.get(key, ("unknown-nbs", key))
            listed.setdefault(person, set()).add(row["area"] or "")
    hits = sum(
        1
        for person, where in listed.items()
        if person in flagged and any(flagged[person].startswith(a) for a in where)
    )
    name = f"{flag_type} ({evidence})" if evidence else flag_type
    return Score(flag_type=name, listed=len(listed), true_positives=hits, flags=len(flagged))
