"""The disclosure rules: every setting, its default, and how a recipe's and agencies' values
combine into the rules one job is released under.

One list (``SETTINGS``) is the truth for what can be set: the hub serves it to analysts (like
DataSHIELD's settings list), agency admins override values for their agency's data, recipes
declare theirs in their ``DisclosurePolicy``, and ``docs/privacy.md`` documents each one (a test
checks that). When several parties set a value, the **strictest** wins: an agency can tighten
the rules for its data, never loosen another agency's or a recipe's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from datalab.errors import InvalidParameters
from recipes.contract import DisclosurePolicy

#: "max": the larger value is stricter; "min": the smaller one; "or": True is stricter.
Strictness = Literal["max", "min", "or"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    type: Literal["int", "float", "bool"]
    strict: Strictness
    description: str
    minimum: float = 0
    maximum: float = 1e9


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "min_cell",
        10,
        "int",
        "max",
        "the smallest count a released cell may have; applied to exact counts, before rounding",
        minimum=1,
    ),
    Setting(
        "rounding_base",
        0,
        "int",
        "max",
        "released counts are rounded to a multiple of this base after suppression (0: none)",
        maximum=1000,
    ),
    Setting(
        "min_query_set",
        10,
        "int",
        "max",
        "a result computed over fewer rows (summed over all cells) is refused",
    ),
    Setting(
        "min_complement",
        10,
        "int",
        "max",
        "a filtered query leaving fewer rows of the datasets outside its query set is refused "
        "(else total minus the answer isolates them)",
    ),
    Setting(
        "dominance_n",
        2,
        "int",
        "max",
        "(n,k) rule: a sum cell is withheld when its n largest contributions exceed k% of it "
        "(0: rule off; at most 2)",
        maximum=2,
    ),
    Setting(
        "dominance_k",
        85.0,
        "float",
        "min",
        "(n,k) rule: the share (percent) of a sum the n largest contributions may reach",
        minimum=1,
        maximum=100,
    ),
    Setting(
        "p_percent",
        10.0,
        "float",
        "max",
        "p% rule: a sum cell is withheld when the total minus its two largest contributions is "
        "below p% of the largest (the runner-up could estimate the largest within p%; 0: off)",
        maximum=100,
    ),
    Setting(
        "complementary",
        True,
        "bool",
        "or",
        "withhold complementary cells so no withheld cell is recovered from coarser totals of "
        "the same query (up the area hierarchy and across dropped keys)",
    ),
    Setting(
        "min_difference",
        10,
        "int",
        "max",
        "query auditing for non-DP recipes: a query whose rows differ from one the analyst was "
        "already released by fewer than this many rows (but not zero) is refused",
    ),
    Setting(
        "epsilon_budget",
        3.0,
        "float",
        "min",
        "differential privacy: total epsilon one analyst may spend on one dataset (never reset)",
        maximum=1000,
    ),
    Setting(
        "max_epsilon_per_query",
        1.0,
        "float",
        "min",
        "differential privacy: the largest epsilon one query may spend",
        minimum=0.001,
        maximum=100,
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: settings a recipe's ``DisclosurePolicy`` may carry (the rest are agency or lab settings).
POLICY_FIELDS = tuple(s.name for s in SETTINGS if s.name in DisclosurePolicy.model_fields)


@dataclass(frozen=True)
class Rules:
    """The rules one release is made under: the strictest of every party's values."""

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def min_cell(self) -> int:
        return int(self.values["min_cell"])


def defaults() -> dict[str, Any]:
    return {s.name: s.default for s in SETTINGS}


def policy_values(policy: DisclosurePolicy) -> dict[str, Any]:
    """The values a recipe's manifest sets (every policy field it has)."""
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


def check_value(name: str, value: Any) -> Any:
    """A setting's value, typed and bounded; InvalidParameters naming what is wrong."""
    setting = BY_NAME.get(name)
    if setting is None:
        known = ", ".join(BY_NAME)
        raise InvalidParameters(f"unknown disclosure setting {name!r}; settings: {known}")
    if setting.type == "bool":
        if not isinstance(value, bool):
            raise InvalidParameters(f"setting {name!r} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidParameters(f"setting {name!r} must be a number")
    if setting.type == "int" and not float(value).is_integer():
        raise InvalidParameters(f"setting {name!r} must be an integer")
    if not setting.minimum <= value <= setting.maximum:
        raise InvalidParameters(
            f"setting {name!r} must be between {setting.minimum:g} and {setting.maximum:g}"
        )
    return int(value) if setting.type == "int" else float(value)


def effective(policy: DisclosurePolicy, layers: Iterable[Mapping[str, Any]] = ()) -> Rules:
    """The rules for one release: the recipe's policy (lab defaults for what it does not set),
    tightened by every layer (an agency's admin settings, a node's own minimum cell size).

    A layer can only make a rule stricter: the recipe's reviewed policy is the floor.
    """
    out = defaults()
    out.update(policy_values(policy))
    for layer in layers:
        for name, value in layer.items():
            setting = BY_NAME.get(name)
            if setting is None or value is None:
                continue
            current = out[name]
            if setting.strict == "max":
                out[name] = max(current, value)
            elif setting.strict == "min":
                out[name] = min(current, value)
            else:
                out[name] = bool(current or value)
    return Rules(out)
