"""The dirt of real data, applied at configured rates: mistyped and missing ID numbers, the
lower-case ``x`` some systems write, and duplicated rows.

ID columns are built as ``take`` over a per-chunk dictionary (clean IDs, their lower-case
variants, then one mistyped copy per dirty row), so a column of millions of IDs costs one Arrow
gather, and the generator knows exactly which rows still carry the true ID, which the ground truth
needs to decide what evidence is attributable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synthetic_city.ids import lower_x, matrix_to_strings, typo


@dataclass(frozen=True)
class IdColumn:
    values: pa.StringArray
    #: rows whose ID is present and equal to the person's true ID (up to the case of x)
    clean: np.ndarray
    typo: np.ndarray
    missing: np.ndarray


def id_column(
    id_mat: np.ndarray,
    ids: pa.StringArray,
    person: np.ndarray,
    rng: np.random.Generator,
    *,
    typo_rate: float,
    missing_rate: float = 0.0,
    lower_x_rate: float = 0.0,
    lower_ids: pa.StringArray | None = None,
) -> IdColumn:
    """The ID column for rows about ``person`` (indices into the chunk), with dirt applied.

    A row is mistyped with probability ``typo_rate``, else missing with ``missing_rate``; a
    present ID ending in X is written ``x`` with ``lower_x_rate``.
    """
    n_people = len(ids)
    n = len(person)
    is_typo = rng.random(n) < typo_rate
    missing = ~is_typo & (rng.random(n) < missing_rate)
    take = person.astype(np.int64).copy()
    parts: list[pa.Array] = [ids]
    offset = n_people
    if lower_x_rate > 0:
        lower = rng.random(n) < lower_x_rate
        parts.append(lower_ids if lower_ids is not None else matrix_to_strings(lower_x(id_mat)))
        take[lower] += offset
        offset += n_people
    typo_rows = np.flatnonzero(is_typo)
    if len(typo_rows):
        mat = typo(id_mat[person[typo_rows]], rng)
        if lower_x_rate > 0:
            lower_t = rng.random(len(typo_rows)) < lower_x_rate
            mat[lower_t] = lower_x(mat[lower_t])
        parts.append(matrix_to_strings(mat))
        take[typo_rows] = offset + np.arange(len(typo_rows))
    dictionary = pa.concat_arrays(parts)
    values = dictionary.take(pa.array(take, mask=missing))
    return IdColumn(values=values, clean=~is_typo & ~missing, typo=is_typo, missing=missing)


def duplicate_index(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Row indices 0..n-1 with a share ``rate`` of them repeated right after the original."""
    dup = np.flatnonzero(rng.random(n) < rate)
    return np.sort(np.concatenate([np.arange(n), dup]), kind="stable")
