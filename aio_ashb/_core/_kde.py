"""Kernel densities in the unit cube, and the ratio of two of them scored at candidates (what
the TPE sampler proposes by; the model around them is in _tpe.py).

A density is product kernels: a Gaussian truncated to [0, 1] per float or integer coordinate
(log-scaled dimensions are already log-scaled there), a smoothed point mass per categorical
choice, and a uniform prior component of the weight of one point, so no region is ever given
zero density. Scoring is a matrix product (see Density); float32 where it is exact enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from aio_ashb._core._space import Categorical, Int, SearchSpace

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
class Geometry:
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
    # then in float64 and in the log domain (Ratio.best).
    dtype: type[np.floating[Any]]

    @staticmethod
    def of(space: SearchSpace) -> Geometry:
        cont, cat, n_choices, floor = [], [], [], []
        for i, (_, dim) in enumerate(space.dimensions):
            if isinstance(dim, Categorical):
                cat.append(i)
                n_choices.append(len(dim.choices))
            else:
                cont.append(i)
                floor.append(1.0 / (dim.high - dim.low + 1) if isinstance(dim, Int) else 0.0)
        return Geometry(
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
        given by their continuous coordinates and choice indices; see Density."""
        x = cont - 0.5
        c = len(self.cont)
        q = np.empty((len(cont), 2 * c + len(self.hot_coord) + 1), dtype=self.dtype)
        q[:, :c] = x
        q[:, c : 2 * c] = x * x
        q[:, 2 * c : -1] = idx[:, self.hot_coord] == self.hot_choice
        q[:, -1] = 1.0
        return q


class Candidates:
    """Points drawn for scoring: continuous coordinates and choice indices, apart."""

    __slots__ = ("cont", "idx")

    def __init__(self, cont: np.ndarray, idx: np.ndarray) -> None:
        self.cont, self.idx = cont, idx

    def unit(self, geo: Geometry, i: int) -> np.ndarray:
        """Candidate ``i`` as a point of the unit cube."""
        point = np.empty(len(geo.cont) + len(geo.cat))
        point[geo.cont] = self.cont[i]
        point[geo.cat] = (self.idx[i] + 0.5) / geo.n_choices
        return point


class Density:
    """A kernel density in the unit cube: truncated Gaussians times smoothed categorical masses,
    one kernel per point plus a uniform component of the same weight (the prior).

    Scoring is one matrix product and one ``exp``: a kernel's log value at ``x`` is
    ``sum_j (x_j c_j / h_j^2 - x_j^2 / 2h_j^2) + const`` over the continuous coordinates
    (``const`` holds ``-c^2 / 2h^2`` and the Gaussian's normalizer) plus, per categorical
    coordinate, ``move + (keep - move)`` when ``x`` has the center's choice: one more product,
    over one-hot columns. So a kernel is one row ``[c / h^2, -1 / 2h^2, (keep - move) one-hot,
    const]`` and a query point one row of ``Geometry.query``, the same for every density:
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

    def __init__(self, geo: Geometry, centers: np.ndarray, min_bandwidth: float, widen: float) -> None:
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

    def sample(self, rng: np.random.Generator, n: int) -> Candidates:
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
        return Candidates(cont, idx)


class Ratio:
    """The good density over the bad one, scored at candidates: both densities' kernels in one
    matrix (good first), so one product, one ``exp`` and two weighted sums score a batch."""

    __slots__ = ("good", "bad", "rows", "weights", "prior")

    def __init__(self, good: Density, bad: Density) -> None:
        self.good, self.bad = good, bad
        self.rows = np.concatenate([good.rows, bad.rows])
        self.weights = np.concatenate([good.weights, bad.weights])
        self.prior = math.exp(-float(np.sum(np.log(good.geo.n_choices))))  # the uniform component

    def best(self, candidates: Candidates, liars: tuple[np.ndarray, np.ndarray] | None) -> int:
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
            # The spaces float32 cannot score (see Geometry.dtype) can push exp past float64 too:
            # in the log domain.
            e += np.log(weights)
            prior = np.full((len(e), 1), -float(np.sum(np.log(geo.n_choices))))
            good = _logsumexp(np.concatenate([e[:, :g], prior], axis=1), axis=1)
            bad = _logsumexp(np.concatenate([e[:, g:], prior], axis=1), axis=1)
            return int(np.argmax(good - bad))
        np.exp(e, out=e)
        good = (e[:, :g] @ weights[:g]).astype(np.float64) + self.prior
        bad = (e[:, g:] @ weights[g:]).astype(np.float64) + self.prior
        return int(np.argmax(good / bad))
