"""Search quality: regret of the incumbent against simulated wall-clock time, W workers, many seeds.

    python bench/quality.py --out runs.json      # everything: 21 problems, W = 4 16, 30 seeds
    python bench/quality.py --problems branin --seeds 5      # quicker
    python bench/quality.py --problems lcbench --tasks 3945 7593 --workers 4 --seeds 5 \\
        --methods random ASHA ASHA-TPE optuna-TPE-SH --out runs.json
    python bench/quality.py --from-json runs.json --plot figures   # tables and plots, no rerun

The whole default set is about 1,260 (problem, W, seed) triples of seven runs each; Optuna's
two methods take about 90 % of its time (a run of ``optuna-TPE-SH`` on an LCBench task takes
20-100 s, one of ``ASHA`` 1.5-2.5 s: Optuna's TPE costs O(trials) per ``ask``), about 15 hours
on two cores. It can be split: ``--methods``, ``--tasks``, ``--workers`` and ``--seeds N
--first-seed K`` pick a part, ``--out`` saves it, and ``--from-json a.json b.json ...`` merges
the parts into one set of tables (runs present twice are counted once).

Methods (``--methods``; the first seven are the default set):

- ``random``: random search, every configuration trained to the end (plain code written for
  this benchmark, on the same clock as everything else);
- ``ASHA``: promotion ASHA with ``RandomSampler``; ``ASHA-TPE``: the same scheduler with
  ``TPESampler(constant_liar=True)``; ``ASHA-TPE-noliar``: ``constant_liar=False`` (the
  ablation); ``HB-TPE``: asynchronous Hyperband (``brackets="all"``) with
  ``TPESampler(constant_liar=True)``. These four are the real ``study.run`` on a virtual clock,
  through ``aio_ashb.simulation.simulate`` (rungs at 1, 3, 9, ... R, eta = 3);
- ``optuna-TPE-SH`` and ``optuna-TPE-HB``: Optuna's ``TPESampler(multivariate=True,
  constant_liar=True)`` with ``SuccessiveHalvingPruner()`` (Optuna's defaults: reduction
  factor 4, minimum resource "auto") or ``HyperbandPruner(1, R, 3)``, driven by W worker
  coroutines on the same virtual clock (ask, then per step: sleep, report, ``should_prune``);
- not in the default set: ``sync-SH`` and ``sync-HB`` (synchronous successive halving and
  Hyperband written for this benchmark: rung by rung, a barrier at the end of each rung),
  ``ASHA-stopping`` (``mode="stopping"``) and ``async-HB`` (asynchronous Hyperband, random
  sampler).

Every method gets the same simulated time B: ``--budget`` full trainings' worth of compute
spread over W workers (B = budget x R x mean step time / W, and at least three full trainings'
time), so the rows for different W compare how well each method turns parallelism into
progress. Same seeds for every method (common random numbers).

Observation noise: every reported value gets Gaussian noise of standard deviation
``--noise`` (default 1 %) of the problem's scale, the median regret of a random configuration
at full fidelity (median final value of 20,000 random configurations minus the optimum; of the
240 rows for digits). The noise is a deterministic function of (seed, trial number, step), so
reruns are identical. The incumbent is the trial with the best *noisy* value reported at full
fidelity (step R; lower fidelities of the synthetic functions can read better than the optimum
itself), and its regret is its *true* (noise-free) final value minus the optimum, clamped at 0;
with noise, that regret can go up when a lucky draw takes over.

Problems:

- ``branin``, ``hartmann3``, ``hartmann6``: the multi-fidelity functions of Kandasamy et al.
  (2017), fidelity z = step / R with R = 81 (Hartmann: alpha' = alpha - 0.1 (1 - z)); a step
  lasts 0.5-1.5 s depending on the configuration (the extra dimension ``u``), so trials run at
  different speeds, the situation asynchronous methods are for;
- ``lcbench-<task>`` (17 tasks, ``--tasks``): the YAHPO Gym LCBench surrogate (needs
  ``onnxruntime`` and the folder ``shared/data/yahpo_lcbench``; skipped when either is
  missing): validation error (%) of MLPs per epoch (steps 1-50 are epochs 2-51), step durations
  from the surrogate's training times, over the real 7-dimensional space. A configuration's 50
  epochs are queried in one batch the first time a trial reaches beyond its first epoch
  (its first epoch alone before that: most trials stop there). The optimum is the best final
  error of 20,000 random configurations (a fixed sample, queried once per task), so a method
  can beat it: regret is clamped at 0;
- ``digits``: real learning curves of the demo's MLP on scikit-learn's digits, measured once by
  ``bench/make_digits_curves.py`` (``bench/data/digits_mlp_curves.csv``); the search space is
  the table's 240 rows (an integer index, which a model can only learn poorly), so its budget
  is 15 full trainings; optimum = the table's best final error (%).

Measures, per problem, W and method (medians over seeds unless said):

1. time to reach ASHA's median final regret (each seed's first time its incumbent is at or
   below that level; a seed that never gets there counts as B), and the speed-up: ASHA's own
   value over the method's;
2. final regret at B (median and quartiles), and its ratio to ASHA's;
3. time to reach random search's median final regret, as a speed-up over random search's own.

The summary tables give, per W, geometric means over the LCBench tasks and over all problems
of the speed-ups (1 and 3) and of the final-regret ratio (2; ``--eps``, by default 1e-3 of the
problem's scale, is added to both regrets, so that a zero regret gives a finite ratio; on
digits, whose regrets come in steps of 0.22, a zero median still makes ratios of 80 or more),
the number of problems on which the method's median final regret is at most ASHA's, and the
worst per-problem ratios. Every table can be printed again from an ``--out`` file
(``--from-json``), with another ``--eps`` if wanted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/quality.py` works

import anyio
import numpy as np

import aio_ashb as aa
from aio_ashb.simulation import now, run_virtual, simulate

HERE = Path(__file__).resolve().parent
DEFAULT_METHODS = (
    "random",
    "ASHA",
    "ASHA-TPE",
    "ASHA-TPE-noliar",
    "HB-TPE",
    "optuna-TPE-SH",
    "optuna-TPE-HB",
)
METHODS = (*DEFAULT_METHODS, "sync-SH", "sync-HB", "ASHA-stopping", "async-HB")
TPE_METHODS = ("ASHA-TPE", "ASHA-TPE-noliar", "HB-TPE")
BASELINES = ("random", "sync-SH", "sync-HB")
LCBENCH_TASKS = (
    "3945",
    "7593",
    "126025",
    "126029",
    "167104",
    "167161",
    "167181",
    "167185",
    "167200",
    "168329",
    "168331",
    "168868",
    "168910",
    "189862",
    "189866",
    "189905",
    "189908",
)
SCALE_SAMPLE = 20_000  # random configurations that fix the scale (and LCBench's optimum)

Curve = Callable[[dict[str, Any], int], tuple[float, float]]  # (params, step) -> (value, seconds)


# ------------------------------------------------------------------------------- problems
@dataclass
class Meta:
    """What the tables need to know about a problem (also stored in the JSON output)."""

    name: str
    group: str  # "lcbench", "synthetic" or "digits"
    max_r: int
    optimum: float
    scale: float  # median final value of random configurations minus the optimum
    mean_step: float  # simulated seconds
    budget: float | None = None  # full trainings' worth of compute, if not --budget


@dataclass
class Problem:
    meta: Meta
    space: dict[str, Any]
    curve: Curve  # noise-free; picklable (a module-level class)


def _scale(space: dict[str, Any], curve: Curve, max_r: int, optimum: float) -> float:
    """Median final value of SCALE_SAMPLE random configurations (a fixed sample) minus the optimum."""
    ss = aa.SearchSpace(space)
    rng = np.random.default_rng(12345)
    units = rng.random((SCALE_SAMPLE, ss.ndim))
    finals = [curve(ss.from_unit(u), max_r)[0] for u in units]
    return float(np.median(finals)) - optimum


def _branin(x1: float, x2: float, z: float) -> float:
    a, r, s = 1.0, 6.0, 10.0
    b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.05 * (1 - z)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


@dataclass(frozen=True)
class BraninCurve:
    max_r: int = 81

    def __call__(self, p: dict[str, Any], step: int) -> tuple[float, float]:
        return _branin(p["x1"], p["x2"], step / self.max_r), 0.5 + p["u"]


def branin() -> Problem:
    space = {"x1": aa.Float(-5.0, 10.0), "x2": aa.Float(0.0, 15.0), "u": aa.Float(0.0, 1.0)}
    curve = BraninCurve(81)
    optimum = 0.397887
    meta = Meta("branin", "synthetic", 81, optimum, _scale(space, curve, 81, optimum), 1.0)
    return Problem(meta, space, curve)


# Hartmann functions: the published constants (A, P, alpha) of the 3- and 6-dimensional ones.
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H6_A = np.array(
    [
        [10.0, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3.0, 3.5, 1.7, 10, 17, 8],
        [17.0, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


@dataclass(frozen=True)
class HartmannCurve:
    """Multi-fidelity Hartmann (Kandasamy et al. 2017): alpha' = alpha - 0.1 (1 - z), z = step / R."""

    dim: int
    max_r: int = 81

    def __call__(self, p: dict[str, Any], step: int) -> tuple[float, float]:
        a, q = (_H3_A, _H3_P) if self.dim == 3 else (_H6_A, _H6_P)
        x = np.array([p[f"x{i + 1}"] for i in range(self.dim)])
        alpha = _H_ALPHA - 0.1 * (1 - step / self.max_r)
        value = -float(alpha @ np.exp(-np.sum(a * (x - q) ** 2, axis=1)))
        return value, 0.5 + p["u"]


def hartmann(dim: int) -> Problem:
    space: dict[str, Any] = {f"x{i + 1}": aa.Float(0.0, 1.0) for i in range(dim)}
    space["u"] = aa.Float(0.0, 1.0)
    curve = HartmannCurve(dim, 81)
    optimum = -3.86278 if dim == 3 else -3.32237
    meta = Meta(f"hartmann{dim}", "synthetic", 81, optimum, _scale(space, curve, 81, optimum), 1.0)
    return Problem(meta, space, curve)


@dataclass(frozen=True)
class TableCurve:
    """Learning curves read from a table: the parameter ``config`` is the row."""

    errs: tuple[tuple[float, ...], ...]
    secs: tuple[tuple[float, ...], ...]

    def __call__(self, p: dict[str, Any], step: int) -> tuple[float, float]:
        i = p["config"]
        return self.errs[i][step - 1], self.secs[i][step - 1]


def digits() -> Problem | None:
    path = HERE / "data" / "digits_mlp_curves.csv"
    if not path.exists():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))
    epochs = sum(1 for k in rows[0] if k.startswith("err_"))
    errs = tuple(tuple(float(r[f"err_{e}"]) * 100 for e in range(1, epochs + 1)) for r in rows)
    secs = tuple(tuple(float(r[f"sec_{e}"]) for e in range(1, epochs + 1)) for r in rows)
    mean = statistics.fmean(s for row in secs for s in row)
    finals = [e[-1] for e in errs]
    optimum = min(finals)
    # 240 configurations only: with the default budget random search would try half of them.
    meta = Meta("digits", "digits", epochs, optimum, statistics.median(finals) - optimum, mean, budget=15)
    return Problem(meta, {"config": aa.Int(0, len(rows) - 1)}, TableCurve(errs, secs))


LCBENCH_KEYS = (
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
LCBENCH_SPACE: dict[str, Any] = {
    "batch_size": aa.Int(16, 512, log=True),
    "learning_rate": aa.Float(1e-4, 1e-1, log=True),
    "momentum": aa.Float(0.1, 0.99),
    "weight_decay": aa.Float(1e-5, 1e-1),
    "num_layers": aa.Int(1, 5),
    "max_units": aa.Int(64, 1024, log=True),
    "max_dropout": aa.Float(0.0, 1.0),
}
LCBENCH_EPOCHS = 50  # steps 1..50 are epochs 2..51 (see DATA.md)


class LCBenchCurve:
    """One LCBench task through the ONNX surrogate, cached per configuration.

    The session is made on first use in each process (and the cache is per process): an
    instance pickles without them, and a forked worker makes its own session rather than
    share its parent's (sharing works too, but the parent drops its session after the big
    query that fixes the optimum, see ``close``).

    A configuration costs one query of its first epoch (1 row) when it is first seen, then
    one query of all 50 epochs when a trial asks for a later step: about 0.25 and 1.8 ms on
    these machines, and two thirds of ASHA's trials stop at the first rung (one query of 50
    rows up front would cost 1.8 ms for every trial).
    """

    def __init__(self, folder: Path, task: str) -> None:
        self.model = str(folder / "model.onnx")
        self.task = task
        self.code = int(json.loads((folder / "encoding.json").read_text())["OpenML_task_id"][task])
        self._session: Any = None
        self._pid = -1
        self._first: dict[tuple[float, ...], tuple[float, float]] = {}
        self._full: dict[tuple[float, ...], tuple[list[float], list[float]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_session=None, _pid=-1, _first={}, _full={})
        return state

    def clear(self) -> None:
        """Forget the cached curves (between runs: the memory would only grow)."""
        self._first.clear()
        self._full.clear()

    def close(self) -> None:
        """Drop the session: it keeps the memory of its largest batch (about 270 MB after
        20,000 rows), which every forked worker would inherit."""
        self._session = None
        self._pid = -1

    def query(self, configs: np.ndarray, epochs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(validation error %, cumulative seconds), each [n configs, len(epochs)], of the
        configurations ``configs`` ([n, 7], in LCBENCH_KEYS order) at those epochs."""
        if self._session is None or self._pid != os.getpid():
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(self.model, opts)
            self._pid = os.getpid()
        n, k = len(configs), len(epochs)
        cont = np.empty((n * k, 8), dtype=np.float32)
        cont[:, 0] = np.tile(np.asarray(epochs, dtype=np.float32), n)
        cont[:, 1:] = np.repeat(configs, k, axis=0)
        cat = np.full((n * k, 1), self.code, dtype=np.int32)
        names = [i.name for i in self._session.get_inputs()]
        out = self._session.run(None, {names[0]: cat, names[1]: cont})[0].reshape(n, k, 6)
        return 100.0 - out[:, :, 1].astype(float), out[:, :, 0].astype(float)

    def __call__(self, p: dict[str, Any], step: int) -> tuple[float, float]:
        key = tuple(p[k] for k in LCBENCH_KEYS)
        if step == 1:
            first = self._first.get(key)
            if first is None:
                err, cum = self.query(np.array([key]), [2])
                first = self._first[key] = (float(err[0, 0]), max(float(cum[0, 0]), 1e-3))
            return first
        full = self._full.get(key)
        if full is None:
            err, cum = self.query(np.array([key]), range(2, LCBENCH_EPOCHS + 2))
            secs = np.maximum(np.diff(cum[0], prepend=0.0), 1e-3)
            full = self._full[key] = (err[0].tolist(), secs.tolist())
        return full[0][step - 1], full[1][step - 1]


def lcbench(folder: Path, task: str) -> Problem | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    if not (folder / "model.onnx").exists():
        return None
    curve = LCBenchCurve(folder, task)
    # The optimum and the scale: the final epoch of a fixed sample of random configurations,
    # one batched query.
    ss = aa.SearchSpace(LCBENCH_SPACE)
    rng = np.random.default_rng(12345)
    sample = [ss.from_unit(u) for u in rng.random((SCALE_SAMPLE, ss.ndim))]
    configs = np.array([[c[k] for k in LCBENCH_KEYS] for c in sample])
    parts = [curve.query(configs[i : i + 2000], [LCBENCH_EPOCHS + 1]) for i in range(0, len(configs), 2000)]
    curve.close()
    err, cum = np.concatenate([e for e, _ in parts]), np.concatenate([c for _, c in parts])
    optimum = float(err.min())
    meta = Meta(
        f"lcbench-{task}",
        "lcbench",
        LCBENCH_EPOCHS,
        optimum,
        float(np.median(err)) - optimum,
        float(np.mean(cum)) / LCBENCH_EPOCHS,
    )
    return Problem(meta, dict(LCBENCH_SPACE), curve)


# ------------------------------------------------------------------------------- runs
Trace = list[tuple[float, int, int, float]]  # (simulated time, trial number, step, noisy value)


class Observed:
    """The curve as one run sees it: ``(params, step, number) -> (noisy value, seconds)``.

    The noise of trial ``number`` is a fixed draw for (seed, number), one value per step; the
    true final value of every trial that reaches step R is kept in ``final``.
    """

    def __init__(self, curve: Curve, max_r: int, sd: float, seed: int) -> None:
        self.curve = curve
        self.max_r = max_r
        self.sd = sd
        self.seed = seed
        self.final: dict[int, float] = {}
        self._noise: dict[int, list[float]] = {}

    def __call__(self, params: dict[str, Any], step: int, number: int) -> tuple[float, float]:
        value, seconds = self.curve(params, step)
        noise = self._noise.get(number)
        if noise is None:
            draw = np.random.default_rng([self.seed, number]).standard_normal(self.max_r)
            noise = self._noise[number] = (draw * self.sd).tolist()
        if step == self.max_r:
            self.final[number] = value
        return value + noise[step - 1], seconds


def has_tpe() -> bool:
    return getattr(aa, "TPESampler", None) is not None  # new in issue 12: the rest runs without it


def tpe_sampler(seed: int, constant_liar: bool) -> aa.Sampler:
    sampler: aa.Sampler = getattr(aa, "TPESampler")(seed=seed, constant_liar=constant_liar)  # noqa: B009
    return sampler


def run_study(
    problem: Problem, method: str, workers: int, budget_s: float, seed: int, obs: Observed
) -> Trace:
    """The aio_ashb methods: the real study.run on a virtual clock."""
    mode = "stopping" if method == "ASHA-stopping" else "promotion"
    brackets: int | str = "all" if method in ("async-HB", "HB-TPE") else 1
    sched = aa.ASHA(1, problem.meta.max_r, 3, mode=mode, brackets=brackets)  # type: ignore[arg-type]
    sampler: aa.Sampler = aa.RandomSampler(seed)
    if method in TPE_METHODS:
        sampler = tpe_sampler(seed, constant_liar=method != "ASHA-TPE-noliar")
    result = simulate(
        obs,
        space=problem.space,
        scheduler=sched,
        workers=workers,
        time_budget=budget_s,
        seed=seed,
        sampler=sampler,
    )
    return result.reports


def run_optuna(
    problem: Problem, method: str, workers: int, budget_s: float, seed: int, obs: Observed
) -> Trace:
    """Optuna's TPE and pruners, asked and told by W worker coroutines on the virtual clock."""
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    max_r = problem.meta.max_r
    pruner: optuna.pruners.BasePruner
    if method == "optuna-TPE-SH":
        pruner = optuna.pruners.SuccessiveHalvingPruner()
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_r, reduction_factor=3)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    dists: dict[str, BaseDistribution] = {}
    for name, dim in problem.space.items():
        if isinstance(dim, aa.Float):
            dists[name] = FloatDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, aa.Int):
            dists[name] = IntDistribution(dim.low, dim.high, log=dim.log)
        else:
            dists[name] = CategoricalDistribution(dim.choices)
    trace: Trace = []

    async def worker() -> None:
        while True:
            trial = study.ask(dists)
            params, number = trial.params, trial.number
            for step in range(1, max_r + 1):
                value, seconds = obs(params, step, number)
                await anyio.sleep(seconds)
                trial.report(value, step)
                trace.append((now(), number, step, value))
                if step < max_r and trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, value)

    async def main() -> None:
        with anyio.move_on_after(budget_s):
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker)

    run_virtual(main)
    return trace


def milestones(max_r: int) -> list[int]:
    return list(aa.ASHA(1, max_r, 3).milestones)


def run_baseline(
    problem: Problem, method: str, workers: int, budget_s: float, seed: int, obs: Observed
) -> Trace:
    """Random search and synchronous SH / Hyperband, plain code on the virtual clock."""
    space = aa.SearchSpace(problem.space)
    rng = np.random.default_rng(seed)
    max_r = problem.meta.max_r
    trace: Trace = []
    ms = milestones(max_r)
    numbers = iter(range(1 << 62))

    def sample() -> tuple[int, dict[str, Any]]:
        return next(numbers), space.from_unit(rng.random(space.ndim))

    async def train(job: tuple[int, dict[str, Any]], start: int, stop: int) -> float:
        number, p = job
        value = math.nan
        for step in range(start + 1, stop + 1):
            value, seconds = obs(p, step, number)
            await anyio.sleep(seconds)
            trace.append((now(), number, step, value))
        return value

    async def rung(jobs: list[tuple[tuple[int, dict[str, Any]], int, int]]) -> list[float]:
        """Share the jobs among the workers; return when all are done (the barrier)."""
        results = [math.nan] * len(jobs)
        queue = list(enumerate(jobs))
        queue.reverse()

        async def worker() -> None:
            while queue:
                i, (c, a, b) = queue.pop()
                results[i] = await train(c, a, b)

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        return results

    async def successive_halving(first: int, n: int) -> None:
        configs = [sample() for _ in range(n)]
        done = [0] * n
        for k in range(first, len(ms)):
            values = await rung([(c, d, ms[k]) for c, d in zip(configs, done, strict=True)])
            done = [ms[k]] * len(configs)
            keep = max(1, len(configs) // 3)
            order = sorted(range(len(configs)), key=lambda i: (math.isnan(values[i]), values[i]))[:keep]
            configs = [configs[i] for i in order]
            done = [done[i] for i in order]

    async def main() -> None:
        with anyio.move_on_after(budget_s):
            if method == "random":

                async def worker() -> None:
                    while True:
                        await train(sample(), 0, max_r)

                async with anyio.create_task_group() as tg:
                    for _ in range(workers):
                        tg.start_soon(worker)
            s_max = len(ms) - 1
            while True:
                if method == "sync-SH":
                    await successive_halving(0, 3**s_max)
                else:  # synchronous Hyperband: brackets one after the other
                    for s in range(s_max, -1, -1):
                        n = math.ceil((s_max + 1) / (s + 1) * 3**s)
                        await successive_halving(s_max - s, n)

    run_virtual(main)
    return trace


@dataclass
class Run:
    """One run's summary: the incumbent's true regret each time the incumbent changed."""

    problem: str
    method: str
    workers: int
    seed: int
    times: list[float]
    regrets: list[float]
    trials: int  # trials that reported at least once
    seconds: float  # real seconds the run took (one process)


_PROBLEMS: dict[str, Problem] = {}  # filled before the pool forks: the workers inherit them
_NOISE = 0.01


def one_run(job: tuple[str, str, int, float, int]) -> Run:
    name, method, workers, budget_s, seed = job
    start = time.perf_counter()
    problem = _PROBLEMS[name]
    meta = problem.meta
    if isinstance(problem.curve, LCBenchCurve):
        problem.curve.clear()
    obs = Observed(problem.curve, meta.max_r, _NOISE * meta.scale, seed)
    if method in BASELINES:
        fn = run_baseline
    elif method.startswith("optuna"):
        fn = run_optuna
    else:
        fn = run_study
    trace = fn(problem, method, workers, budget_s, seed, obs)
    full = sorted((t, number, v) for t, number, step, v in trace if step == meta.max_r and t <= budget_s)
    times: list[float] = []
    regrets: list[float] = []
    best = math.inf
    for t, number, v in full:
        if math.isfinite(v) and v < best:
            best = v
            times.append(t)
            regrets.append(max(0.0, obs.final[number] - meta.optimum))
    trials = len({number for _, number, _, _ in trace})
    return Run(name, method, workers, seed, times, regrets, trials, time.perf_counter() - start)


# ------------------------------------------------------------------------------- measures
def regret_at(times: list[float], regrets: list[float], t: float) -> float:
    """The incumbent's regret at time t (inf before the first full evaluation)."""
    value = math.inf
    for ti, r in zip(times, regrets, strict=True):
        if ti > t:
            break
        value = r
    return value


def time_to(times: list[float], regrets: list[float], level: float, budget_s: float) -> float:
    """The first time the incumbent's regret is at most ``level``; ``budget_s`` if never."""
    for ti, r in zip(times, regrets, strict=True):
        if ti > budget_s:
            break
        if r <= level:
            return ti
    return budget_s


def quartiles(values: Iterable[float]) -> tuple[float, float, float]:
    s = sorted(values)
    n = len(s)
    return s[n // 4], s[n // 2], s[(3 * n) // 4]  # inf (no incumbent yet) sorts last


def gmean(values: Iterable[float]) -> float:
    vs = [max(v, 1e-300) for v in values]
    return math.exp(statistics.fmean(math.log(v) for v in vs)) if vs else math.nan


@dataclass
class Cell:
    """One (problem, W, method): the three measures."""

    final: tuple[float, float, float]  # final regret, quartiles
    trials: float  # median trials started
    t_asha: float = math.nan  # median time to ASHA's median final regret
    t_random: float = math.nan  # median time to random search's median final regret
    vs_asha: float = math.nan  # speed-up: ASHA's t_asha / this t_asha
    vs_random: float = math.nan  # speed-up: random's t_random / this t_random
    ratio: float = math.nan  # (final regret + eps) / (ASHA's + eps)


@dataclass
class Results:
    problems: list[Meta]
    methods: list[str]
    workers: list[int]
    noise: float
    budgets: dict[str, dict[int, float]]  # problem -> W -> simulated seconds
    runs: list[Run] = field(default_factory=list)
    wall: float = math.nan  # real seconds (a sum, for merged files)

    def cells(self, eps: float) -> dict[tuple[str, int, str], Cell]:
        by: dict[tuple[str, int, str], list[Run]] = {}
        for r in self.runs:
            by.setdefault((r.problem, r.workers, r.method), []).append(r)
        out: dict[tuple[str, int, str], Cell] = {}
        for p in self.problems:
            for w in self.workers:
                b = self.budgets[p.name][w]
                finals = {
                    m: [regret_at(r.times, r.regrets, b) for r in by.get((p.name, w, m), [])]
                    for m in self.methods
                }
                cells = {
                    m: Cell(quartiles(finals[m]), statistics.median(r.trials for r in by[p.name, w, m]))
                    for m in self.methods
                    if finals[m]
                }
                for ref, attr, speed in (("ASHA", "t_asha", "vs_asha"), ("random", "t_random", "vs_random")):
                    if ref not in cells:
                        continue
                    level = cells[ref].final[1]
                    for m, c in cells.items():
                        reach = [time_to(r.times, r.regrets, level, b) for r in by[p.name, w, m]]
                        setattr(c, attr, statistics.median(reach))
                    for c in cells.values():
                        setattr(c, speed, getattr(cells[ref], attr) / max(getattr(c, attr), 1e-12))
                if "ASHA" in cells:
                    a = cells["ASHA"].final[1]
                    for c in cells.values():
                        c.ratio = (c.final[1] + eps * p.scale) / (a + eps * p.scale)
                out.update({(p.name, w, m): c for m, c in cells.items()})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "problems": [asdict(p) for p in self.problems],
            "methods": self.methods,
            "workers": self.workers,
            "seeds": sorted({r.seed for r in self.runs}),
            "noise": self.noise,
            "budgets": {k: {str(w): b for w, b in v.items()} for k, v in self.budgets.items()},
            "wall_seconds": self.wall,
            "runs": [asdict(r) for r in self.runs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        return cls(
            problems=[Meta(**p) for p in data["problems"]],
            methods=list(data["methods"]),
            workers=[int(w) for w in data["workers"]],
            noise=float(data["noise"]),
            budgets={k: {int(w): float(b) for w, b in v.items()} for k, v in data["budgets"].items()},
            runs=[Run(**r) for r in data["runs"]],
            wall=float(data.get("wall_seconds", math.nan)),
        )

    def merge(self, other: Results) -> None:
        """Add another file's runs (other methods, seeds, problems or W of the same setup)."""
        if other.noise != self.noise:
            raise SystemExit(f"cannot merge runs with noise {self.noise} and {other.noise}")
        known = {p.name: p for p in self.problems}
        for p in other.problems:
            if p.name not in known:
                self.problems.append(p)
            elif p != known[p.name]:
                raise SystemExit(
                    f"cannot merge: {p.name} differs between the files ({p} and {known[p.name]})"
                )
        for name, bs in other.budgets.items():
            mine = self.budgets.setdefault(name, {})
            for w, b in bs.items():
                if mine.setdefault(w, b) != b:
                    raise SystemExit(f"cannot merge: the budgets of {name}, W = {w} differ")
        self.methods = [m for m in METHODS if m in self.methods or m in other.methods]
        self.workers = sorted({*self.workers, *other.workers})
        seen = {(r.problem, r.method, r.workers, r.seed) for r in self.runs}
        dup = [r for r in other.runs if (r.problem, r.method, r.workers, r.seed) in seen]
        if dup:
            print(f"note: {len(dup)} runs appear twice in the merged files; kept the first of each")
        self.runs += [r for r in other.runs if (r.problem, r.method, r.workers, r.seed) not in seen]
        self.wall += other.wall


# ------------------------------------------------------------------------------- reporting
def fmt(x: float) -> str:
    if not math.isfinite(x):
        return "-" if math.isnan(x) else "inf"
    if x == 0:
        return "0"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def fmt_time(t: float, budget_s: float) -> str:
    return f"{fmt(budget_s)} (B)" if t >= budget_s else fmt(t)  # NaN: "-"


def fmt_x(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.2f}x"


def print_tables(res: Results, eps: float) -> None:
    cells = res.cells(eps)
    seeds = sorted({r.seed for r in res.runs}) or [-1]
    print(
        f"# {len(res.problems)} problems, methods {', '.join(res.methods)}, W = {res.workers}, "
        f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]}), noise {res.noise:g} of the scale, "
        f"ratios with eps {eps:g} of the scale\n"
    )
    for p in res.problems:
        print(
            f"## {p.name} (optimum {p.optimum:.6g}; scale {p.scale:.4g}; noise sd {res.noise * p.scale:.3g}; "
            f"R = {p.max_r}; mean step {p.mean_step:.3g} s)\n"
        )
        print(
            "| W | method | final regret, median [q25, q75] | / ASHA's | time to ASHA's median | speed-up "
            "| time to random's median | speed-up | trials |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for w in res.workers:
            b = res.budgets[p.name][w]
            for m in res.methods:
                c = cells.get((p.name, w, m))
                if c is None:
                    continue
                q = c.final
                print(
                    f"| {w} | {m} | {fmt(q[1])} [{fmt(q[0])}, {fmt(q[2])}] | {fmt_x(c.ratio)} | "
                    f"{fmt_time(c.t_asha, b)} | {fmt_x(c.vs_asha)} | "
                    f"{fmt_time(c.t_random, b)} | {fmt_x(c.vs_random)} | "
                    f"{c.trials:.0f} |"
                )
            targets = [
                f"{m} {fmt(cells[p.name, w, m].final[1])}"
                for m in ("ASHA", "random")
                if (p.name, w, m) in cells
            ]
            print(f"| {w} | (B = {fmt(b)} simulated s; targets: {', '.join(targets)}) | | | | | | | |")
        print()

    lcb = [p for p in res.problems if p.group == "lcbench"]
    groups = [("LCBench tasks", lcb), ("problems", res.problems)]
    for w in res.workers:
        for label, ps in groups:
            if not ps or (label == "problems" and len(ps) == len(groups[0][1])):
                continue
            print(f"### Summary, W = {w}: geometric means over {len(ps)} {label}\n")
            print(
                "| method | speed-up vs ASHA | speed-up vs random | final regret / ASHA's "
                "| final <= ASHA's | worst final / ASHA's | worst speed-up vs ASHA |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for m in res.methods:
                cs = [cells[p.name, w, m] for p in ps if (p.name, w, m) in cells]
                if not cs:
                    continue
                ratios = [c.ratio for c in cs if math.isfinite(c.ratio)]
                speed = [c.vs_asha for c in cs if math.isfinite(c.vs_asha)]
                rand = [c.vs_random for c in cs if math.isfinite(c.vs_random)]
                wins = sum(1 for c in cs if math.isfinite(c.ratio) and c.ratio <= 1.0)
                print(
                    f"| {m} | {fmt_x(gmean(speed))} | {fmt_x(gmean(rand))} | {fmt_x(gmean(ratios))} | "
                    f"{wins}/{len(cs)} | {fmt_x(max(ratios, default=math.nan))} | "
                    f"{fmt_x(min(speed, default=math.nan))} |"
                )
            print()

    if res.runs:
        print("### Real seconds per run (one process), mean\n")
        kinds = sorted({p.group for p in res.problems})
        group_of = {p.name: p.group for p in res.problems}
        print("| method | " + " | ".join(f"{k}, W = {w}" for k in kinds for w in res.workers) + " |")
        print("| --- |" + " --- |" * (len(kinds) * len(res.workers)))
        for m in res.methods:
            row = []
            for k in kinds:
                for w in res.workers:
                    s = [
                        r.seconds for r in res.runs if (r.method, r.workers, group_of[r.problem]) == (m, w, k)
                    ]
                    row.append(f"{statistics.fmean(s):.2f}" if s else "-")
            print(f"| {m} | " + " | ".join(row) + " |")
        print()
    if math.isfinite(res.wall):
        print(f"Total wall time: {res.wall:,.0f} s for {len(res.runs)} runs.")


def draw(res: Results, folder: Path) -> None:
    from matplotlib.figure import Figure

    by: dict[tuple[str, int, str], list[Run]] = {}
    for r in res.runs:
        by.setdefault((r.problem, r.workers, r.method), []).append(r)
    folder.mkdir(parents=True, exist_ok=True)
    for p in res.problems:
        fig = Figure(figsize=(4.2 * len(res.workers), 3.8), layout="constrained")
        axes = fig.subplots(1, len(res.workers), squeeze=False)[0]
        for ax, w in zip(axes, res.workers, strict=True):
            budget_s = res.budgets[p.name][w]
            grid = np.linspace(budget_s / 200, budget_s, 200)
            for m in res.methods:
                runs = by.get((p.name, w, m))
                if not runs:
                    continue
                curves = np.array([[regret_at(r.times, r.regrets, g) for g in grid] for r in runs])
                # Before a first full evaluation there is no incumbent: plotted as missing.
                curves[~np.isfinite(curves)] = np.nan
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns early on
                    med = np.nanmedian(curves, axis=0)
                    lo, hi = np.nanquantile(curves, 0.25, axis=0), np.nanquantile(curves, 0.75, axis=0)
                ax.plot(grid, med, label=m)
                ax.fill_between(grid, lo, hi, alpha=0.15)
            # Regret can reach 0 (the optimum of the tables is one of their rows; LCBench's is a
            # sample's best): a log scale that turns linear near 0 keeps those curves visible.
            ax.set_yscale("symlog", linthresh=max(1e-3 * p.scale, 1e-9))
            ax.set_title(f"{p.name}, W = {w}")
            ax.set_xlabel("simulated seconds")
        axes[0].set_ylabel("regret of the incumbent (median, quartiles)")
        axes[-1].legend(fontsize="small")
        out = folder / f"quality-{p.name}.png"
        fig.savefig(out, dpi=90)
        print(f"wrote {out}")


# ------------------------------------------------------------------------------- main
# Rough real cost of a run, relative: expensive runs are handed out first, so that the pool
# does not end waiting for one long run.
# (Measured on LCBench: Optuna's runs take 15-30 times as long as ASHA's.)
_COST = {
    "optuna-TPE-SH": 30.0,
    "optuna-TPE-HB": 15.0,
    "ASHA-TPE": 1.7,
    "ASHA-TPE-noliar": 1.5,
    "HB-TPE": 1.1,
    "ASHA": 1.0,
    "ASHA-stopping": 1.0,
    "async-HB": 1.0,
    "sync-SH": 0.5,
    "sync-HB": 0.5,
    "random": 0.3,
}


def build_problems(args: argparse.Namespace) -> list[Problem]:
    problems: list[Problem] = []
    for name in args.problems:
        if name == "branin":
            problems.append(branin())
        elif name in ("hartmann3", "hartmann6"):
            problems.append(hartmann(int(name[-1])))
        elif name == "digits":
            p = digits()
            if p is None:
                print("digits: skipped (run bench/make_digits_curves.py)")
            else:
                problems.append(p)
        elif name == "lcbench":
            for task in args.tasks:
                q = lcbench(args.lcbench, task)
                if q is None:
                    print(f"lcbench: skipped (needs onnxruntime and {args.lcbench})")
                    break
                problems.append(q)
    return problems


def run_all(args: argparse.Namespace) -> Results:
    global _NOISE
    _NOISE = args.noise
    methods = list(args.methods)
    if not has_tpe() and any(m in TPE_METHODS for m in methods):
        skipped = [m for m in methods if m in TPE_METHODS]
        print(f"note: aio_ashb has no TPESampler yet; skipped {', '.join(skipped)}")
        methods = [m for m in methods if m not in TPE_METHODS]
    if any(m.startswith("optuna") for m in methods):
        try:
            import optuna  # noqa: F401
        except ImportError:
            print("note: optuna is not installed; skipped the optuna methods")
            methods = [m for m in methods if not m.startswith("optuna")]
    t0 = time.perf_counter()
    problems = build_problems(args)
    print(f"{len(problems)} problems built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    res = Results([p.meta for p in problems], methods, list(args.workers), args.noise, {})
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = []
    for p in problems:
        _PROBLEMS[p.meta.name] = p
        res.budgets[p.meta.name] = {}
        for w in args.workers:
            # At least three full trainings' time, or many workers would never finish one.
            full = p.meta.max_r * p.meta.mean_step
            budget_s = max((p.meta.budget or args.budget) * full / w, 3 * full)
            res.budgets[p.meta.name][w] = budget_s
            jobs += [(p.meta.name, m, w, budget_s, seed) for m in methods for seed in seeds]
    jobs.sort(key=lambda j: -_COST[j[1]])
    total, done, shown = len(jobs), 0, 0

    def progress(run: Run) -> None:
        nonlocal done, shown
        res.runs.append(run)
        done += 1
        if done * 20 // total > shown or done == total:
            shown = done * 20 // total
            print(f"{done}/{total} runs, {time.perf_counter() - t0:,.0f} s", file=sys.stderr, flush=True)

    if args.jobs <= 1:
        for job in jobs:
            progress(one_run(job))
    else:
        ctx = multiprocessing.get_context("fork")  # the workers inherit _PROBLEMS
        with ctx.Pool(args.jobs) as pool:
            for run in pool.imap_unordered(one_run, jobs, chunksize=1):
                progress(run)
    res.wall = time.perf_counter() - t0
    print(f"{total} runs in {res.wall:,.0f} s", file=sys.stderr)
    keys = [(p.meta.name, w, m) for p in problems for w in args.workers for m in methods]
    order = {k: i for i, k in enumerate(keys)}
    res.runs.sort(key=lambda r: (order[r.problem, r.workers, r.method], r.seed))
    return res


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--problems",
        nargs="+",
        default=["branin", "hartmann3", "hartmann6", "lcbench", "digits"],
        choices=["branin", "hartmann3", "hartmann6", "lcbench", "digits"],
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed.. (to split a run)")
    parser.add_argument("--budget", type=float, default=100, help="full trainings' worth of compute")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--noise", type=float, default=0.01, help="noise sd, as a fraction of the scale")
    parser.add_argument(
        "--eps", type=float, default=1e-3, help="added to regrets in ratios, as a fraction of the scale"
    )
    parser.add_argument(
        "--lcbench",
        type=Path,
        default=Path(os.environ.get("AIO_ASHB_LCBENCH", HERE.parent.parent / "shared/data/yahpo_lcbench")),
    )
    parser.add_argument("--tasks", nargs="+", default=list(LCBENCH_TASKS))
    parser.add_argument("--plot", type=Path, default=None, help="write regret plots (PNG) to this folder")
    parser.add_argument("--out", type=Path, default=None, help="write every run's summary to this JSON file")
    parser.add_argument(
        "--from-json", type=Path, nargs="+", default=None, help="tables of --out files (merged), no runs"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    args = parser.parse_args()

    if args.from_json is not None:
        res = Results.from_json(json.loads(args.from_json[0].read_text()))
        for path in args.from_json[1:]:
            res.merge(Results.from_json(json.loads(path.read_text())))
    else:
        res = run_all(args)
        if args.out is not None:
            args.out.write_text(json.dumps(res.to_json()))
            print(f"wrote {args.out}\n")
    print_tables(res, args.eps)
    if args.plot is not None:
        draw(res, args.plot)


if __name__ == "__main__":
    main()
