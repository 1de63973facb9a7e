"""Same seed and config, same bytes; another seed, another city."""

from __future__ import annotations

import hashlib
from pathlib import Path

from synthetic_city import SynthConfig, synthesize


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    config = SynthConfig(people=5_000, seed=3, chunk_size=2_000)
    synthesize(config, tmp_path / "a")
    synthesize(config, tmp_path / "b")
    synthesize(config.with_(seed=4), tmp_path / "c")
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k] != c[k]]
    assert "truth/people.parquet" in differing
    assert "public_security/registrations.parquet" in differing
