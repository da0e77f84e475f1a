"""A multi-fidelity, asynchrony-aware Tree-structured Parzen Estimator (TPE) sampler.

The model (Bergstra et al. 2011; multi-fidelity as in BOHB, Falkner et al. 2018):

* It is fitted on the results of one milestone: the highest one with at least
  ``max(2 * (ndim + 1), 10)`` results, so it learns from the most faithful data there is enough
  of and falls back to lower milestones, not to random search, while the top rungs fill.
* The best ``gamma`` fraction of those results fit the "good" density. The "bad" density is
  fitted to the rest of them *and* to every trial whose results all lie below that milestone
  (not promoted, not yet, or stopped), as Optuna's TPE counts pruned trials. The milestone's
  own results are already a selection of the best trials; on their own they would teach the
  bad density only where the good trials are, and unexplored space would outscore the known
  good region (measured: worse than random search on multi-fidelity Branin).
* Densities are product kernels in the unit cube with a uniform prior component (_kde.py,
  which also scores their ratio).
* A proposal draws ``n_candidates`` points from the good density, widened by
  ``bandwidth_factor``, and keeps the one with the highest ratio good(x) / bad(x).
* Asynchrony: with many workers most proposals are made while earlier ones are still running.
  With ``constant_liar`` every trial running towards the model's milestone counts as one more
  bad point (the "constant liar" of Ginsbourger et al. 2010, as Optuna does), which pushes new
  proposals away from configurations already being evaluated. Failed trials, NaN and infinite
  results are bad points too.
* Guards: a fraction of proposals is plain random (a third while the model has barely enough
  data, decaying to ``random_fraction``); and when the model's milestone ranks the trials it
  shares with the next milestone up poorly (Spearman correlation below 0.5), more proposals
  are random, up to half, so a model fitted on misleading low-fidelity results cannot drag the
  search into a bad region for long.

Deterministic: a model is fitted on the study's first ``_fit_point(results)`` results, a
function of the count alone (every result while they are few, then every 1.5-3 % more), with
no randomness, and cached in ``History.cache``; a proposal draws only from the study's
generator. So a resumed study proposes what the uninterrupted one would have, and a batch of
proposals between two results (``run()`` starting 128 trials) shares one fit. Each density
holds at most ``max_points`` points (evenly spread over the ranks), so a proposal costs about
the same at 1,000 and 100,000 trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from aio_ashb._core._history import History, Level
from aio_ashb._core._kde import Density, Geometry, Ratio
from aio_ashb._core._sampler import study_seed
from aio_ashb._core._space import Params, SearchSpace
from aio_ashb._exceptions import ConfigError


@dataclass(frozen=True, slots=True)
class _Model:
    milestone: int  # the milestone whose results split good from bad
    ratio: Ratio  # good over bad
    random_fraction: float  # after the guards


class TPESampler:
    """Multi-fidelity, asynchrony-aware TPE: proposes where the best results of the highest
    milestone with enough data are dense and the rest are not (see docs/samplers.md).

    ``seed`` seeds the study's generator (``None``: drawn from the OS and recorded).
    ``n_candidates`` points are drawn from the good density per proposal, ``bandwidth_factor``
    times wider than it; the one with the highest good/bad density ratio is proposed.
    ``gamma`` is the fraction of a milestone's results that fit the good density.
    ``random_fraction`` is the floor of plainly random proposals once a model exists (a third
    while it has barely enough data; up to a half while low fidelities mislead).
    ``constant_liar`` counts trials running towards the model's milestone as bad points, so
    many workers do not all get the same region. ``min_bandwidth`` is the narrowest kernel, in
    unit-cube coordinates; ``max_points`` caps the results one density holds (evenly spread
    over their ranks), which caps the cost of a proposal however large the study grows.
    """

    __slots__ = (
        "_seed",
        "n_candidates",
        "gamma",
        "random_fraction",
        "constant_liar",
        "bandwidth_factor",
        "min_bandwidth",
        "max_points",
    )

    def __init__(
        self,
        seed: int | None = None,
        *,
        n_candidates: int = 32,
        gamma: float = 0.15,
        random_fraction: float = 0.2,
        constant_liar: bool = True,
        bandwidth_factor: float = 3.0,
        min_bandwidth: float = 1e-3,
        max_points: int = 256,
    ) -> None:
        _check(n_candidates, "n_candidates", 1, 10_000, integer=True)
        _check(gamma, "gamma", 0.0, 1.0, open_low=True, open_high=True)
        _check(random_fraction, "random_fraction", 0.0, 1.0)
        _check(bandwidth_factor, "bandwidth_factor", 1.0, 100.0)
        _check(min_bandwidth, "min_bandwidth", 0.0, 1.0, open_low=True)
        _check(max_points, "max_points", 8, 100_000, integer=True)
        if not isinstance(constant_liar, bool):
            raise ConfigError(f"constant_liar must be True or False, got {constant_liar!r}")
        self._seed = study_seed(seed)
        self.n_candidates = int(n_candidates)
        self.gamma = float(gamma)
        self.random_fraction = float(random_fraction)
        self.constant_liar = constant_liar
        self.bandwidth_factor = float(bandwidth_factor)
        self.min_bandwidth = float(min_bandwidth)
        self.max_points = int(max_points)

    @property
    def seed(self) -> int:
        return self._seed

    def sample(self, space: SearchSpace, rng: np.random.Generator) -> Params:
        """Without a study's history there is nothing to learn from: a uniform draw."""
        return space.sample(rng)

    def propose(self, space: SearchSpace, rng: np.random.Generator, history: History) -> Params:
        model = self._model(space, history)
        if model is None or rng.random() < model.random_fraction:
            return space.sample(rng)
        ratio = model.ratio
        candidates = ratio.good.sample(rng, self.n_candidates)
        liars = None
        if self.constant_liar:  # the latest trials running towards the model's milestone or below
            running = history.running_towards(model.milestone, self.max_points)
            liars = ratio.bad.kernels_of(history.points, running) if len(running) else None
        return space.from_unit(candidates.unit(ratio.good.geo, ratio.best(candidates, liars)))

    # ------------------------------------------------------------------ the model
    def _model(self, space: SearchSpace, history: History) -> _Model | None:
        seen = _fit_point(history.results)
        key = ("tpe", seen)
        if key in history.cache:
            return history.cache[key]  # type: ignore[no-any-return]
        model = self._fit(space, history, seen) if space.ndim else None
        for old in [k for k in history.cache if k[0] == "tpe"]:  # never asked for again
            del history.cache[old]
        history.cache[key] = model
        return model

    def _fit(self, space: SearchSpace, history: History, seen: int) -> _Model | None:
        """The model of the study's first ``seen`` results."""
        need = max(2 * (space.ndim + 1), 10)
        counts = {m: level.count_before(seen) for m, level in history.levels.items()}
        descending = sorted(counts, reverse=True)
        milestone = next((m for m in descending if counts[m] >= need), None)
        if milestone is None:
            return None
        n = counts[milestone]
        numbers, values = _prefix(history.levels[milestone], n)
        finite = int(np.count_nonzero(np.isfinite(values)))
        if finite == 0:
            return None
        order = np.argsort(values, kind="stable")  # ties: recording order
        n_good = min(max(2, math.ceil(self.gamma * n)), finite, n - 1)
        good = numbers[order[:n_good]]
        # The bad points: the rest of this milestone, then every trial whose results all lie
        # below it (not promoted, or not yet; stopped), ranked by how far it got, then by
        # value. The milestone's own results are a selection of the best trials, so on their
        # own they would teach the bad density only where the good trials are, and it would
        # score unexplored space above the known good region.
        parts = [numbers[order[n_good:]]]
        known = np.concatenate(
            [_prefix(history.levels[m], counts[m])[0] for m in descending if m >= milestone]
        )
        for m in descending:
            if m < milestone and counts[m]:
                nums, vals = _prefix(history.levels[m], counts[m])
                fresh = ~np.isin(nums, known)
                nums, vals = nums[fresh], vals[fresh]
                parts.append(nums[np.argsort(vals, kind="stable")])
                known = np.concatenate([known, nums])
        bad = np.concatenate(parts)
        points = history.points
        geo = Geometry.of(space)
        widen = self.bandwidth_factor
        model_good = Density(geo, points[self._thin(good)], self.min_bandwidth, widen)
        model_bad = Density(geo, points[self._thin(bad)], self.min_bandwidth, widen)
        floor = self.random_fraction
        fraction = floor + max(0.0, 1 / 3 - floor) * need / n
        upper = min((m for m in descending if m > milestone and counts[m]), default=None)
        if upper is not None:
            rho = _rank_agreement((numbers, values), _prefix(history.levels[upper], counts[upper]))
            if rho is not None and rho < 0.5:
                fraction = max(fraction, min(0.5, 0.5 - rho))
        return _Model(milestone, Ratio(model_good, model_bad), fraction)

    def _thin(self, ranked: np.ndarray) -> np.ndarray:
        if len(ranked) <= self.max_points:
            return ranked
        return ranked[np.linspace(0, len(ranked) - 1, self.max_points).round().astype(np.int64)]

    # ------------------------------------------------------------------ configuration
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "tpe",
            "seed": self._seed,
            "n_candidates": self.n_candidates,
            "gamma": self.gamma,
            "random_fraction": self.random_fraction,
            "constant_liar": self.constant_liar,
            "bandwidth_factor": self.bandwidth_factor,
            "min_bandwidth": self.min_bandwidth,
            "max_points": self.max_points,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TPESampler:
        options = {k: v for k, v in data.items() if k not in ("type", "seed")}
        try:
            return cls(data["seed"], **options)
        except TypeError as exc:  # an unknown or missing field
            raise ConfigError(f"a stored TPESampler configuration is not valid: {exc}") from None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"TPESampler({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TPESampler) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _fit_point(results: int) -> int:
    """How many of the study's results a model is fitted on: all while they are few, then a
    count on a grid that refits every 1.5-3 % more results. A function of the count alone, so
    a resumed study fits the same models at the same moments as the run it resumes."""
    step = 1 << max(0, (results // 32).bit_length() - 1)
    return results - results % step


def _prefix(level: Level, n: int) -> tuple[np.ndarray, np.ndarray]:
    return level.numbers.view[:n].astype(np.int64), level.values.view[:n]


def _rank_agreement(
    lower: tuple[np.ndarray, np.ndarray], upper: tuple[np.ndarray, np.ndarray]
) -> float | None:
    """Spearman correlation between the results of the trials recorded at both milestones
    (None with fewer than 5 shared finite results)."""
    _, ia, ib = np.intersect1d(lower[0], upper[0], assume_unique=True, return_indices=True)
    a, b = lower[1][ia], upper[1][ib]
    keep = np.isfinite(a) & np.isfinite(b)
    if np.count_nonzero(keep) < 5:
        return None
    ra = np.argsort(np.argsort(a[keep], kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b[keep], kind="stable"), kind="stable").astype(float)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else None


def _check(
    value: Any,
    name: str,
    low: float,
    high: float,
    *,
    integer: bool = False,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"TPESampler {name} must be {kind} in {lo}{low}, {high}{hi}, got {value!r}")
