"""Every notebook runs top to bottom against the live local lab, as an analyst would run it."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from datalab.local_lab import ANALYST, LocalLab

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
#: notebooks that train a federated model: they run against the lab with Flower
FEDERATED = {"04_federated_ranking.ipynb"}


def execute(path: Path, workdir: Path) -> tuple[list[dict], str]:
    """Run the notebook top to bottom; its code cells' outputs and their text."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook should plot its results"
    return outputs, "\n".join(str(o.get("text", "")) for o in outputs)


@pytest.mark.parametrize(
    "path", [p for p in NOTEBOOKS if p.name not in FEDERATED], ids=lambda p: p.name
)
def test_notebook_runs_against_a_live_lab(
    path: Path, lab: LocalLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATALAB_URL", lab.url)
    monkeypatch.setenv("DATALAB_TOKEN", lab.tokens[ANALYST])
    # notebook 02 plays civil affairs' admin too (in a real lab that is another person)
    monkeypatch.setenv("DATALAB_ADMIN_TOKEN", lab.tokens["admin-civil_affairs"])
    monkeypatch.setenv("DATALAB_AGENCY_KEY_DIR", str(lab.node_state("civil_affairs")))
    _, text = execute(path, tmp_path)
    if path.name == "01_getting_started.ipynb":
        assert "refused:" in text and "identifier" in text
    if path.name == "02_requesting_approval.ipynb":
        assert "refused:" in text and "level='grid' is not among the approved" in text
    if path.name == "03_matching.ipynb":
        assert "refused:" in text and "reveal" in text


@pytest.mark.slow
def test_the_federated_ranking_notebook_trains_and_plots_the_yield_curve(
    flower_lab: LocalLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATALAB_URL", flower_lab.url)
    monkeypatch.setenv("DATALAB_TOKEN", flower_lab.tokens[ANALYST])
    # the yield-curve cell plays the synthetic districts' admins (the notebook says so)
    monkeypatch.setenv("DATALAB_CITY_DIR", str(flower_lab.city_dir))
    _, text = execute(
        Path(__file__).parents[2] / "notebooks" / "04_federated_ranking.ipynb", tmp_path
    )
    match = re.search(r"yield lift (\d+\.\d+)", text)
    assert match, text
    assert float(match.group(1)) > 1.15
    # the ranked lists were written in the (played) districts' place, and the model file holds
    # coefficients, not identifiers
    assert len(list(tmp_path.glob("district_*-ranked.parquet"))) >= 2
    assert "id_number" not in (tmp_path / "model.json").read_text(encoding="utf-8")
