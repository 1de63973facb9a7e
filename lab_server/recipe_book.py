"""The recipes this hub serves: the registry, each recipe's code hash (computed once), and the
``recipes`` table kept in step with them at start so the database says what ran under which code.
"""

from __future__ import annotations

from sqlalchemy import select

from datalab.wire import RecipeInfo
from lab_server.db import Database, RecipeRow
from recipes.contract import Recipe
from recipes.registry import RecipeRegistry


class RecipeBook:
    def __init__(self, registry: RecipeRegistry) -> None:
        self._registry = registry
        # Hashing reads each module's source: do it once, not per job.
        self._code = {r.key: r.code_sha256() for r in registry.all()}

    def get(self, name: str, version: str | None = None) -> Recipe:
        """The recipe ``name`` (latest, or ``version``); NotFound naming the known ones."""
        return self._registry.get(name, version)

    def code_sha256(self, recipe: Recipe) -> str:
        return self._code[recipe.key]

    def info(self, recipe: Recipe) -> RecipeInfo:
        return RecipeInfo(
            name=recipe.name,
            version=recipe.version,
            code_sha256=self.code_sha256(recipe),
            manifest=recipe.manifest.model_dump(mode="json"),
        )

    def all(self) -> list[Recipe]:
        return list(self._registry.all())

    def infos(self) -> list[RecipeInfo]:
        return [self.info(r) for r in self._registry.all()]

    def sync(self, db: Database) -> None:
        """Upsert every recipe's hash and manifest into the ``recipes`` table."""
        with db.write() as session:
            rows = {
                (row.name, row.version): row for row in session.execute(select(RecipeRow)).scalars()
            }
            for info in self.infos():
                row = rows.get((info.name, info.version))
                if row is None:
                    session.add(
                        RecipeRow(
                            name=info.name,
                            version=info.version,
                            code_sha256=info.code_sha256,
                            manifest=info.manifest,
                        )
                    )
                elif row.code_sha256 != info.code_sha256 or row.manifest != info.manifest:
                    row.code_sha256 = info.code_sha256
                    row.manifest = info.manifest
