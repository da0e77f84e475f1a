"""The trial table's order: filters and a sort over ``Core.table``'s tuples (no I/O here).

A study page asks the server for a page of its table (a study may hold 100,000 trials); the
view keeps the tuples and the order until the study changes, this module computes the order.
Blanks (None, NaN) sort last either way, ties by trial number, as the page always showed them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# The sortable columns (besides number and params.NAME), as getters of Core.table's tuples:
# (state, bracket, step, last value, resource, value at the resource, params, error).
_GETTERS: dict[str, Any] = {
    "state": lambda c: c[0].value,
    "bracket": lambda c: c[1],
    "resource": lambda c: c[4],
    "value": lambda c: c[5],
    "step": lambda c: c[2],
    "last_value": lambda c: c[3],
}
TABLE_SORTS = ("number", *_GETTERS)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _rank(v: Any) -> tuple[int, Any]:
    """A sort key that orders numbers before text without comparing the two (params of a
    categorical dimension may mix them)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v)
    return (1, str(v))


def order_rows(
    cols: Sequence[tuple[Any, ...]],
    sort: str,
    descending: bool,
    state: str | None,
    resource: int | None,
    words: list[str],
    texts: Sequence[str],
) -> list[int]:
    """The numbers of the trials that match (``state``, highest ``resource``, every one of
    ``words`` in ``texts``, each trial's params as lower-case text), sorted by the column
    ``sort`` (a key of TABLE_SORTS, or params.NAME)."""
    numbers = list(range(len(cols)))
    if state is not None:
        numbers = [i for i in numbers if cols[i][0].value == state]
    if resource is not None:
        numbers = [i for i in numbers if cols[i][4] == resource]
    if words:
        numbers = [i for i in numbers if all(w in texts[i] for w in words)]
    if sort == "number":
        return numbers[::-1] if descending else numbers
    if sort.startswith("params."):
        name = sort[7:]
        values = [cols[i][6].get(name) for i in numbers]
    else:
        get = _GETTERS[sort]
        values = [get(cols[i]) for i in numbers]
    if all(type(v) is float or type(v) is int or v is None for v in values):
        # Numbers (the common case, and the large one): a stable argsort, blanks last.
        a = np.array([np.nan if v is None else v for v in values], dtype=float)
        blank = np.isnan(a)
        order = np.argsort(-a if descending else a, kind="stable")  # NaN sorts last
        kept: list[int] = np.asarray(numbers)[order[: int((~blank).sum())]].tolist()
        blanks: list[int] = np.asarray(numbers)[blank].tolist()
        return kept + blanks
    present = [(_rank(v), i) for v, i in zip(values, numbers, strict=True) if not _blank(v)]
    # Stable, so ties stay in number order, also when reversed.
    present.sort(key=lambda p: p[0], reverse=descending)
    return [i for _, i in present] + [i for v, i in zip(values, numbers, strict=True) if _blank(v)]
