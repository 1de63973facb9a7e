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
        "# Cross-agency matching: missed registrations, separation, should-cancel\n\n"
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
        'def heat(frame, ax, title, value="missed"):\n'
        "    code = frame.columns[0]  # grid: rows are communities; community: rows are streets\n"
        "    f = frame.assign(row=frame[code].str[:-3], cell=frame[code].str[-3:])\n"
        '    table = f.pivot(index="row", columns="cell", values=value)\n'
        '    image = ax.imshow(table.to_numpy(dtype=float), cmap="OrRd", aspect="auto")\n'
        "    ax.set_yticks(range(len(table.index)), table.index, fontsize=6)\n"
        '    ax.set_xlabel(f"{code} within its parent area")\n'
        "    ax.set_title(title, fontsize=9)\n"
        "    plt.colorbar(image, ax=ax, shrink=0.8)\n\n\n"
        "fig, axes = plt.subplots(1, 2, figsize=(11, 5))\n"
        'heat(tenancy, axes[0], "tenancy, not registered there")\n'
        'heat(night, axes[1], "night-time presence, not registered there")\n'
        "plt.tight_layout()"
    ),
    new_markdown_cell(
        "## The other two flags\n"
        "`separation`: people living in an area (night-time presence at home) whose *household* "
        "registration is in another grid of the city — computed as two matches of the same "
        "people in one job (registered in the city − registered where they live). "
        "`should_cancel`: active registrations of people with a death certificate (public "
        "security asks health), per community of the registration."
    ),
    new_code_cell(
        'separated = lab.run("separation", source="night_activity", level="grid")\n'
        'deceased = lab.run("should_cancel", level="community")\n'
        "fig, axes = plt.subplots(1, 3, figsize=(15, 5))\n"
        'heat(night, axes[0], "missed registration (night-time presence)")\n'
        'heat(separated, axes[1], "separation: household registered elsewhere", "separated")\n'
        'heat(deceased, axes[2], "should cancel: registered, deceased", "deceased")\n'
        "plt.tight_layout()\n"
        'separated[["separated", "checked"]].sum()'
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


REQUESTING_APPROVAL = [
    new_markdown_cell(
        "# Requesting approval for a recipe\n\n"
        "Every agency decides, recipe by recipe and within bounds, what may be computed on its "
        "data. You **request** a recipe version for a purpose; each agency's admin reviews its "
        "code, manifest and output on mock data, and approves (possibly narrowing the bounds) or "
        "rejects. The approval is signed with the agency's own key and checked by the agency's "
        "node before every task, so not even the lab server can stretch it."
    ),
    new_code_cell(
        "import os\n\n"
        "import matplotlib.pyplot as plt\n\n"
        "from datalab.client import Lab\n"
        "from datalab.errors import JobRefused\n\n"
        'lab = Lab(os.environ.get("DATALAB_URL", "http://127.0.0.1:8700"), '
        'os.environ["DATALAB_TOKEN"])\n'
        "lab.whoami()"
    ),
    new_markdown_cell(
        "## Ask\nThe elderly per area, from civil affairs' benefit records, at street or "
        "district level only."
    ),
    new_code_cell(
        "request = lab.request_approval(\n"
        '    "key_groups",\n'
        '    agencies=["civil_affairs"],\n'
        '    purpose="plan home visits for the elderly per street",\n'
        '    bounds={"level": {"choices": ["district", "street"]}},\n'
        ")\n"
        "[(d.agency, d.state.value) for d in request.decisions]"
    ),
    new_markdown_cell(
        "## The agency decides\nIts admin reviews the request in the lab's web console "
        "(`/console/queue`) or with `datalab approvals approve REQUEST --agency-key DIR`; the "
        "signature is made on the admin's side with the agency key. In this local lab the "
        "admin's token and key folder are given to the notebook so it can play that part."
    ),
    new_code_cell(
        "from pathlib import Path\n\n"
        "from datalab.grants import agency_key, new_grant, sign_grant\n\n"
        'admin_token = os.environ.get("DATALAB_ADMIN_TOKEN")\n'
        "if admin_token:\n"
        "    with Lab(lab.url, admin_token) as admin:\n"
        "        me = admin.whoami()\n"
        "        pending = admin.approval_request(request.request_id)\n"
        "        grant = new_grant(\n"
        '            agency=me["agency"], recipe=pending.recipe, version=pending.version,\n'
        "            code_sha256=pending.code_sha256, bounds=pending.bounds,\n"
        '            approved_by=me["name"], request_id=pending.request_id,\n'
        "        )\n"
        '        key = agency_key(Path(os.environ["DATALAB_AGENCY_KEY_DIR"]))\n'
        "        admin.approve(request.request_id, sign_grant(key, grant))\n"
        "[(d.agency, d.state.value, d.bounds) for d in "
        "lab.approval_request(request.request_id).decisions]"
    ),
    new_markdown_cell("## Inside the bounds, jobs run without further clicks"),
    new_code_cell(
        'elderly = lab.run("key_groups", group="elderly", level="street")\n'
        'top = elderly.dropna(subset=["n"]).sort_values("n").tail(10)\n'
        'ax = top.plot.barh(x="street", y="n", legend=False, figsize=(6, 4))\n'
        'ax.set_xlabel("elderly allowance recipients")\n'
        "plt.tight_layout()"
    ),
    new_markdown_cell(
        "## Outside them, the agency's node refuses and says which bound\n"
        "Grid level was not requested, so it is not approved."
    ),
    new_code_cell(
        "try:\n"
        '    lab.run("key_groups", group="elderly", level="grid")\n'
        "except JobRefused as exc:\n"
        '    print("refused:", exc.message)'
    ),
    new_markdown_cell("## Your requests\nEvery request and decision is in the audit log too."),
    new_code_cell(
        "[(r.recipe, r.purpose, [d.state.value for d in r.decisions]) "
        "for r in lab.approval_requests()]"
    ),
]

FEDERATED_RANKING = [
    new_markdown_cell(
        "# Ranking flags with a federated model\n\n"
        "The seed's campaign confirmed only about 59% of the people it flagged: grid workers "
        "spent four visits in ten on people who were not there. Each district holds the "
        "outcomes of its past visits; pooled, they could teach a model which flags to visit "
        "first, but the outcomes are personal data and stay in each district. So the model is "
        "trained **federally**: every district node takes training steps on its own rows, "
        "SecAgg+ sums the masked updates, and you receive only the aggregate model and its "
        "metrics, never a row or one district's update.\n\n"
        "This needs a lab with Flower: `datalab server --flower` and, for each district, "
        "`datalab node run --flower-superlink HOST:PORT` (or, from Python, "
        "`LocalLab(..., flower=True)` as the tests do)."
    ),
    new_code_cell(
        "import os\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        "from datalab.client import Lab\n"
        "from datalab.errors import DatalabError\n\n"
        'lab = Lab(os.environ.get("DATALAB_URL", "http://127.0.0.1:8700"), '
        'os.environ["DATALAB_TOKEN"])\n'
        'm = lab.recipe("fl_logistic").manifest\n'
        'next(p for p in m["params"] if p["name"] == "features")["default"]'
    ),
    new_markdown_cell(
        "The features are *terms*: each column, each kind of flag (one-hot, from the recipe's "
        "fixed public list of flag types, never from the data) and each column's interaction "
        "with the kind of flag. Train for two rounds: one progress step per secure round (and "
        "one more that evaluates the final model)."
    ),
    new_code_cell('model = lab.train("fl_logistic", rounds=2)\nmodel'),
    new_markdown_cell(
        "Per round: the nodes that answered and the accuracy and loss of the model entering "
        "the round over all their rows (SecAgg+ sums those too). The last round only "
        "evaluates the final model."
    ),
    new_code_cell("model.metrics()"),
    new_code_cell(
        'coef = model.coefficient_table().set_index("term")\ncoef.sort_values("coefficient")'
    ),
    new_markdown_cell(
        "Provenance: the job, the approved FAB hash that trained it, the Flower run and the "
        "district nodes that took part."
    ),
    new_code_cell(
        "model.provenance.model_dump(include={'job_id', 'code_sha256', 'agencies', "
        "'missing_agencies', 'run_id'})"
    ),
    new_markdown_cell(
        "## The model goes back to the districts\n"
        "Each district's admin orders the district's own list with the released model file, "
        "on the district's machine (`datalab node rank --agency D --data DIR --model "
        "model.json --out ranked.csv`); the scores and the list stay there."
    ),
    new_code_cell('model_file = model.save("model.json")\nprint(model_file.read_text()[:300])'),
    new_markdown_cell(
        "## The yield curve, as a lab release\n"
        "How good is the order? The outcomes stay in the districts, so the question goes to "
        "them as a recipe: `ranking_yield` asks each district node to score its own past "
        "flags with the released model, rank them within the district and count flags and "
        "confirmed flags per score decile. The hub adds the deciles up and releases them "
        "through disclosure control. You name the model by its training job: the lab fills "
        "in the weights it released."
    ),
    new_code_cell('deciles = lab.run("ranking_yield", model=model.job_id)\ndeciles'),
    new_code_cell(
        'flags, confirmed = deciles["flags"], deciles["confirmed"]\n'
        "visited = np.concatenate([[0], flags.cumsum() / flags.sum()])\n"
        "found = np.concatenate([[0], confirmed.cumsum() / confirmed.sum()])\n"
        "share = confirmed.sum() / flags.sum()\n"
        "top_half = confirmed[:5].sum() / flags[:5].sum()\n"
        'print(f"confirmed among all flags: {share:.1%}")\n'
        'print(f"found after visiting 50% of the flags: {np.interp(0.5, visited, found):.3f}")\n'
        'print(f"yield lift of the top half: {top_half / share:.2f}")'
    ),
    new_code_cell(
        "fig, ax = plt.subplots(figsize=(5, 5))\n"
        'ax.plot(visited * 100, found * 100, marker="o", label="ranked by the federated model")\n'
        'ax.plot([0, 100], [0, 100], color="grey", linestyle="--", label="random order")\n'
        'ax.set_xlabel("share of flags visited (%)")\n'
        'ax.set_ylabel("share of confirmed flags found (%)")\n'
        'ax.set_title("Yield curve (all districts)")\n'
        "ax.legend()\n"
        "plt.tight_layout()"
    ),
    new_markdown_cell(
        "## What you cannot do\n"
        "The weights are not yours to choose: a crafted weight vector could move one person "
        "across a decile boundary between two runs, and the difference would be that "
        "person's outcome. Nor can you ask for the flags themselves."
    ),
    new_code_cell(
        "try:\n"
        '    lab.run("ranking_yield", model=model.job_id, weights=[0.0] * 21)\n'
        "except DatalabError as exc:\n"
        '    print("refused:", exc.message)\n'
        "try:\n"
        '    lab.run("aggregate", kind="verification_outcomes", group_by=["flag_id"])\n'
        "except DatalabError as exc:\n"
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
    write("02_requesting_approval.ipynb", REQUESTING_APPROVAL)
    write("03_matching.ipynb", MATCHING)
    write("04_federated_ranking.ipynb", FEDERATED_RANKING)
