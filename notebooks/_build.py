"""Writes the notebooks from their cell sources (keeps them reviewable as code).

Run: .venv/bin/python notebooks/_build.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

GETTING_STARTED = [
    new_markdown_cell(
        "# Getting started with the data lab\n\n"
        "The lab answers questions across agencies without anyone seeing another agency's "
        "records: each agency's node computes where its data lives and only aggregates that "
        "pass disclosure control come back. You get **results, never rows**.\n\n"
        "Start a lab with `datalab demo --keep`; it prints the URL and your analyst token. "
        "Set them as `DATALAB_URL` and `DATALAB_TOKEN` (or paste them below)."
    ),
    new_code_cell(
        "import os\n\n"
        "import matplotlib.pyplot as plt\n\n"
        "from datalab.client import Lab\n\n"
        'lab = Lab(os.environ.get("DATALAB_URL", "http://127.0.0.1:8700"), '
        'os.environ["DATALAB_TOKEN"])\n'
        "lab.whoami()"
    ),
    new_markdown_cell(
        "## Browse the catalogue\nDatasets, their row counts and every column's class "
        "(identifier, quasi-identifier, sensitive, public). Metadata only."
    ),
    new_code_cell("lab.datasets()"),
    new_code_cell('cols = lab.catalogue()\ncols[cols.agency == "health"]'),
    new_markdown_cell("## What can be run\nEach recipe is reviewed code, pinned by its sha256."),
    new_code_cell("lab.recipes()"),
    new_code_cell('[p["name"] for p in lab.recipe("aggregate").manifest["params"]]'),
    new_markdown_cell(
        "## Run a recipe\nElderly people per street, from civil affairs' benefit records. "
        "Cells below the minimum size come back empty (suppressed), and so do the cells that "
        "would let you recover them from a total."
    ),
    new_code_cell(
        'elderly = lab.run("key_groups", group="elderly", level="street")\nelderly.head(10)'
    ),
    new_code_cell('elderly.attrs["provenance"]'),
    new_code_cell(
        'top = elderly.dropna(subset=["n"]).sort_values("n").tail(15)\n'
        'ax = top.plot.barh(x="street", y="n", legend=False, figsize=(7, 5))\n'
        'ax.set_xlabel("people receiving the elderly allowance")\n'
        'ax.set_title("Elderly per street (top 15)")\n'
        "plt.tight_layout()"
    ),
    new_markdown_cell(
        "## A federated aggregate across district nodes\nEach district's node holds its own "
        "residents; the hub combines their partial sums into one mean per district."
    ),
    new_code_cell(
        "income = lab.run(\n"
        '    "aggregate",\n'
        '    kind="district_population",\n'
        '    measure="mean",\n'
        '    column="monthly_income",\n'
        '    group_by=["grid", "is_migrant"],\n'
        '    level="district",\n'
        ")\n"
        'table = income.pivot(index="district", columns="is_migrant", values="mean")\n'
        "table"
    ),
    new_code_cell(
        'ax = table.plot.bar(figsize=(7, 4))\nax.set_ylabel("mean monthly income")\n'
        "plt.tight_layout()"
    ),
    new_markdown_cell("## What the lab refuses\nIdentifiers are never grouped by or output."),
    new_code_cell(
        "from datalab.errors import InvalidParameters\n\n"
        "try:\n"
        '    lab.run("aggregate", kind="district_population", group_by=["id_number"])\n'
        "except InvalidParameters as exc:\n"
        '    print("refused:", exc.message)'
    ),
]

MATCHING = [
    new_markdown_cell(
        "# Cross-agency matching: suspected missed registrations\n\n"
        "Housing knows who rents where; the activity source knows who sleeps where; public "
        "security knows who is registered where. `missed_registration` matches them by "
        "**private set intersection**: the two agencies' nodes exchange blinded curve points "
        "through the hub, so neither agency, nor the hub, nor you sees the other's "
        "identifiers. You get counts per area, through the usual disclosure control."
    ),
    new_code_cell(
        "import os\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        "from datalab.client import Lab\n\n"
        'lab = Lab(os.environ.get("DATALAB_URL", "http://127.0.0.1:8700"), '
        'os.environ["DATALAB_TOKEN"])\n'
        '[p["name"] for p in lab.recipe("missed_registration").manifest["params"]]'
    ),
    new_markdown_cell(
        "## Tenants without a registration where they rent, per grid\n"
        "`missed` counts the people with a current tenancy in a grid but no active "
        "registration in that grid; `checked` how many tenants were matched at all."
    ),
    new_code_cell(
        'tenancy = lab.run("missed_registration", source="tenancy", level="grid")\n'
        'tenancy.sort_values("missed", ascending=False).head(10)'
    ),
    new_code_cell(
        'night = lab.run("missed_registration", source="night_activity", level="grid")\n'
        'night.attrs["provenance"]'
    ),
    new_markdown_cell(
        "## A map-like heat map\nGrid codes nest (district, street, community, grid), so "
        "laying each community out as a row and its grids as columns keeps neighbours together."
    ),
    new_code_cell(
        "def heat(frame, ax, title):\n"
        '    f = frame.assign(community=frame["grid"].str[:12], cell=frame["grid"].str[12:])\n'
        '    table = f.pivot(index="community", columns="cell", values="missed")\n'
        '    image = ax.imshow(table.to_numpy(dtype=float), cmap="OrRd", aspect="auto")\n'
        "    ax.set_yticks(range(len(table.index)), table.index, fontsize=6)\n"
        '    ax.set_xlabel("grid within the community")\n'
        "    ax.set_title(title)\n"
        "    plt.colorbar(image, ax=ax, shrink=0.8)\n\n\n"
        "fig, axes = plt.subplots(1, 2, figsize=(11, 5))\n"
        'heat(tenancy, axes[0], "tenancy, not registered there")\n'
        'heat(night, axes[1], "night-time presence, not registered there")\n'
        "plt.tight_layout()"
    ),
    new_markdown_cell(
        "## What stays out of reach\nThe list of *who* did not match exists only in owner-only "
        "reveal mode, which both agencies must approve, and it stays in the asking agency's "
        "node for its grid workers. Without those approvals the lab refuses."
    ),
    new_code_cell(
        "from datalab.errors import JobRefused\n\n"
        "try:\n"
        '    lab.run("missed_registration", source="contributions", mode="reveal", '
        'match_level="city")\n'
        "except JobRefused as exc:\n"
        '    print("refused:", exc.message)'
    ),
]


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("01_getting_started.ipynb", GETTING_STARTED)
    write("03_matching.ipynb", MATCHING)
