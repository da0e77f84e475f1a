"""A rung against brute force: membership of the top floor(n / eta), the stopping rule, best."""

from __future__ import annotations

import math
import random

import pytest

from aio_ashb._core._rung import Rung


@pytest.mark.parametrize("seed", range(20))
def test_rung_answers_as_a_sorted_list_would(seed: int) -> None:
    rnd = random.Random(seed)
    eta = rnd.choice([2, 3, 4])
    rung = Rung(1, eta)
    keys: list[tuple[float, int]] = []
    values = [0.0, 0.5, 0.5, 1.0, -1.0, math.inf]  # ties on the value: the number decides
    for number in rnd.sample(range(10_000), 400):
        key = (rnd.choice(values) if rnd.random() < 0.3 else rnd.random(), number)
        leads = rung.add(key)
        keys.append(key)
        ranked = sorted(keys)
        assert leads == (ranked.index(key) < max(1, len(keys) // eta))
        assert len(rung) == len(keys) and rung.ranked() == ranked and rung.best == ranked[0]
        cut = ranked[len(keys) // eta - 1] if len(keys) >= eta else None
        for probe in rnd.sample(keys, min(5, len(keys))):
            assert rung.in_top(probe) == (cut is not None and probe <= cut)
