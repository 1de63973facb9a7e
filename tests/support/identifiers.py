"""Find a synthetic city's identifiers (national IDs, names) in arbitrary bytes.

Attack tests use this to assert that no identifier leaked into a response, a database or a
captured stream. Matching extracts candidate tokens and looks them up in sets, so a scan of many
megabytes against a whole city stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

_ID_RE = re.compile(rb"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_HAN_RE = re.compile(r"[\u4e00-\u9fff]{2,4}")
_ESCAPE_RE = re.compile(r"\\u([0-9a-fA-F]{4})")


@dataclass(frozen=True)
class CityIdentifiers:
    ids: frozenset[str]
    names: frozenset[str]

    @classmethod
    def load(cls, city_dir: Path) -> CityIdentifiers:
        people = pq.read_table(city_dir / "truth" / "people.parquet", columns=["id_number", "name"])
        ids = frozenset(str(v).upper() for v in people.column("id_number").to_pylist() if v)
        names = frozenset(str(v) for v in people.column("name").to_pylist() if v)
        return cls(ids=ids, names=names)

    def leaked_ids(self, data: bytes) -> set[str]:
        found = {m.group(0).decode().upper() for m in _ID_RE.finditer(data)}
        return found & self.ids

    def leaked_names(self, data: bytes) -> set[str]:
        text = data.decode("utf-8", errors="ignore")
        if "\\u" in text:  # JSON may escape non-ASCII as \uXXXX
            text += " " + _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
        found: set[str] = set()
        for run in _HAN_RE.findall(text):
            # a name may sit inside a longer run of Hanzi: check every 2–3 character window
            for size in (2, 3):
                for i in range(len(run) - size + 1):
                    if run[i : i + size] in self.names:
                        found.add(run[i : i + size])
        return found

    def leaks(self, data: bytes) -> set[str]:
        return self.leaked_ids(data) | self.leaked_names(data)
