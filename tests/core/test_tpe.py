"""The TPE sampler: determinism and replay, parameter types, failures, pending trials, quality."""

from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aio_ashb as aa
from aio_ashb._core import (
    Core,
    Decision,
    Enqueued,
    Event,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialState,
)
from aio_ashb._core._history import History
from aio_ashb._core._kde import Density, Geometry, Ratio
from aio_ashb._core._sampler import sampler_from_dict
from aio_ashb._core._tpe import _fit_point

MIXED = aa.SearchSpace(
    {
        "lr": aa.Float(1e-5, 1e-1, log=True),
        "x": aa.Float(-2.0, 2.0),
        "layers": aa.Int(1, 6),
        "width": aa.Int(16, 1024, log=True),
        "act": aa.Categorical(["relu", "tanh", "gelu"]),
        "flag": aa.Categorical([True, False, None]),
        "batch": 64,  # a constant: no coordinate
    }
)


def mixed_loss(p: dict[str, Any], step: int = 27) -> float:
    """Best near lr=1e-3, x=0.5, layers=3, width=128, act=gelu, flag=False; lower fidelity is
    the same function plus a term that fades with the step."""
    loss = (math.log10(p["lr"]) + 3) ** 2 + (p["x"] - 0.5) ** 2 + 0.5 * (p["layers"] - 3) ** 2
    loss += (
        (math.log2(p["width"]) - 7) ** 2 / 4
        + (0 if p["act"] == "gelu" else 1)
        + (0 if p["flag"] is False else 1)
    )
    return float(loss + 2.0 / step)


class Driver:
    """Runs a core as a runner would: ``workers`` trials in flight, each to its next decision,
    oldest first; every event the core made or was given is kept (the log)."""

    def __init__(self, core: Core, loss: Callable[[dict[str, Any], int], float], workers: int) -> None:
        self.core, self.loss, self.workers = core, loss, workers
        self.log: list[Event] = []
        self.running: list[int] = []
        self.params: dict[int, dict[str, Any]] = {}

    def fill(self) -> None:
        while len(self.running) < self.workers:
            job = self.core.next_job()
            assert job is not None
            self.log.append(job)
            if isinstance(job, TrialCreated):
                self.params[job.number] = job.params
            self.running.append(job.number)

    def step(self) -> None:
        self.fill()
        n = self.running.pop(0)
        target = self.core.target_of(n)
        ev = Reported(n, target, self.loss(self.params[n], target), 0.0)
        self.log.append(ev)
        decision = self.core.apply(ev)
        if decision is Decision.CONTINUE:  # stopping mode: it goes on running
            self.running.append(n)

    def run(self, reports: int) -> None:
        for _ in range(reports):
            self.step()


def tpe_core(space: aa.SearchSpace = MIXED, seed: int = 0, **kw: Any) -> Core:
    return Core(space, aa.ASHA(1, 27, 3, **kw), aa.TPESampler(seed))


# ---------------------------------------------------------------- determinism and replay
@pytest.mark.parametrize("kw", [{}, {"mode": "stopping"}, {"brackets": "all"}])
def test_a_replayed_log_makes_the_same_next_proposals(kw: dict[str, Any]) -> None:
    live = Driver(tpe_core(**kw), mixed_loss, workers=8)
    live.run(400)
    assert live.core.history is not None and live.core.history.results > 100
    # A fresh core fed the stored log (what loading a study does), with trials in flight.
    resumed = tpe_core(**kw)
    resumed.replay(live.log)
    assert resumed.history is not None and not resumed.history.cache  # no fit during replay
    for _ in range(40):
        a, b = live.core.next_job(), resumed.next_job()
        assert a == b
        if isinstance(a, TrialCreated):
            assert isinstance(b, TrialCreated)
            # A report for both, so later proposals see new results too.
            ev = Reported(a.number, live.core.target_of(a.number), mixed_loss(a.params, 1), 0.0)
            live.core.apply(ev)
            resumed.apply(ev)


def test_same_seed_same_study_and_a_cached_fit_is_a_fresh_fit() -> None:
    a, b = Driver(tpe_core(seed=3), mixed_loss, 4), Driver(tpe_core(seed=3), mixed_loss, 4)
    a.run(1800)
    b.run(1500)
    # Dropping every cached model changes nothing: fits depend on the log alone.
    assert b.core.history is not None
    for _ in range(300):
        b.core.history.cache.clear()
        b.step()
    assert a.log == b.log


def test_fit_points_are_a_function_of_the_count_and_refit_often() -> None:
    assert [_fit_point(r) for r in range(64)] == list(range(64))
    for r in range(64, 200_000, 97):
        g = _fit_point(r)
        assert r - r / 32 <= g <= r  # the model lags the results by at most ~3 %
        assert _fit_point(g) == g


@pytest.mark.asyncio
async def test_a_stored_study_keeps_its_sampler_and_resumes_its_proposals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    space = {"x": aa.Float(-2.0, 2.0), "y": aa.Float(-2.0, 2.0)}

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report((trial.params["x"] - 0.3) ** 2 + trial.params["y"] ** 2 + 1 / step)

    sampler = aa.TPESampler(7, n_candidates=48, gamma=0.2, constant_liar=False)
    async with await aa.create_study(
        name="t", storage=url, space=space, scheduler=aa.ASHA(1, 9, 3), sampler=sampler
    ) as study:
        await study.run(objective, max_trials=60, concurrency=1)
    # Two copies of the stored log, loaded independently, propose the same next configurations.
    shutil.copy(tmp_path / "s.db", tmp_path / "copy.db")
    proposals = []
    for copy in (url, f"sqlite:///{tmp_path / 'copy.db'}"):
        async with await aa.load_study(name="t", storage=copy) as study:
            assert isinstance(study.sampler, aa.TPESampler)
            assert study.sampler == sampler
            jobs = [await study.ask() for _ in range(5)]
            proposals.append([j.params for j in jobs if j.step == 0])
            for j in jobs:
                await study.fail(j, "not run")
    assert proposals[0] == proposals[1] and proposals[0]


# ---------------------------------------------------------------- parameters and config
def test_every_parameter_type_is_proposed_validly_and_learned() -> None:
    late = []
    for seed in range(4):  # one seed's share moves by +-0.1 from seed to seed
        d = Driver(tpe_core(seed=seed), mixed_loss, workers=1)
        d.run(1200)
        params = [d.params[n] for n in sorted(d.params)]
        for p in params:
            assert MIXED.validate(p) == p
            assert p["batch"] == 64
        late += params[-150:]
    # The model learned each type: the best categorical choices and the integer's region
    # dominate late proposals (random search: 1/3, 1/3 and 1/2 of them).
    assert sum(p["act"] == "gelu" for p in late) / len(late) > 0.6
    assert sum(p["flag"] is False for p in late) / len(late) > 0.6
    assert sum(2 <= p["layers"] <= 4 for p in late) / len(late) > 0.7
    assert statistics.median(abs(math.log10(p["lr"]) + 3) for p in late) < 0.6


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"n_candidates": 0}, "n_candidates"),
        ({"gamma": 1.0}, r"gamma must be a number in \(0.0, 1.0\), got 1.0"),
        ({"gamma": math.nan}, "gamma"),
        ({"random_fraction": 1.5}, "random_fraction"),
        ({"bandwidth_factor": 0.5}, "bandwidth_factor"),
        ({"min_bandwidth": 0}, "min_bandwidth"),
        ({"max_points": 2}, "max_points"),
        ({"constant_liar": 1}, "constant_liar"),
    ],
)
def test_bad_settings_are_named(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(aa.ConfigError, match=match):
        aa.TPESampler(**kw)


def test_configuration_round_trip() -> None:
    s = aa.TPESampler(5, n_candidates=24, gamma=0.1, random_fraction=0.3, constant_liar=False)
    again = sampler_from_dict(s.to_dict())
    assert again == s and again.to_dict() == s.to_dict()
    assert "n_candidates=24" in repr(s)
    with pytest.raises(aa.ConfigError, match="not valid"):
        sampler_from_dict({**s.to_dict(), "bogus": 1})


# ---------------------------------------------------------------- failures, NaN, pending
def test_failures_and_nan_count_as_bad_points() -> None:
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0), "y": aa.Float(0.0, 1.0)})
    core = Core(space, aa.ASHA(1, 3, 3), aa.TPESampler(1))
    xs = []
    for _ in range(400):
        job = core.next_job()
        assert isinstance(job, TrialCreated)
        x = job.params["x"]
        xs.append(x)
        if x < 0.4:  # the objective crashes here
            core.apply(TrialEnded(job.number, TrialState.FAILED, "boom", 0.0))
        elif x < 0.7:  # or reports NaN
            core.apply(Reported(job.number, 3, math.nan, 0.0))
        else:  # the only region with finite results, best at x = 0.85
            core.apply(Reported(job.number, 3, abs(x - 0.85) + job.params["y"] * 0.1, 0.0))
    late = xs[-100:]
    assert sum(x >= 0.7 for x in late) / len(late) > 0.6  # random search: 0.3


def _with_pending(constant_liar: bool, running: bool) -> list[dict[str, Any]]:
    """Proposals after the same 60 results and 12 more trials started near the good region,
    which are still ``running`` or were stopped before any result."""
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0), "y": aa.Float(0.0, 1.0)})
    core = Core(space, aa.ASHA(1, 3, 3), aa.TPESampler(2, constant_liar=constant_liar))
    for i in range(60):
        core.apply(Reported(core.next_job().number, 3, float(abs(i % 10 - 5)), 0.0))  # type: ignore[union-attr]
    best = [core.frozen(n).params for n in range(5, 60, 10)]  # the trials with value 0
    for i in range(12):
        core.apply(Enqueued(best[i % len(best)]))
        job = core.next_job()
        assert isinstance(job, TrialCreated)
        if not running:
            core.apply(TrialEnded(job.number, TrialState.STOPPED, None, 0.0))
    out = []
    for _ in range(10):
        job = core.next_job()
        assert isinstance(job, TrialCreated)
        out.append(job.params)
        core.apply(TrialEnded(job.number, TrialState.FAILED, None, 0.0))  # no longer pending
    return out


def test_running_trials_change_proposals_only_with_the_constant_liar() -> None:
    # Running trials that have no result yet: with the liar they count as bad points of the
    # model, so the proposals move; without it they are invisible. (Every variant gets the
    # same draws.)
    assert _with_pending(False, False) == _with_pending(False, True)
    assert _with_pending(True, False) != _with_pending(True, True)
    assert _with_pending(True, False) == _with_pending(False, False)


def test_liars_push_proposals_away_from_running_configurations() -> None:
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0)})

    def spread(liar: bool, seed: int) -> float:
        core = Core(space, aa.ASHA(1, 3, 3), aa.TPESampler(seed, constant_liar=liar, random_fraction=0.0))
        for _ in range(40):
            job = core.next_job()
            assert isinstance(job, TrialCreated)
            core.apply(Reported(job.number, 3, abs(job.params["x"] - 0.5), 0.0))
        batch = []
        for _ in range(32):  # 32 workers start at once: nothing finishes in between
            job = core.next_job()
            assert isinstance(job, TrialCreated)
            batch.append(job.params["x"])
        return float(np.std(batch))

    # Measured: a median spread of 0.13 with the liar, 0.062 without (10 seeds).
    with_liar = statistics.median(spread(True, s) for s in range(10))
    without = statistics.median(spread(False, s) for s in range(10))
    assert with_liar > 1.2 * without


def test_the_running_trials_a_liar_sees_are_the_latest_ones_towards_the_milestone() -> None:
    # History.running_towards reads a by-number array from its end once many trials run;
    # it must give what the plain definition gives, however trials start, move up and end.
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0)})
    rng = np.random.default_rng(0)
    history = History(space)
    for n in range(20_000):
        history.created(n, {"x": 0.5}, 1)
        for _ in range(2):
            k = int(rng.integers(0, n + 1))
            roll = rng.random()
            if roll < 0.45:
                history.settled(k)
            elif roll < 0.5:
                history.failed(k)
            elif roll < 0.6:
                history.heading(k, int(rng.choice([1, 3, 9])))
        if n % 997 == 0 or n > 19_990:
            for milestone in (1, 3, 9):
                for limit in (8, 256, 3_000):
                    plain = sorted(k for k, m in history.pending.items() if m <= milestone)[-limit:]
                    assert history.running_towards(milestone, limit).tolist() == plain
    assert len(history.pending) > 3_000  # the block path was taken, over several blocks


def log_pdf(density: Density, points: np.ndarray) -> np.ndarray:
    """The log density that ``density``'s kernel rows and weights encode (what Ratio.best
    scores the ratio of), at points of the unit cube, in float64."""
    geo = density.geo
    e = (geo.query(points[:, geo.cont], geo.indices(points)) @ density.rows.T).astype(np.float64)
    e += np.log(density.weights.astype(np.float64))
    prior = -np.sum(np.log(geo.n_choices))
    top = np.maximum(e.max(axis=1), prior)
    total = np.exp(e - top[:, None]).sum(axis=1) + np.exp(prior - top)
    out: np.ndarray = top + np.log(total) - math.log(len(density.rows) + 1)
    return out


def _density_by_definition(density: Density, geo: Geometry, centers: np.ndarray, x: np.ndarray) -> float:
    """A kernel density's value at ``x``, written out from its definition in plain floats."""

    def phi(z: float) -> float:
        return 0.5 * math.erfc(-z / math.sqrt(2))

    k = geo.n_choices
    total = 1.0 / float(np.prod(k))  # the prior: uniform in the cube
    for c in centers:
        value = 1.0
        for j, coord in enumerate(geo.cont):
            h = density.h[j]
            mass = phi((1 - c[coord]) / h) - phi(-c[coord] / h)
            value *= math.exp(-0.5 * ((x[coord] - c[coord]) / h) ** 2) / (h * math.sqrt(2 * math.pi) * mass)
        for j, coord in enumerate(geo.cat):
            same = min(int(x[coord] * k[j]), k[j] - 1) == min(int(c[coord] * k[j]), k[j] - 1)
            eps = density.eps[j]
            value *= (1 - eps + eps / k[j]) if same else eps / k[j]
        total += value
    return math.log(total / (len(centers) + 1))


def test_the_density_is_its_definition_and_integrates_to_one() -> None:
    # Scoring is one float32 product over kernel rows; the density it computes must still be
    # the truncated-Gaussian mixture it is documented as.
    space = aa.SearchSpace({"a": aa.Float(0, 1), "n": aa.Int(1, 5), "c": aa.Categorical(list("abc"))})
    geo = Geometry.of(space)
    rng = np.random.default_rng(1)
    for m in (1, 7, 60):
        centers = rng.random((m, 3))
        centers[0, 0] = 0.0  # a kernel on a face: half of it is cut off
        density = Density(geo, centers, 1e-3, 3.0)
        points = rng.random((20, 3))
        got = log_pdf(density, points)
        want = [_density_by_definition(density, geo, centers, x) for x in points]
        assert np.allclose(got, want, atol=2e-3), (m, got - want)
        # Monte Carlo over the cube: it integrates to one (a categorical coordinate holds
        # masses, each spread over 1/3 of its unit interval: hence the factor 3).
        sample = rng.random((200_000, 3))
        assert abs(3 * float(np.mean(np.exp(log_pdf(density, sample)))) - 1.0) < 0.02


def test_a_kernel_is_the_same_bits_alone_or_in_any_batch() -> None:
    # The liars' kernels are cached by trial, computed one at a time in plain floats or many
    # at once in numpy; a resumed study recomputes them in other batches. Proposals replay
    # exactly only if every way gives the same bits.
    dims = {"a": aa.Float(0, 1), "b": aa.Int(1, 7), "c": aa.Categorical(list("abc"))}
    space = aa.SearchSpace({**dims, "d": aa.Float(1e-5, 1, log=True)})
    rng = np.random.default_rng(2)
    # float64 too: a float32 row could hide a difference in the last bits of the arithmetic.
    for geo in (Geometry.of(space), dataclasses.replace(Geometry.of(space), dtype=np.float64)):
        for _ in range(25):
            density = Density(geo, rng.random((int(rng.integers(2, 60)), 4)), 1e-3, 3.0)
            points = rng.random((40, 4))
            points[:4] = rng.integers(0, 2, (4, 4))  # corners: both truncations at their largest
            rows, weights = density.kernels(points)
            for i in range(len(points)):
                one_row, one_weight = density._kernel(points[i].tolist())
                one = (np.array(one_row, dtype=geo.dtype), np.array(one_weight, dtype=geo.dtype))
                for r, w in (one, density.kernels(points[i : i + 1])):
                    assert r.reshape(-1).tobytes() == rows[i].tobytes()
                    assert w.reshape(-1).tobytes() == weights[i : i + 1].tobytes()


def test_running_trials_mostly_towards_higher_milestones_come_out_right() -> None:
    # 40,000 trials, 301 running, only 5 of them towards milestone 1: reading the by-number
    # array block by block would pass through all 40,000; past eight times the running count
    # the dict is read instead. Same answer either way.
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0)})
    history = History(space)
    for n in range(40_000):
        history.created(n, {"x": 0.5}, 1)
        history.settled(n)
    for n in range(1_000, 1_296):
        history.heading(n, 9)
    for n in (3, 10, 500, 20_000, 39_999):
        history.heading(n, 1)
    assert len(history.pending) == 301
    assert history.running_towards(1, 256).tolist() == [3, 10, 500, 20_000, 39_999]
    assert history.running_towards(9, 256).tolist() == sorted(history.pending)[-256:]


@pytest.mark.parametrize("shape", ["1,100 binary choices", "300 numbers, narrow kernels"])
def test_spaces_float32_cannot_score_are_scored_in_the_log_domain(shape: str) -> None:
    # The prior (1 / 2^1100) underflows float64, or 300 narrow kernels overflow exp: a plain
    # ratio is 0/0 or inf/inf there. The proposal must still be the best log ratio, and
    # nothing may warn (warnings are errors in this suite).
    rng = np.random.default_rng(0)
    if shape.startswith("1,100"):
        space = aa.SearchSpace({f"c{i}": aa.Categorical([0, 1]) for i in range(1100)})
        good_pts, bad_pts, widen = rng.random((10, 1100)), rng.random((40, 1100)), 3.0
    else:
        space = aa.SearchSpace({f"x{i}": aa.Float(0.0, 1.0) for i in range(300)})
        good_pts = np.tile(rng.random(300), (120, 1))  # 120 alike: bandwidths at their 0.01 floor
        bad_pts = np.tile(good_pts[0], (200, 1))
        bad_pts[:100] = rng.random((100, 300))
        widen = 1.0
    geo = Geometry.of(space)
    assert geo.dtype is np.float64
    good, bad = Density(geo, good_pts, 1e-3, widen), Density(geo, bad_pts, 1e-3, widen)
    ratio = Ratio(good, bad)
    candidates = good.sample(rng, 32)
    points = np.array([candidates.unit(geo, i) for i in range(32)])
    score = log_pdf(good, points) - log_pdf(bad, points)
    assert score[ratio.best(candidates, None)] == score.max()


# ---------------------------------------------------------------- multi-fidelity
def test_the_model_uses_the_highest_milestone_with_enough_results() -> None:
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0)})
    core = Core(space, aa.ASHA(1, 27, 3), aa.TPESampler(0))
    sampler, history = core.sampler, core.history
    assert isinstance(sampler, aa.TPESampler) and history is not None
    assert sampler._model(space, history) is None  # nothing yet: random proposals
    d = Driver(core, lambda p, s: abs(p["x"] - 0.3) + 1 / s, workers=4)
    d.run(20)
    model = sampler._model(space, history)
    assert model is not None and model.milestone == 1
    d.run(600)
    model = sampler._model(space, history)
    assert model is not None
    counts = {m: len(level) for m, level in history.levels.items()}
    assert counts[model.milestone] >= 10
    assert all(n < 10 for m, n in counts.items() if m > model.milestone)
    assert model.milestone >= 9


def test_a_misleading_low_fidelity_makes_proposals_more_random() -> None:
    space = aa.SearchSpace({"x": aa.Float(0.0, 1.0)})

    def fraction(loss: Callable[[dict[str, Any], int], float]) -> float:
        core = Core(space, aa.ASHA(1, 9, 3), aa.TPESampler(0))
        d = Driver(core, loss, workers=2)
        while core.history is not None and len(core.history.levels.get(9, ())) < 6:
            d.step()
        assert isinstance(core.sampler, aa.TPESampler) and core.history is not None
        model = core.sampler._model(space, core.history)
        assert model is not None and model.milestone < 9
        return model.random_fraction

    faithful = fraction(lambda p, s: abs(p["x"] - 0.3))
    # Low fidelity ranks the trials in the opposite order from high fidelity.
    inverted = fraction(lambda p, s: abs(p["x"] - 0.3) * (1 if s >= 9 else -1))
    assert faithful < 0.34
    assert inverted == 0.5


# ---------------------------------------------------------------- quality
def _best_after(sampler: aa.Sampler, seed: int, trials: int = 150) -> float:
    """Best loss of ``trials`` configurations of a 4-D problem (single fidelity), two at a time."""
    space = aa.SearchSpace(
        {f"x{i}": aa.Float(-3.0, 3.0) for i in range(3)} | {"c": aa.Categorical(list("abcd"))}
    )

    def loss(p: dict[str, Any], step: int) -> float:
        return float(sum((p[f"x{i}"] - 0.4 * i) ** 2 for i in range(3)) + (0 if p["c"] == "c" else 1))

    core = Core(space, aa.ASHA(1, 3, 3, mode="stopping"), sampler)
    d = Driver(core, loss, workers=2)
    while core.n_trials < trials:
        d.step()
    return min(loss(p, 3) for p in d.params.values())


def test_tpe_beats_random_search_by_a_wide_margin() -> None:
    seeds = range(8)
    tpe = statistics.median(_best_after(aa.TPESampler(s), s) for s in seeds)
    rnd = statistics.median(_best_after(aa.RandomSampler(s), s) for s in seeds)
    # Measured: medians of 0.021 against 1.01 (the margin is wide; the bound is far from both).
    assert tpe < rnd / 4, (tpe, rnd)
