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
no randomness, and cached in ``History.cache``. Candidates are drawn and scored in blocks of
consecutive trials (up to 32), from a generator seeded by the sampler's seed and the block's
first trial number, so one scoring serves a burst of proposals (``run()`` starting many trials)
or many proposals one per result, and a proposal is a function of the log alone: a resumed
study proposes what the uninterrupted one would have. Each density holds at most
``max_points`` points (evenly spread over the ranks), so a proposal costs about the same at
1,000 and 100,000 trials.
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

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        """Log density at each row of ``x``."""
        total, count = self.log_total(x)
        out: np.ndarray = total - math.log(count)
        return out

    def log_total(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """At each row of ``x``, the log of the sum of the kernels and the prior (the density
        times their count), and their count."""
        log_k = self._log_kernels(x, self._scaled, self._const, self._cat_idx)
        log_prior = np.full((len(x), 1), -float(np.sum(np.log(self.geo.n_choices))))
        total = _logsumexp(np.concatenate([log_k, log_prior], axis=1), axis=1)
        return total, log_k.shape[1] + 1

    def log_kernels_of(self, points: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Log of kernels (this density's bandwidths) centered at ``points``, at each row of
        ``x``: one row per ``x``, one column per point."""
        scaled, const = self._kernels(points[:, self.geo.cont])
        return self._log_kernels(x, scaled, const, self._indices(points))

    def _log_kernels(
        self, x: np.ndarray, scaled: np.ndarray, const: np.ndarray, cat_idx: np.ndarray
    ) -> np.ndarray:
        geo = self.geo
        # -|y - c|^2 / 2 = y.c - |c|^2 / 2 - |y|^2 / 2: one matrix product for all pairs.
        y = x[:, geo.cont] / self.h
        log_k: np.ndarray = y @ scaled.T + const[None, :] - 0.5 * np.sum(y * y, axis=1)[:, None]
        if len(geo.cat):
            same = self._indices(x)[:, None, :] == cat_idx[None, :, :]
            log_k = log_k + np.sum(np.where(same, self._keep, self._move), axis=2)
        return log_k

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
class _Block:
    """Consecutive trials' candidates, scored together (see ``TPESampler._block``)."""

    first: int  # the trial number of its first row
    candidates: np.ndarray  # (size, n_candidates, ndim), drawn from the good density
    good: np.ndarray  # (size, n_candidates): log good density
    bad_total: np.ndarray  # (size, n_candidates): log of the sum of the bad density's kernels
    random: np.ndarray  # (size,): a plainly random proposal instead
    uniform: np.ndarray  # (size, ndim): the random proposals' points


@dataclass(frozen=True, slots=True)
class _Model:
    seen: int  # fitted on the study's first `seen` results
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
        if model is None:
            return space.sample(rng)
        number = len(history.points)  # the trial this proposal is for
        block = self._block(space, history, model, number)
        j = number - block.first
        if block.random[j]:
            return space.from_unit(block.uniform[j])
        liars = self._running_towards(history, model.milestone) if self.constant_liar else None
        return space.from_unit(block.candidates[j][_best(model.bad, block, j, liars)])

    def _block(self, space: SearchSpace, history: History, model: _Model, number: int) -> _Block:
        """The scored candidates of the trials in ``number``'s block (see ``_block_span``),
        under ``model``: drawn from a generator seeded by the sampler's seed and the block's
        first trial, so they are a function of the model and the trial numbers alone, whenever
        and however often they are computed."""
        first, size = _block_span(number)
        key = ("block", model.seen, first)
        block: _Block | None = history.cache.get(key)
        if block is not None:
            return block
        for old in [k for k in history.cache if k[0] == "block"]:  # never asked for again
            del history.cache[old]
        rng = np.random.default_rng((self._seed, first))
        n, d = self.n_candidates, space.ndim
        candidates = model.good.sample(rng, size * n, self.bandwidth_factor)
        random = rng.random(size) < model.random_fraction
        uniform = rng.random((size, d))
        good = model.good.log_pdf(candidates).reshape(size, n)
        bad_total = model.bad.log_total(candidates)[0].reshape(size, n)
        block = _Block(first, candidates.reshape(size, n, d), good, bad_total, random, uniform)
        history.cache[key] = block
        return block

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
        return _Model(seen, milestone, model_good, model_bad, fraction)

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


def _block_span(number: int) -> tuple[int, int]:
    """The block of trials that holds trial ``number``: (its first trial, its size).

    Sizes grow with the study, 1 below trial 128, then about number / 64, up to 32, in step with
    how long a model lasts (``_fit_point`` refits every 1.5-3 % more results), so that a block
    is mostly used by the model it was scored for, whether its proposals come in a burst
    (``run()`` starting many trials) or one per result.
    """
    size = min(32, max(1, (1 << max(0, number.bit_length() - 1)) // 64))
    return number - number % size, size


def _best(bad: _Density, block: _Block, j: int, liars: np.ndarray | None) -> int:
    """The index of row ``j``'s candidate with the highest good/bad density ratio, with
    ``liars`` (trials in flight) as extra kernels of the bad density.

    The liars only add to the bad density's sum (its normalizer is the same for every
    candidate), so a candidate's score with them is at most its score without: candidates are
    scored in the order of their scores without liars, and the search stops at the first that
    cannot beat the best so far. Usually the first few decide.
    """
    good, bad_total = block.good[j], block.bad_total[j]
    base = good - bad_total
    if liars is None:
        return int(np.argmax(base))
    order = np.argsort(-base, kind="stable")
    best, best_i = -math.inf, -1
    for start in range(0, len(order), 8):
        idx = order[start : start + 8]
        if base[idx[0]] < best:
            break
        log_k = bad.log_kernels_of(liars, block.candidates[j][idx])
        score = good[idx] - np.logaddexp(bad_total[idx], _logsumexp(log_k, axis=1))
        for i, value in zip(idx.tolist(), score.tolist(), strict=True):
            if value > best or (value == best and i < best_i):
                best, best_i = value, i
    return best_i


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
