"""Every notebook runs top to bottom against the live local lab, as an analyst would run it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from datalab.local_lab import ANALYST, LocalLab

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_against_a_live_lab(
    path: Path, lab: LocalLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATALAB_URL", lab.url)
    monkeypatch.setenv("DATALAB_TOKEN", lab.tokens[ANALYST])
    # notebook 02 plays civil affairs' admin too (in a real lab that is another person)
    monkeypatch.setenv("DATALAB_ADMIN_TOKEN", lab.tokens["admin-civil_affairs"])
    monkeypatch.setenv("DATALAB_AGENCY_KEY_DIR", str(lab.node_state("civil_affairs")))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook should plot its results"
    text = "\n".join(str(o.get("text", "")) for o in outputs)
    if path.name == "01_getting_started.ipynb":
        assert "refused:" in text and "identifier" in text
    if path.name == "02_requesting_approval.ipynb":
        assert "refused:" in text and "level='grid' is not among the approved" in text
    if path.name == "03_matching.ipynb":
        assert "refused:" in text and "reveal" in text
