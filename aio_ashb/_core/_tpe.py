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


def _tail(z: np.ndarray) -> np.ndarray:
    """``1 - Phi(z)`` for ``z >= 0``, the standard normal's upper tail (Abramowitz and Stegun
    26.2.19, absolute error below 1.5e-7), in additions, multiplications and one division:
    each is exactly rounded in any array, so a point's value does not depend on the batch it
    is computed in, which a vector path of ``exp`` does not promise."""
    p = ((((5.383e-6 * z + 4.88906e-5) * z + 3.80036e-5) * z + 3.2776263e-3) * z + 2.11410061e-2) * z
    p = (p + 4.9867347e-2) * z + 1.0
    p = p * p
    p = p * p
    p = p * p
    tail: np.ndarray = 0.5 / (p * p)
    return tail


def _tail_one(z: float) -> float:
    """``_tail`` of one float: the same operations in the same order."""
    p = ((((5.383e-6 * z + 4.88906e-5) * z + 3.80036e-5) * z + 3.2776263e-3) * z + 2.11410061e-2) * z
    p = (p + 4.9867347e-2) * z + 1.0
    p = p * p
    p = p * p
    p = p * p
    return 0.5 / (p * p)


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
    hot_coord: np.ndarray  # per one-hot column: its categorical coordinate (0 = the first)
    hot_choice: np.ndarray  # per one-hot column: its choice
    # Scores are computed in float32 (twice as fast as float64 here, `exp` above all) unless a
    # kernel's peak times its weight could near float32's limit (with every bandwidth >= 0.01,
    # the magic clip's floor, it is below exp(4.4) per continuous coordinate) or the prior,
    # 1 / prod(choices), is so small that kernels which still matter next to it could underflow;
    # then in float64 and in the log domain (_Model.best).
    dtype: type[np.floating[Any]]

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
            np.repeat(np.arange(len(cat)), n_choices).astype(int),
            np.concatenate([np.arange(k) for k in n_choices]).astype(int) if cat else np.zeros(0, int),
            np.float32 if 4.4 * len(cont) < 60 and float(np.sum(np.log(n_choices))) < 60 else np.float64,
        )

    def indices(self, points: np.ndarray) -> np.ndarray:
        """The categorical coordinates of unit-cube points as choice indices."""
        k = self.n_choices
        idx: np.ndarray = np.minimum((points[:, self.cat] * k).astype(int), k - 1)
        return idx

    def query(self, cont: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Query rows ``[x, x^2, one-hot, 1]`` (``x`` centered on the cube's middle) for points
        given by their continuous coordinates and choice indices; see _Density."""
        x = cont - 0.5
        c = len(self.cont)
        q = np.empty((len(cont), 2 * c + len(self.hot_coord) + 1), dtype=self.dtype)
        q[:, :c] = x
        q[:, c : 2 * c] = x * x
        q[:, 2 * c : -1] = idx[:, self.hot_coord] == self.hot_choice
        q[:, -1] = 1.0
        return q


class _Candidates:
    """Points drawn for scoring: continuous coordinates and choice indices, apart."""

    __slots__ = ("cont", "idx")

    def __init__(self, cont: np.ndarray, idx: np.ndarray) -> None:
        self.cont, self.idx = cont, idx

    def unit(self, geo: _Geometry, i: int) -> np.ndarray:
        """Candidate ``i`` as a point of the unit cube."""
        point = np.empty(len(geo.cont) + len(geo.cat))
        point[geo.cont] = self.cont[i]
        point[geo.cat] = (self.idx[i] + 0.5) / geo.n_choices
        return point


class _Density:
    """A kernel density in the unit cube: truncated Gaussians times smoothed categorical masses,
    one kernel per point plus a uniform component of the same weight (the prior).

    Scoring is one matrix product and one ``exp``: a kernel's log value at ``x`` is
    ``sum_j (x_j c_j / h_j^2 - x_j^2 / 2h_j^2) + const`` over the continuous coordinates
    (``const`` holds ``-c^2 / 2h^2`` and the Gaussian's normalizer) plus, per categorical
    coordinate, ``move + (keep - move)`` when ``x`` has the center's choice: one more product,
    over one-hot columns. So a kernel is one row ``[c / h^2, -1 / 2h^2, (keep - move) one-hot,
    const]`` and a query point one row of ``_Geometry.query``, the same for every density:
    two densities and the liars score a batch of candidates in one product. A kernel's mass
    in the cube (its truncation) is a weight outside the ``exp``: ``1 / mass``."""

    __slots__ = (
        "geo",
        "h",
        "eps",
        "rows",
        "weights",
        "_centers",
        "_idx",
        "_width",
        "_move",
        "_inv_h",
        "_template",
        "_base",
        "_cache",
    )

    def __init__(self, geo: _Geometry, centers: np.ndarray, min_bandwidth: float, widen: float) -> None:
        self.geo = geo
        m = len(centers)
        cont = centers[:, geo.cont]
        # Scott's rule per coordinate, floored by Optuna's "magic clip" (wide while points are
        # few), by the user's minimum and by an integer's own slice, and capped at the range.
        sigma = cont.std(axis=0) if m > 1 else np.zeros(len(geo.cont))
        scott = sigma * m ** (-1.0 / (len(geo.cont) + len(geo.cat) + 4))
        floor = np.maximum(np.maximum(geo.floor, min_bandwidth), 1.0 / min(100, m + 1))
        h = self.h = np.minimum(np.maximum(scott, floor), 1.0)
        # Categorical: keep the center's choice with probability 1 - eps, else a uniform choice.
        k = geo.n_choices
        self.eps = np.minimum(0.5, k / (m + k))
        self._centers, self._idx = cont, geo.indices(centers)
        self._width = np.minimum(h * widen, 1.0)  # for sampling
        self._move = np.minimum(self.eps * widen, 1.0)
        # What every kernel row shares: -1 / 2h^2, the categorical gains, and the constant
        # part of ``const`` (the Gaussian normalizers, every coordinate's ``move``).
        keep, move = np.log(1.0 - self.eps + self.eps / k), np.log(self.eps / k)
        c = len(geo.cont)
        self._inv_h = 1.0 / h
        self._template = np.empty(2 * c + len(geo.hot_coord) + 1)
        self._template[c : 2 * c] = -0.5 * self._inv_h * self._inv_h
        self._template[2 * c : -1] = np.repeat(keep - move, k)
        self._base = float(np.sum(move) - np.sum(np.log(h) + _LOG_SQRT_2PI))
        self.rows, self.weights = self.kernels(centers)
        # The liars' kernels, by trial number: a row depends on its own point alone, so a
        # cached one is what a fresh model computes and caching never changes a proposal.
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def kernels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One kernel per point of the unit cube: its row (see the class docstring) and its
        weight. Only exactly rounded arithmetic on a point's own coordinates (``log`` acts
        on the density's constants alone), so a kernel is the same in any batch."""
        geo, t = self.geo, self._template
        c = len(geo.cont)
        cont = points[:, geo.cont]
        z = cont * self._inv_h
        x = cont - 0.5
        rows = np.empty((len(points), len(t)))
        rows[:] = t
        rows[:, :c] = x * (t[c : 2 * c] * -2.0)  # c / h^2
        rows[:, 2 * c : -1] *= geo.indices(points)[:, geo.hot_coord] == geo.hot_choice
        quad = x * x * t[c : 2 * c]  # -c^2 / 2h^2
        tails = _tail(np.concatenate([self._inv_h - z, z], axis=1))  # (1 - c) / h and c / h
        const = np.full(len(points), self._base)
        weights = np.ones(len(points))
        for j in range(c):  # column by column: no reduction whose order could vary
            const += quad[:, j]
            weights /= 1.0 - tails[:, j] - tails[:, c + j]
        rows[:, -1] = const
        return rows.astype(geo.dtype), weights.astype(geo.dtype)

    def kernels_of(self, points: np.ndarray, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The kernels at the points of trials ``numbers`` (rows of ``points``), cached."""
        top = int(numbers.max()) + 1
        if self._cache is None or top > len(self._cache[2]):
            size = max(top, 2 * len(self._cache[2])) if self._cache is not None else top + 1024
            rows = np.empty((size, self.rows.shape[1]), dtype=self.geo.dtype)
            weights = np.empty(size, dtype=self.geo.dtype)
            valid = np.zeros(size, dtype=bool)
            if self._cache is not None:
                n = len(self._cache[2])
                rows[:n], weights[:n], valid[:n] = self._cache
            self._cache = (rows, weights, valid)
        rows, weights, valid = self._cache
        missing = numbers[~valid[numbers]]
        if len(missing) == 1:  # the usual case: the trial proposed last
            i = int(missing[0])
            rows[i], weights[i] = self._kernel(points[i].tolist())
            valid[i] = True
        elif len(missing):
            rows[missing], weights[missing] = self.kernels(points[missing])
            valid[missing] = True
        return rows[numbers], weights[numbers]

    def _kernel(self, point: list[float]) -> tuple[list[float], float]:
        """``kernels`` of one point in plain floats: 9x faster than numpy on one row (13 us),
        and the same operations in the same order on the same doubles, so bit for bit the same
        kernel (tested)."""
        geo, t = self.geo, self._template.tolist()
        c = len(geo.cont)
        row = list(t)
        const, weight = self._base, 1.0
        for j, (coord, inv_h) in enumerate(zip(geo.cont.tolist(), self._inv_h.tolist(), strict=True)):
            v = point[coord]
            z = v * inv_h
            x = v - 0.5
            row[j] = x * (t[c + j] * -2.0)
            const += x * x * t[c + j]
            tail_u, tail_l = _tail_one(inv_h - z), _tail_one(z)
            weight /= 1.0 - tail_u - tail_l
        if len(geo.cat):
            ks = geo.n_choices.tolist()
            choice = [
                min(int(point[coord] * k), k - 1) for coord, k in zip(geo.cat.tolist(), ks, strict=True)
            ]
            for col, (coord, ch) in enumerate(
                zip(geo.hot_coord.tolist(), geo.hot_choice.tolist(), strict=True)
            ):
                row[2 * c + col] = t[2 * c + col] * (1.0 if choice[coord] == ch else 0.0)
        row[-1] = const
        return row, weight

    def log_pdf(self, points: np.ndarray) -> np.ndarray:
        """The log density at points of the unit cube (what the scores are ratios of)."""
        geo = self.geo
        e = (geo.query(points[:, geo.cont], geo.indices(points)) @ self.rows.T).astype(np.float64)
        e += np.log(self.weights.astype(np.float64))
        prior = -np.sum(np.log(geo.n_choices))
        out: np.ndarray = np.logaddexp(_logsumexp(e, axis=1), prior) - math.log(len(self.rows) + 1)
        return out

    def sample(self, rng: np.random.Generator, n: int) -> _Candidates:
        """``n`` draws from the density with its bandwidths widened (``widen`` at creation)."""
        geo, m = self.geo, len(self._idx)
        pick = rng.integers(0, m + 1, size=n)  # m kernels and the prior, each of weight one
        src = np.minimum(pick, m - 1)
        cont, idx = self._centers[src], self._idx[src]
        if len(geo.cont):
            # Folded back into the cube at its faces (a reflecting walk, in one step): the
            # candidates need only be near good points, and folding, unlike clipping, puts no
            # mass on the faces themselves.
            pts = np.mod(cont + self._width * rng.standard_normal(cont.shape), 2.0)
            cont = np.where(pts > 1.0, 2.0 - pts, pts)
        if len(geo.cat):
            k = geo.n_choices
            move = rng.random(idx.shape) < self._move
            idx = np.where(move, (rng.random(idx.shape) * k).astype(int), idx)
        prior = pick == m
        count = int(np.count_nonzero(prior))
        if count:
            uniform = rng.random((count, len(geo.cont) + len(geo.cat)))
            cont[prior] = uniform[:, geo.cont]
            idx[prior] = geo.indices(uniform)
        return _Candidates(cont, idx)


@dataclass(frozen=True, slots=True)
class _Model:
    milestone: int  # the milestone whose results split good from bad
    good: _Density
    bad: _Density
    rows: np.ndarray  # the good density's kernel rows, then the bad one's
    weights: np.ndarray  # and their weights
    prior: float  # the density of the uniform component
    random_fraction: float  # after the guards

    def best(self, candidates: _Candidates, liars: tuple[np.ndarray, np.ndarray] | None) -> int:
        """The candidate with the highest good/bad density ratio; ``liars`` are more kernels
        of the bad density. Every density holds the prior (its uniform component), so neither
        sum can be zero; the normalizers are the same for every candidate."""
        rows, weights = self.rows, self.weights
        if liars is not None:
            rows, weights = np.concatenate([rows, liars[0]]), np.concatenate([weights, liars[1]])
        geo = self.good.geo
        e = geo.query(candidates.cont, candidates.idx) @ rows.T
        g = len(self.good.rows)
        if geo.dtype is np.float64:
            # The spaces float32 cannot score (see _Geometry.dtype) can push exp past float64 too:
            # in the log domain, as log_pdf.
            e += np.log(weights)
            prior = np.full((len(e), 1), -float(np.sum(np.log(geo.n_choices))))
            good = _logsumexp(np.concatenate([e[:, :g], prior], axis=1), axis=1)
            bad = _logsumexp(np.concatenate([e[:, g:], prior], axis=1), axis=1)
            return int(np.argmax(good - bad))
        np.exp(e, out=e)
        good = (e[:, :g] @ weights[:g]).astype(np.float64) + self.prior
        bad = (e[:, g:] @ weights[g:]).astype(np.float64) + self.prior
        return int(np.argmax(good / bad))


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
        candidates = model.good.sample(rng, self.n_candidates)
        liars = None
        if self.constant_liar:  # the latest trials running towards the model's milestone or below
            running = history.running_towards(model.milestone, self.max_points)
            liars = model.bad.kernels_of(history.points, running) if len(running) else None
        return space.from_unit(candidates.unit(model.good.geo, model.best(candidates, liars)))

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
        widen = self.bandwidth_factor
        model_good = _Density(geo, points[self._thin(good)], self.min_bandwidth, widen)
        model_bad = _Density(geo, points[self._thin(bad)], self.min_bandwidth, widen)
        floor = self.random_fraction
        fraction = floor + max(0.0, 1 / 3 - floor) * need / n
        upper = min((m for m in descending if m > milestone and counts[m]), default=None)
        if upper is not None:
            rho = _rank_agreement((numbers, values), _prefix(history.levels[upper], counts[upper]))
            if rho is not None and rho < 0.5:
                fraction = max(fraction, min(0.5, 0.5 - rho))
        rows = np.concatenate([model_good.rows, model_bad.rows])
        weights = np.concatenate([model_good.weights, model_bad.weights])
        prior = math.exp(-float(np.sum(np.log(geo.n_choices))))
        return _Model(milestone, model_good, model_bad, rows, weights, prior, fraction)

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
