"""The recipe contract: what a reviewed computation declares and the three things it does.

A recipe is a module in this package holding one ``Recipe`` subclass. Its manifest says what it is
for, which kinds of dataset it reads, its typed and bounded parameters, its output and its
disclosure policy. Its code does three things and nothing else:

* ``targets`` (hub): which agencies' datasets a job touches, chosen from the catalogue;
* ``plan`` (node): a declarative ``AggregatePlan`` for one dataset — never code, never SQL — that
  the node checks against its column policy and its connector compiles for its engine;
* ``combine`` (hub): merge the nodes' partial tables into one table before disclosure control.

Recipes know nothing of HTTP, of SQL engines or of where they run. A recipe is identified by
``name@version`` and the sha256 of its module's source; an approval pins that hash.
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from datalab.errors import InvalidParameters, JobFailed
from datalab.geography import Level
from datalab.wire import CatalogueDataset, Table

ParamType = Literal[
    "int", "float", "str", "bool", "level", "str_list", "filter_list", "value_lists"
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(Strict):
    name: str
    type: ParamType
    description: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    #: allowed values (for str / level / each item of str_list)
    choices: list[str] | None = None
    #: for list types: the most items allowed
    max_items: int | None = None


class DatasetRole(Strict):
    role: str
    kind: str
    required_columns: list[str] = Field(default_factory=list)
    description: str = ""


class OutputColumn(Strict):
    name: str
    type: str
    description: str = ""


class DisclosurePolicy(Strict):
    #: the smallest count a released cell may have (the nodes' own minimums can raise it).
    min_cell: int = 10
    #: suppress complementary cells up the area hierarchy and across other group keys.
    complementary: bool = True
    #: release a result without the nodes that did not answer (and say which), or fail the job.
    allow_missing_nodes: bool = False
    #: round released counts to a multiple of this base after suppression (0: no rounding).
    rounding_base: int = 0
    #: refuse a result computed over fewer rows than this (all cells together).
    min_query_set: int = 10
    #: refuse a filtered result leaving between 1 and this many rows outside its query set.
    min_complement: int = 10
    #: (n,k) dominance for sums: withhold a cell whose n largest contributions exceed k%.
    dominance_n: int = 2
    dominance_k: float = 85.0
    #: p% rule for sums: withhold a cell where total − two largest < p% of the largest.
    p_percent: float = 10.0


class RecipeManifest(Strict):
    name: str
    version: str
    title: str
    purpose: str
    datasets: list[DatasetRole]
    params: list[ParamSpec]
    output: list[OutputColumn]
    disclosure: DisclosurePolicy = DisclosurePolicy()


# ------------------------------------------------------------ the declarative node-side plan

FilterOp = Literal["eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "is_null", "not_null"]


class GroupKey(Strict):
    column: str
    #: for area-code columns: roll the code up to this level before grouping.
    level: Level | None = None
    #: the output column name (defaults to the column, or the level for area codes).
    alias: str | None = None

    @property
    def output_name(self) -> str:
        return self.alias or self.level or self.column


class Filter(Strict):
    column: str
    op: FilterOp
    value: Any = None


class Measure(Strict):
    """One aggregate per group. ``top2_abs`` gives the two largest absolute values as a list:
    the hub needs them for the dominance rules of sums and never releases them. ``lower`` /
    ``upper`` clamp each value of a ``sum`` (contribution bounding for differential privacy;
    NaN and infinities are clamped too)."""

    fn: Literal["count", "sum", "count_distinct", "top2_abs"]
    column: str | None = None
    alias: str
    lower: float | None = None
    upper: float | None = None


class AggregatePlan(Strict):
    """A grouped aggregate over one dataset: what a node may be asked to compute."""

    dataset: str
    group_by: list[GroupKey] = Field(default_factory=list)
    filters: list[Filter] = Field(default_factory=list)
    measures: list[Measure]
    #: contribution bounding: keep at most this many rows per value of ``person_column`` (an
    #: identifier column; rows where it is null each count as their own person).
    max_rows_per_person: int | None = None
    person_column: str | None = None


class Target(Strict):
    agency: str
    dataset: str


class Combined(Strict):
    """A combined table before disclosure control, and how to protect it.

    ``count_column`` drives cell suppression; every other measure column of a suppressed row is
    withheld with it. ``geo_column``/``geo_level`` say which key is an area code (for suppression
    up the hierarchy).
    """

    table: Table
    key_columns: list[str]
    count_column: str
    geo_column: str | None = None
    geo_level: Level | None = None
    #: for the dominance rules of sums, per row: (sum, largest contribution, second largest).
    #: Hub-only, never released; None for tables without a sum.
    contributions: list[tuple[float, float, float]] | None = None


# ------------------------------------------------------------ the recipe base class


class Recipe(ABC):
    manifest: ClassVar[RecipeManifest]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def key(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    def code_modules(self) -> list[ModuleType]:
        """The recipe's module and every ``recipes`` module it uses, directly or not.

        An approval must pin all the code that decides what a recipe computes: a recipe that
        reuses another's helpers (``dp_aggregate`` uses ``aggregate``'s checks, every recipe uses
        this contract) would otherwise change behaviour under an unchanged hash.
        """
        start = inspect.getmodule(type(self))
        assert start is not None
        found: dict[str, ModuleType] = {}
        todo = [start]
        while todo:
            module = todo.pop()
            if module.__name__ in found:
                continue
            found[module.__name__] = module
            for value in vars(module).values():
                used = value if isinstance(value, ModuleType) else inspect.getmodule(value)
                if (
                    used is not None
                    and used.__name__.startswith(f"{__package__}.")
                    and used.__name__ not in found
                ):
                    todo.append(used)
        return [start, *sorted((m for m in found.values() if m is not start), key=_name)]

    def code_source(self) -> str:
        """The reviewed source an approval pins: each module with a header naming it."""
        return "".join(f"# ---- {m.__name__}\n{inspect.getsource(m)}" for m in self.code_modules())

    def code_sha256(self) -> str:
        """sha256 of ``code_source()``: what an approval pins."""
        return hashlib.sha256(self.code_source().encode("utf-8")).hexdigest()

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        """Typed, bounded, defaulted parameters; InvalidParameters naming what is wrong.

        The base class checks the manifest's declarations; recipes extend it to check
        parameters against the catalogue (e.g. that a column exists and may be grouped by).
        """
        return validate_params(self.manifest.params, params)

    #: whether the hub audits this recipe's exact releases against differencing (the nodes
    #: answer atom counts over the analyst's earlier query sets). Matching recipes have no
    #: AggregatePlan to audit; their protection is the answering node's minimum set size and
    #: minimum-change rule.
    query_audited: ClassVar[bool] = True

    def privacy_cost(self, params: Mapping[str, Any]) -> float | None:
        """The epsilon a job with these parameters spends from each target dataset's budget
        (None: the recipe is not differentially private, and query auditing applies)."""
        return None

    @abstractmethod
    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """The (agency, dataset) pairs a job with these parameters runs on."""

    @abstractmethod
    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        """The node-side computation for one dataset."""

    @abstractmethod
    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """Merge the nodes' partial tables (hub side), before disclosure control."""


def validate_params(specs: Sequence[ParamSpec], params: Mapping[str, Any]) -> dict[str, Any]:
    known = {s.name: s for s in specs}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidParameters(
            f"unknown parameter {unknown[0]!r}; this recipe takes: {', '.join(sorted(known))}"
        )
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in params or params[spec.name] is None:
            if spec.required:
                raise InvalidParameters(f"parameter {spec.name!r} is required")
            out[spec.name] = spec.default
            continue
        out[spec.name] = _check_one(spec, params[spec.name])
    return out


def _check_one(spec: ParamSpec, value: Any) -> Any:
    name = spec.name
    if spec.type in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParameters(f"parameter {name!r} must be a number, got {_kind(value)}")
        if spec.type == "int" and not (isinstance(value, int) or float(value).is_integer()):
            raise InvalidParameters(f"parameter {name!r} must be an integer")
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidParameters(f"parameter {name!r} must be a finite number")
        if spec.minimum is not None and value < spec.minimum:
            raise InvalidParameters(f"parameter {name!r} must be ≥ {spec.minimum:g}, got {value}")
        if spec.maximum is not None and value > spec.maximum:
            raise InvalidParameters(f"parameter {name!r} must be ≤ {spec.maximum:g}, got {value}")
        return int(value) if spec.type == "int" else float(value)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise InvalidParameters(f"parameter {name!r} must be true or false")
        return value
    if spec.type in ("str", "level"):
        if not isinstance(value, str):
            raise InvalidParameters(f"parameter {name!r} must be a string, got {_kind(value)}")
        _check_choice(spec, value)
        return value
    if spec.type == "str_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise InvalidParameters(f"parameter {name!r} must be a list of strings")
        _check_items(spec, value)
        for v in value:
            _check_choice(spec, v)
        return list(value)
    if spec.type == "filter_list":
        if not isinstance(value, list | tuple):
            raise InvalidParameters(f"parameter {name!r} must be a list of [column, op, value]")
        _check_items(spec, value)
        return [_check_filter(name, item) for item in value]
    if spec.type == "value_lists":
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, list | tuple) and v and len(v) <= 500 and all(_scalar(x) for x in v)
            for v in value
        ):
            raise InvalidParameters(
                f"parameter {name!r} must be a list of non-empty lists of values (≤ 500 each)"
            )
        _check_items(spec, value)
        return [list(v) for v in value]
    raise InvalidParameters(f"parameter {name!r} has an unsupported type")  # pragma: no cover


def _check_filter(name: str, item: Any) -> list[Any]:
    ops = FilterOp.__args__  # type: ignore[attr-defined]
    if isinstance(item, dict):
        item = [item.get("column"), item.get("op"), item.get("value")]
    if not isinstance(item, list | tuple) or len(item) not in (2, 3):
        raise InvalidParameters(f"each item of {name!r} must be [column, op, value]")
    column, op, *rest = item
    value = rest[0] if rest else None
    if not isinstance(column, str) or op not in ops:
        raise InvalidParameters(
            f"bad filter in {name!r}: op must be one of {', '.join(ops)} on a column name"
        )
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > 50:
            raise InvalidParameters(f"filter {column} {op} needs a list of 1 to 50 values")
        if not all(_scalar(v) for v in value):
            raise InvalidParameters(f"filter {column} {op}: values must be scalars")
    elif op not in ("is_null", "not_null") and not _scalar(value):
        raise InvalidParameters(f"filter {column} {op} needs a scalar value")
    return [column, op, value]


def _scalar(value: Any) -> bool:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return False
    return isinstance(value, str | int | float | bool)


def _check_items(spec: ParamSpec, value: Sequence[Any]) -> None:
    if spec.max_items is not None and len(value) > spec.max_items:
        raise InvalidParameters(
            f"parameter {spec.name!r} takes at most {spec.max_items} items, got {len(value)}"
        )


def _check_choice(spec: ParamSpec, value: str) -> None:
    if spec.choices is not None and value not in spec.choices:
        raise InvalidParameters(
            f"parameter {spec.name!r} must be one of {', '.join(spec.choices)}; got {value!r}"
        )


def _kind(value: Any) -> str:
    return type(value).__name__


def check_bounds(params: Mapping[str, Any], bounds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Which of ``params`` fall outside an approval's bounds, as readable messages.

    ``bounds`` maps a parameter to ``{"minimum": x, "maximum": y, "choices": [...]}`` (any
    subset). Used by the node before every task, so an approval narrows what the hub may ask.
    """
    problems: list[str] = []
    for name, bound in bounds.items():
        value = params.get(name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if "choices" in bound and v is not None and v not in bound["choices"]:
                problems.append(f"{name}={v!r} is not among the approved {bound['choices']}")
            if isinstance(v, int | float) and not isinstance(v, bool):
                if "minimum" in bound and v < bound["minimum"]:
                    problems.append(f"{name}={v} is below the approved minimum {bound['minimum']}")
                if "maximum" in bound and v > bound["maximum"]:
                    problems.append(f"{name}={v} is above the approved maximum {bound['maximum']}")
    return problems


# ------------------------------------------------------------ hub-side helpers for combine


def sort_key(value: Any) -> tuple[int, Any]:
    """A total order over mixed cell values (None, bools, numbers, strings), for determinism."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, repr(value))


def add_partials(
    partials: Sequence[Table], keys: Sequence[str], values: Sequence[str]
) -> list[tuple[tuple[Any, ...], list[float]]]:
    """Sum the ``values`` columns of the nodes' partial tables per ``keys``, sorted by key.

    Every additive recipe combines this way (counts and sums add across nodes; means are
    derived from the totals afterwards, never averaged). A partial lacking a column fails the
    job, since a node that answered with another shape did not run the reviewed plan.
    """
    if not partials:
        raise JobFailed("no partial results to combine")
    totals: dict[tuple[Any, ...], list[float]] = {}
    for table in partials:
        missing = [c for c in [*keys, *values] if c not in table.columns]
        if missing:
            raise JobFailed(f"a partial result lacks the column {missing[0]!r}")
        key_at = [table.columns.index(k) for k in keys]
        value_at = [table.columns.index(c) for c in values]
        for row in table.rows:
            acc = totals.setdefault(tuple(row[i] for i in key_at), [0] * len(values))
            for j, i in enumerate(value_at):
                acc[j] += row[i] or 0
    return sorted(totals.items(), key=lambda item: tuple(sort_key(v) for v in item[0]))


def _name(module: ModuleType) -> str:
    return module.__name__
