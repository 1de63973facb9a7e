"""The contract of a training recipe: a Flower app trained across the nodes that hold a dataset.

A ``FlowerRecipe`` is the third kind of ``Recipe`` (after aggregate plans and PSI matching). Its
reviewed code is a Flower app under ``recipes/flower/<app>/`` (ServerApp + ClientApp + model,
with the ``pyproject.toml`` Flower wants), and its code hash is the sha256 of the FAB Flower
builds from that folder. So the approval machinery pins exactly what runs: an agency admin
approves the FAB hash like any recipe hash, the node's gate (``node_agent/flower_gate.py``) runs
only approved hashes, and the hub submits that same folder as the run.

Nodes get no ``AggregatePlan`` and no task: the hub starts a Flower run and each node's SuperNode
takes part if its gate lets the app through. What the analyst gets back is the model (the
aggregate of all nodes' updates under SecAgg+) and its metrics per round, never data.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from datalab.errors import InvalidParameters
from datalab.flower_runtime import fab_sha256, stage_app
from datalab.wire import CatalogueDataset, Table
from recipes.contract import AggregatePlan, Combined, Recipe, Target

#: where the Flower apps live (one folder per app, each a Flower project).
APPS_DIR = Path(__file__).resolve().parent / "flower"
#: the files of an app that Flower packs into its FAB (and reviewers read).
APP_SUFFIXES = (".py", ".toml", ".md")


class FlowerRecipe(Recipe):
    """Base of the training recipes: a Flower app instead of a plan and a combine."""

    #: the app's folder name under ``recipes/flower`` (its ``pyproject.toml``: name, components,
    #: config — so its FAB and hash are its own).
    app: ClassVar[str]
    #: another app folder whose code package this app's FAB carries (two recipes, one reviewed
    #: package, two FABs). None: the app's own folder holds its code.
    code_from: ClassVar[str | None] = None
    #: no query auditing: the release is a model, not a table of counts over a query set.
    query_audited: ClassVar[bool] = False

    @property
    def app_dir(self) -> Path:
        """The folder Flower builds this recipe's FAB from and the hub submits: the app's own
        folder, or — when it borrows another app's code package — a copy of exactly
        ``app_files()`` staged beside the Flower runtime (same files, same FAB hash)."""
        if self.code_from is None:
            return APPS_DIR / self.app
        return stage_app(self.app, self.app_files())

    def app_files(self) -> dict[str, Path]:
        """The FAB's files (path inside the app → source file): the app folder's own, plus the
        code package of ``code_from`` (all of that folder but its pyproject.toml)."""
        files = _files(APPS_DIR / self.app)
        if self.code_from is not None:
            borrowed = _files(APPS_DIR / self.code_from)
            borrowed.pop("pyproject.toml", None)
            files = {**borrowed, **files}
        return dict(sorted(files.items()))

    def code_source(self) -> str:
        """What reviewers read: every file of the app, each with a header naming it."""
        return "".join(
            f"# ---- {self.app}/{name}\n{path.read_text(encoding='utf-8')}"
            for name, path in self.app_files().items()
        )

    def code_sha256(self) -> str:
        """The FAB's sha256: what ``flwr run`` uploads, what nodes are asked to run and what an
        approval pins."""
        return fab_sha256(self.app_dir)

    @abstractmethod
    def run_config(
        self, params: Mapping[str, Any], targets: Sequence[tuple[Target, CatalogueDataset]]
    ) -> dict[str, Any]:
        """The Flower run config of a job (the app's ``[tool.flwr.app.config]`` keys)."""

    #: recipe parameter → the run-config key that carries it to the nodes (what the node's gate
    #: checks an approval's bounds against; see ``run_config_bounds``).
    run_config_keys: ClassVar[dict[str, str]] = {}

    def run_config_bounds(self, bounds: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """An approval's bounds on this recipe's parameters, restated on the run config Flower
        hands the node's ClientApp — all the node's gate sees of a job (it runs in Flower's
        environment and knows no recipe). Each entry: the bound (minimum, maximum, choices),
        plus ``list`` when the run config joins a list parameter with commas. A bound on a
        parameter the run config does not carry is kept under ``param:<name>``, a key no run
        config has, so the gate refuses every run rather than skip a check (fail closed)."""
        lists = {p.name for p in self.manifest.params if p.type.endswith("_list")}
        out: dict[str, Any] = {}
        for name, bound in bounds.items():
            key = self.run_config_keys.get(name, f"param:{name}")
            out[key] = {**bound, **({"list": True} if name in lists else {})}
        return out

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        raise InvalidParameters(f"{self.key} is a training recipe: nodes run its Flower app")

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        raise InvalidParameters(f"{self.key} is a training recipe: SecAgg+ combines its updates")


def _files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in APP_SUFFIXES and "__pycache__" not in p.parts
    }


def trainable(dataset: CatalogueDataset) -> set[str]:
    """The columns of ``dataset`` a training recipe may read: all but identifiers (which are
    join keys only, never features or labels)."""
    return {c.name for c in dataset.columns if c.klass != "identifier"}
