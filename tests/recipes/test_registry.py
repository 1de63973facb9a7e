"""The default registry and code hashes: what approvals pin."""

from __future__ import annotations

import hashlib
import inspect

import pytest

import recipes.aggregate
import recipes.key_groups
from datalab.errors import NotFound
from recipes.aggregate import FederatedAggregate
from recipes.key_groups import KeyGroupsByArea
from recipes.registry import RecipeRegistry, default_registry


def test_default_registry_lists_the_shipped_recipes() -> None:
    keys = [r.key for r in default_registry().all()]
    assert keys == [
        "aggregate@1.0.0",
        "dp_aggregate@1.0.0",
        "dp_missed_registration@1.0.0",
        "fl_linear@1.0.0",
        "fl_logistic@1.0.0",
        "key_groups@1.0.0",
        "missed_registration@1.0.0",
        "ranking_yield@1.0.0",
        "separation@1.0.0",
        "should_cancel@1.0.0",
        "should_cancel_absent@1.1.0",
    ]


def test_get_latest_and_exact() -> None:
    reg = default_registry()
    assert reg.get("aggregate").key == "aggregate@1.0.0"
    assert reg.get("key_groups", "1.0.0").key == "key_groups@1.0.0"
    assert reg.get("key_groups@1.0.0").name == "key_groups"


def test_latest_version_wins() -> None:
    class Newer(KeyGroupsByArea):
        manifest = KeyGroupsByArea.manifest.model_copy(update={"version": "1.10.0"})

    class Older(KeyGroupsByArea):
        manifest = KeyGroupsByArea.manifest.model_copy(update={"version": "1.9.0"})

    reg = RecipeRegistry([Older(), KeyGroupsByArea(), Newer()])
    assert reg.get("key_groups").version == "1.10.0"
    with pytest.raises(ValueError, match="registered twice"):
        RecipeRegistry([KeyGroupsByArea(), KeyGroupsByArea()])


def test_not_found_messages() -> None:
    reg = default_registry()
    with pytest.raises(
        NotFound, match="no recipe named 'nope'; known recipes: aggregate, dp_aggregate, dp_missed_"
    ):
        reg.get("nope")
    with pytest.raises(NotFound, match=r"no recipe aggregate@9\.9\.9"):
        reg.get("aggregate", "9.9.9")


def test_code_sha256_covers_the_module_and_the_recipes_code_it_uses() -> None:
    agg, kg = FederatedAggregate(), KeyGroupsByArea()
    assert agg.code_sha256() == agg.code_sha256() == FederatedAggregate().code_sha256()
    assert [m.__name__ for m in agg.code_modules()] == ["recipes.aggregate", "recipes.contract"]
    source = "".join(
        f"# ---- {m.__name__}\n{inspect.getsource(m)}"
        for m in (recipes.aggregate, recipes.contract)
    )
    assert agg.code_source() == source
    assert agg.code_sha256() == hashlib.sha256(source.encode("utf-8")).hexdigest()
    # a different source hashes differently, so an approval pins exactly one reviewed code
    assert agg.code_sha256() != kg.code_sha256()
    assert len(agg.code_sha256()) == 64
    # a recipe that reuses another's helpers pins that code too
    dp = default_registry().get("dp_aggregate")
    assert {"recipes.aggregate", "recipes.contract"} <= {m.__name__ for m in dp.code_modules()}


def test_manifests_are_complete() -> None:
    for recipe in default_registry().all():
        m = recipe.manifest
        assert m.purpose and m.title and m.output and m.datasets
        assert all(p.description for p in m.params)
        assert m.disclosure.min_cell == 10
        # complementary suppression unless noise protects every released number
        assert m.disclosure.complementary or recipe.privacy_cost({"epsilon": 1.0}) is not None
        assert not m.disclosure.allow_missing_nodes


def test_code_sha256_changes_when_the_source_changes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib.util
    import sys

    source = inspect.getsource(recipes.key_groups)
    edited = tmp_path / "key_groups_edited.py"
    edited.write_text(source.replace("count_distinct", "count distinct"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("key_groups_edited", edited)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "key_groups_edited", module)
    spec.loader.exec_module(module)
    copy = module.KeyGroupsByArea()
    assert copy.key == KeyGroupsByArea().key  # same name@version ...
    assert copy.code_sha256() != KeyGroupsByArea().code_sha256()  # ... but not the same code
