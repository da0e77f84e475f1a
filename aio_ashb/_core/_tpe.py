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
* Densities are product kernels in the unit cube: Gaussian truncated to [0, 1] for floats and
  integers (log-scaled dimensions are already log-scaled there), a smoothed point mass for
  categorical choices. Each also holds a uniform prior component of the weight of one point,
  so no region is ever given zero density.
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
from aio_ashb._core._sampler import study_seed
from aio_ashb._core._space import Categorical, Int, Params, SearchSpace
from aio_ashb._exceptions import ConfigError

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_INV_SQRT2 = 1 / math.sqrt(2)


def _ndtr(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF (Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7,
    plenty for the truncation masses below, which are never smaller than about 0.5)."""
    x = np.abs(z) * _INV_SQRT2
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
    erf = 1.0 - poly * np.exp(-x * x)
    cdf: np.ndarray = 0.5 * (1.0 + np.copysign(erf, z))
    return cdf


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    out: np.ndarray = np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(a - top), axis=axis))
    return out


@dataclass(frozen=True, slots=True)
class _Geometry:
    """How the sampler reads the unit cube of one space."""

    cont: np.ndarray  # coordinate indices of floats and integers
    cat: np.ndarray  # coordinate indices of categoricals
    n_choices: np.ndarray  # per categorical coordinate
    floor: np.ndarray  # per continuous coordinate: an integer's slice of the unit interval, or 0

    @staticmethod
    def of(space: SearchSpace) -> _Geometry:
        cont, cat, n_choices, floor = [], [], [], []
        for i, (_, dim) in enumerate(space.dimensions):
            if isinstance(dim, Categorical):
                cat.append(i)
                n_choices.append(len(dim.choices))
            else:
                cont.append(i)
                floor.append(1.0 / (dim.high - dim.low + 1) if isinstance(dim, Int) else 0.0)
        return _Geometry(
            np.array(cont, dtype=int),
            np.array(cat, dtype=int),
            np.array(n_choices, dtype=int),
            np.array(floor),
        )


class _Density:
    """A kernel density in the unit cube: truncated Gaussians times smoothed categorical masses,
    one kernel per point plus a uniform component of the same weight (the prior)."""

    __slots__ = ("geo", "centers", "h", "eps", "_scaled", "_const", "_cat_idx", "_keep", "_move")

    def __init__(self, geo: _Geometry, centers: np.ndarray, min_bandwidth: float) -> None:
        self.geo = geo
        self.centers = centers
        m = len(centers)
        cont = centers[:, geo.cont]
        # Scott's rule per coordinate, floored by Optuna's "magic clip" (wide while points are
        # few), by the user's minimum and by an integer's own slice, and capped at the range.
        sigma = cont.std(axis=0) if m > 1 else np.zeros(len(geo.cont))
        scott = sigma * m ** (-1.0 / (len(geo.cont) + len(geo.cat) + 4))
        floor = np.maximum(np.maximum(geo.floor, min_bandwidth), 1.0 / min(100, m + 1))
        self.h = np.minimum(np.maximum(scott, floor), 1.0)
        # Categorical: keep the center's choice with probability 1 - eps, else a uniform choice.
        k = geo.n_choices
        self.eps = np.minimum(0.5, k / (m + k))
        self._keep = np.log(1.0 - self.eps + self.eps / k)
        self._move = np.log(self.eps / k)
        self._cat_idx = self._indices(centers)
        self._scaled, self._const = self._kernels(cont)

    def _indices(self, points: np.ndarray) -> np.ndarray:
        k = self.geo.n_choices
        idx: np.ndarray = np.minimum((points[:, self.geo.cat] * k).astype(int), k - 1)
        return idx

    def _kernels(self, cont: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centers scaled by the bandwidths, and per kernel the log of its weight over its
        normalizer in the unit cube (the truncation) minus half its scaled squared norm."""
        h = self.h
        scaled = cont / h
        mass = _ndtr((1.0 - cont) / h) - _ndtr(-cont / h)
        log_norm = np.sum(np.log(h) + _LOG_SQRT_2PI + np.log(np.maximum(mass, 1e-300)), axis=1)
        const: np.ndarray = -log_norm - 0.5 * np.sum(scaled * scaled, axis=1)
        return scaled, const

    def log_pdf(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Log density at each row of ``x``; ``extra`` points join as kernels of weight one."""
        geo = self.geo
        scaled, const, cat_idx = self._scaled, self._const, self._cat_idx
        if extra is not None and len(extra):
            more_scaled, more_const = self._kernels(extra[:, geo.cont])
            scaled = np.concatenate([scaled, more_scaled])
            const = np.concatenate([const, more_const])
            cat_idx = np.concatenate([cat_idx, self._indices(extra)])
        # -|y - c|^2 / 2 = y.c - |c|^2 / 2 - |y|^2 / 2: one matrix product for all pairs.
        y = x[:, geo.cont] / self.h
        log_k = y @ scaled.T + const[None, :] - 0.5 * np.sum(y * y, axis=1)[:, None]
        if len(geo.cat):
            same = self._indices(x)[:, None, :] == cat_idx[None, :, :]
            log_k = log_k + np.sum(np.where(same, self._keep, self._move), axis=2)
        log_prior = np.full((len(x), 1), -float(np.sum(np.log(geo.n_choices))))
        return _logsumexp(np.concatenate([log_k, log_prior], axis=1), axis=1) - math.log(len(const) + 1)

    def sample(self, rng: np.random.Generator, n: int, widen: float) -> np.ndarray:
        """``n`` draws from the density with every bandwidth widened by ``widen``."""
        geo, m = self.geo, len(self.centers)
        pick = rng.integers(0, m + 1, size=n)  # m kernels and the prior, each of weight one
        out = self.centers[np.minimum(pick, m - 1)].copy()
        if len(geo.cont):
            h = np.minimum(self.h * widen, 1.0)
            mu = out[:, geo.cont]
            # Folded back into the cube at its faces (a reflecting walk, in one step): the
            # candidates need only be near good points, and folding, unlike clipping, puts no
            # mass on the faces themselves.
            pts = np.mod(mu + h * rng.standard_normal(mu.shape), 2.0)
            out[:, geo.cont] = np.where(pts > 1.0, 2.0 - pts, pts)
        if len(geo.cat):
            k = geo.n_choices
            idx = self._indices(out)
            move = rng.random(idx.shape) < np.minimum(self.eps * widen, 1.0)
            idx = np.where(move, (rng.random(idx.shape) * k).astype(int), idx)
            out[:, geo.cat] = (idx + 0.5) / k
        prior = pick == m
        out[prior] = rng.random((int(np.count_nonzero(prior)), out.shape[1]))
        return out


@dataclass(frozen=True, slots=True)
class _Model:
    milestone: int  # the milestone whose results split good from bad
    good: _Density
    bad: _Density
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
        candidates = model.good.sample(rng, self.n_candidates, self.bandwidth_factor)
        liars = self._running_towards(history, model.milestone) if self.constant_liar else None
        score = model.good.log_pdf(candidates) - model.bad.log_pdf(candidates, liars)
        return space.from_unit(candidates[int(np.argmax(score))])

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
        geo = _Geometry.of(space)
        model_good = _Density(geo, points[self._thin(good)], self.min_bandwidth)
        model_bad = _Density(geo, points[self._thin(bad)], self.min_bandwidth)
        floor = self.random_fraction
        fraction = floor + max(0.0, 1 / 3 - floor) * need / n
        upper = min((m for m in descending if m > milestone and counts[m]), default=None)
        if upper is not None:
            rho = _rank_agreement((numbers, values), _prefix(history.levels[upper], counts[upper]))
            if rho is not None and rho < 0.5:
                fraction = max(fraction, min(0.5, 0.5 - rho))
        return _Model(milestone, model_good, model_bad, fraction)

    def _thin(self, ranked: np.ndarray) -> np.ndarray:
        if len(ranked) <= self.max_points:
            return ranked
        return ranked[np.linspace(0, len(ranked) - 1, self.max_points).round().astype(np.int64)]

    def _running_towards(self, history: History, milestone: int) -> np.ndarray | None:
        """Points of the trials running towards ``milestone`` or below (the latest ones)."""
        if not history.pending:
            return None
        numbers = np.fromiter(history.pending.keys(), dtype=np.int64, count=len(history.pending))
        targets = np.fromiter(history.pending.values(), dtype=np.int64, count=len(history.pending))
        numbers = np.sort(numbers[targets <= milestone])
        return history.points[numbers[-self.max_points :]] if len(numbers) else None

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
