"""Query auditing for recipes without differential privacy: differencing and tracker attacks.

Suppression protects the cells of one query. An analyst who asks ``count(A)`` and then
``count(A minus one person's quasi-identifiers)`` gets two large, safe counts whose difference is
one person. The hub therefore remembers what each analyst was released (filters and group keys
of each query, and which of its cells were released — never rows) and, before releasing a new
result, asks the nodes for **atom counts**: rows grouped by which queries' filters they match
and by the finest value of every group key used (``node_agent.connector.compile_atoms``). Every
released cell is a union of atoms, so the hub can see what subtracting cells reveals.

The check, for every released cell ``c`` (of the new query or an earlier one):

* every released cell ``d`` of another query that lies inside ``c``: ``|c| − |d|`` must be 0
  or at least ``min_difference`` (differencing; a grouped query rolled up against another);
* disjoint cells of other queries inside ``c``, added greedily from the largest: for each
  prefix ``U``, ``|c| − |U|`` must be 0 or at least ``min_difference`` (trackers: ``count(C1)
  − count(C1 ∧ ¬C2 ∧ F) − count(C1 ∧ M)`` isolating ``C1 ∧ C2 ∧ F``).

This is a heuristic, not a proof: exact auditing of every linear combination of every released
cell is expensive in general (and suppression decisions leak in their own right). What it
does not catch is listed in docs/privacy.md; differential privacy (``dp_aggregate``) is the
answer when that matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from datalab.errors import JobRefused
from datalab.geography import CODE_LENGTH
from datalab.wire import Table
from recipes.contract import GroupKey


@dataclass(frozen=True)
class AuditedQuery:
    """One query as auditing sees it: its id, group keys and the keys of its released cells."""

    query_id: str
    group_by: Sequence[GroupKey]
    released: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class NodeAtoms:
    """One node's atom table, and which query each of its ``p<i>`` columns stands for."""

    table: Table
    query_ids: Sequence[str]


def check_differencing(
    queries: Sequence[AuditedQuery], atoms: Sequence[NodeAtoms], min_difference: int
) -> None:
    """Raise JobRefused when subtracting released cells isolates 1..min_difference-1 rows.

    Cells are sets of atom indices; an atom lies in at most one cell per query, so the cells
    inside ``c`` are found through ``c``'s own atoms (work ∝ atoms × queries², not cells²).
    """
    if min_difference <= 1 or len(queries) < 2:
        return
    counts, cells, owner = _cells(queries, atoms)
    size = [sum(counts[a] for a in cell) for cell in cells]
    cells_of: dict[int, list[int]] = {}
    for i, cell in enumerate(cells):
        for a in cell:
            cells_of.setdefault(a, []).append(i)
    for c, cell in enumerate(cells):
        candidates = {d for a in cell for d in cells_of[a] if owner[d] != owner[c]}
        inside = [d for d in candidates if cells[d] <= cell]
        for d in inside:
            _check(size[c] - size[d], min_difference)
        union: set[int] = set()
        covered = 0
        for d in sorted(inside, key=lambda i: (-size[i], i)):
            if union & cells[d]:
                continue
            union |= cells[d]
            covered += size[d]
            _check(size[c] - covered, min_difference)


def check_linear(
    queries: Sequence[AuditedQuery], atoms: Sequence[NodeAtoms], min_cell: int
) -> None:
    """Raise JobRefused when linear reasoning over every released cell narrows a small
    withheld cell to an interval narrower than ``min_cell``.

    The attacker's linear program, solved by the hub on the atoms (the finest partition every
    cell is a union of, so bounds over it equal bounds over the data): unknowns are the atom
    counts (≥ 0), constraints are every released cell of every audited query (its exact count)
    and the rows of the datasets (public); for each withheld cell under ``min_cell`` rows (of
    any audited query, the new one included) its min and max. Cross-table suppression could
    withhold more cells instead; refusing the new table is the simple, safe answer.
    """
    if min_cell <= 1 or len(queries) < 2:
        return
    counts, cells, _, withheld = _cells(queries, atoms, with_withheld=True)
    small = [w for w in withheld if 0 < sum(counts[a] for a in w) < min_cell]
    if not small:
        return
    rows = [*sorted({tuple(sorted(c)) for c in cells}), tuple(range(len(counts)))]
    data = [1.0 for r in rows for _ in r]
    row_at = [i for i, r in enumerate(rows) for _ in r]
    col_at = [a for r in rows for a in r]
    a_eq = sparse.csr_matrix((data, (row_at, col_at)), shape=(len(rows), len(counts)))
    b_eq = np.array([float(sum(counts[a] for a in r)) for r in rows])
    for cell in sorted(set(small), key=sorted):
        objective = np.zeros(len(counts))
        objective[list(cell)] = 1.0
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        if low.status != 0 or high.status != 0:  # pragma: no cover - the truth is feasible
            raise JobRefused("query auditing could not check this release; nothing was released")
        if -high.fun - low.fun < min_cell - 1e-6:
            raise JobRefused(
                "query auditing: combined with results you were already released, this query "
                f"would narrow a withheld cell to fewer than {min_cell} possible values (linear "
                "reasoning across tables); nothing was released"
            )


def _check(difference: int, threshold: int) -> None:
    if 0 < difference < threshold:
        raise JobRefused(
            "query auditing: combined with results you were already released, this query "
            f"would let you count fewer than {threshold} people (a differencing or tracker "
            "pattern); nothing was released"
        )


def _cells(
    queries: Sequence[AuditedQuery], atoms: Sequence[NodeAtoms], *, with_withheld: bool = False
) -> Any:
    """Atom counts, each released cell as a set of atoms, and each cell's query index (and,
    ``with_withheld``, each withheld cell — a group of a query not released — too)."""
    index = {q.query_id: i for i, q in enumerate(queries)}
    flat: list[tuple[set[int], dict[str, Any], int]] = []  # (queries matched, keys, n)
    for node in atoms:
        columns = node.table.columns
        bits = [(columns.index(f"p{j}"), index.get(qid)) for j, qid in enumerate(node.query_ids)]
        keys = [(j, c.split(":", 2)) for j, c in enumerate(columns) if c.startswith("k:")]
        n_at = columns.index("n")
        for row in node.table.rows:
            matched = {q for j, q in bits if q is not None and row[j]}
            values = {name: row[j] for j, (_, name, _level) in keys}
            flat.append((matched, values, int(row[n_at])))
    counts = [n for _, _, n in flat]
    cells: list[frozenset[int]] = []
    owner: list[int] = []
    withheld: list[frozenset[int]] = []
    for qi, query in enumerate(queries):
        found: dict[tuple[Any, ...], set[int]] = {}
        hidden: dict[tuple[Any, ...], set[int]] = {}
        wanted = {tuple(k) for k in query.released}
        for a, (matched, values, _) in enumerate(flat):
            if qi not in matched:
                continue
            key = tuple(_rolled(values.get(g.column), g) for g in query.group_by)
            if key in wanted:
                found.setdefault(key, set()).add(a)
            elif with_withheld:
                hidden.setdefault(key, set()).add(a)
        for members in found.values():
            cells.append(frozenset(members))
            owner.append(qi)
        withheld += [frozenset(m) for m in hidden.values()]
    if with_withheld:
        return counts, cells, owner, withheld
    return counts, cells, owner


def _rolled(value: Any, key: GroupKey) -> Any:
    if key.level is not None and isinstance(value, str) and len(value) >= CODE_LENGTH[key.level]:
        return value[: CODE_LENGTH[key.level]]
    return value
