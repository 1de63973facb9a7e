"""The registry of reviewed recipes, keyed by ``name@version``.

Hub and node build the same default registry from this package, so a recipe's code hash agrees
on both sides exactly when both run the same reviewed source.
"""

from __future__ import annotations

from collections.abc import Iterable

from datalab.errors import NotFound
from recipes.contract import Recipe


class RecipeRegistry:
    def __init__(self, recipes: Iterable[Recipe]) -> None:
        self._by_key: dict[str, Recipe] = {}
        for recipe in recipes:
            if recipe.key in self._by_key:
                raise ValueError(f"recipe {recipe.key} registered twice")
            self._by_key[recipe.key] = recipe

    def all(self) -> list[Recipe]:
        return sorted(self._by_key.values(), key=lambda r: (r.name, _version_key(r.version)))

    def get(self, name: str, version: str | None = None) -> Recipe:
        """The recipe ``name@version`` (latest version when None); NotFound otherwise."""
        if "@" in name and version is None:
            name, version = name.split("@", 1)
        if version is not None:
            recipe = self._by_key.get(f"{name}@{version}")
            if recipe is None:
                raise NotFound(f"no recipe {name}@{version}; see the recipe list")
            return recipe
        versions = [r for r in self._by_key.values() if r.name == name]
        if not versions:
            known = ", ".join(sorted({r.name for r in self._by_key.values()}))
            raise NotFound(f"no recipe named {name!r}; known recipes: {known}")
        return max(versions, key=lambda r: _version_key(r.version))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def default_registry() -> RecipeRegistry:
    """Every recipe shipped in this package."""
    from recipes.aggregate import FederatedAggregate
    from recipes.dp_aggregate import DPAggregate
    from recipes.dp_matching import DPMissedRegistration
    from recipes.fl_linear import FederatedLinear
    from recipes.fl_logistic import FederatedLogistic
    from recipes.key_groups import KeyGroupsByArea
    from recipes.missed_registration import MissedRegistration
    from recipes.ranking_yield import RankingYield
    from recipes.separation import Separation
    from recipes.should_cancel import ShouldCancel
    from recipes.should_cancel_absent import ShouldCancelAbsent

    return RecipeRegistry(
        [
            FederatedAggregate(),
            KeyGroupsByArea(),
            DPAggregate(),
            MissedRegistration(),
            ShouldCancel(),
            Separation(),
            ShouldCancelAbsent(),
            DPMissedRegistration(),
            FederatedLogistic(),
            FederatedLinear(),
            RankingYield(),
        ]
    )
