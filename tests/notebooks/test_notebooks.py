"""Every notebook runs top to bottom against the live local lab, as an analyst would run it."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from datalab_cli.local_lab import ANALYST, LocalLab

HERE = Path(__file__).parents[2] / "notebooks"
#: the federated notebook needs the Flower lab; the others run against the shared lab.
FEDERATED = HERE / "04_federated_ranking.ipynb"
NOTEBOOKS = sorted(p for p in HERE.glob("*.ipynb") if p != FEDERATED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_against_a_live_lab(
    path: Path, lab: LocalLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATALAB_URL", lab.url)
    monkeypatch.setenv("DATALAB_TOKEN", lab.tokens[ANALYST])
    # notebook 02 plays civil affairs' admin too (in a real lab that is another person)
    monkeypatch.setenv("DATALAB_ADMIN_TOKEN", lab.tokens["admin-civil_affairs"])
    monkeypatch.setenv("DATALAB_AGENCY_KEY_DIR", str(lab.node_state("civil_affairs")))
    text = _execute(path, tmp_path)
    if path.name == "01_getting_started.ipynb":
        assert "refused:" in text and "identifier" in text
    if path.name == "02_requesting_approval.ipynb":
        assert "refused:" in text and "level='grid' is not among the approved" in text
    if path.name == "03_matching.ipynb":
        assert "refused:" in text and "reveal" in text


def test_federated_notebook_trains_and_plots_the_yield_curve(
    flower_lab: LocalLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Notebook 04 in the Flower lab, before the federated scenario kills a node (the test
    ordering hook in tests/conftest.py runs it first among the Flower tests)."""
    monkeypatch.setenv("DATALAB_URL", flower_lab.url)
    monkeypatch.setenv("DATALAB_TOKEN", flower_lab.tokens[ANALYST])
    text = _execute(FEDERATED, tmp_path, timeout=900)
    # two training rounds and the evaluation round, every district answering
    assert "fl_logistic" in text and (tmp_path / "model.json").exists()
    assert '"kind": "logistic"' in (tmp_path / "model.json").read_text(encoding="utf-8")
    found = float(re.search(r"found after visiting 50% of the flags: ([0-9.]+)", text)[1])
    lift = float(re.search(r"yield lift of the top half: ([0-9.]+)", text)[1])
    assert found > 0.55, "the curve should lie above the diagonal at 50 % visited"
    assert lift > 1.1
    assert "refused: parameter 'weights' cannot be given" in text
    assert text.count("refused:") == 2 and "identifier" in text


def _execute(path: Path, where: Path, timeout: int = 300) -> str:
    """Run the notebook in ``where``; fail on any error cell; the text it printed."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(where)}}
    ).execute()
    nbformat.write(nb, where / f"executed-{path.name}")  # kept for a look after a failure
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook should plot its results"
    return "\n".join(str(o.get("text", "")) for o in outputs)
