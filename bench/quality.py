"""Search quality: best-so-far regret against simulated wall-clock time, W workers, many seeds.

    python bench/quality.py                            # all problems found, W = 1 4 16 64, 20 seeds
    python bench/quality.py --problems branin --workers 4 16 --seeds 5     # quicker
    python bench/quality.py --lcbench ../shared/data/yahpo_lcbench --tasks 3945 7593

ASHA (promotion and stopping) and asynchronous Hyperband run through ``aio_ashb.simulation``:
the real ``study.run`` on a virtual clock, trials sleeping for each step's duration. The
baselines are plain code written for this benchmark on the same clock: random search (every
configuration trained to the end), synchronous successive halving and synchronous Hyperband
(rung by rung, each rung's jobs shared by the W workers, a barrier at the end of each rung;
promoted configurations continue from their checkpoint).

Every method gets the same simulated time, ``budget`` full trainings' worth of compute spread
over W workers (T = budget x R x mean step time / W, and at least three full trainings' time),
so the rows for different W compare how well each method turns parallelism into progress. The
metric is the regret of the incumbent: the best value reported so far *at full fidelity* (step
R) minus the problem's optimum (lower fidelities of the synthetic functions can read better
than the optimum itself). Problems:

- ``branin``, ``hartmann3``: the multi-fidelity functions of Kandasamy et al. (2017), fidelity
  z = step / R; a step lasts 0.5-1.5 s depending on the configuration, so trials run at
  different speeds (the situation asynchronous methods are for);
- ``lcbench-<task>``: the YAHPO Gym LCBench surrogate (needs ``onnxruntime`` and the folder of
  ``shared/data/yahpo_lcbench``; skipped when either is missing): validation error (%) of MLPs
  per epoch, step durations from the surrogate's training times; the search space is a table of
  3,000 random configurations queried once per task; optimum = the table's best final error;
- ``digits``: real learning curves of the demo's MLP on scikit-learn's digits, measured once by
  ``bench/make_digits_curves.py`` (``bench/data/digits_mlp_curves.csv``); the search space is
  the table's 240 configurations, so its budget is 15 full trainings; optimum = the table's
  best final error (%).
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import os
import statistics
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/quality.py` works

import anyio
import numpy as np

import aio_ashb as aa
from aio_ashb.simulation import now, run_virtual, simulate

HERE = Path(__file__).resolve().parent
METHODS = ("random", "sync-SH", "sync-HB", "ASHA-promotion", "ASHA-stopping", "async-HB")


# ------------------------------------------------------------------------------- problems
@dataclass
class Problem:
    name: str
    space: dict[str, Any]
    max_r: int
    curve: Callable[[dict[str, Any], int], tuple[float, float]]  # (params, step) -> (value, seconds)
    optimum: float
    mean_step: float
    # Regret levels for the time-to-reach table; empty: 2/3, 1/2 and 1/4 of random search's
    # median final regret with the fewest workers (for problems whose scale is not known).
    levels: list[float] = field(default_factory=list)
    budget: float | None = None  # full trainings' worth of compute, if not --budget


def _branin(x1: float, x2: float, z: float) -> float:
    a, r, s = 1.0, 6.0, 10.0
    b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.05 * (1 - z)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def branin() -> Problem:
    def curve(p: dict[str, Any], step: int) -> tuple[float, float]:
        return _branin(p["x1"], p["x2"], step / 81), 0.5 + p["u"]

    space = {"x1": aa.Float(-5.0, 10.0), "x2": aa.Float(0.0, 15.0), "u": aa.Float(0.0, 1.0)}
    return Problem("branin", space, 81, curve, 0.397887, 1.0, [1.0, 0.1, 0.01])


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H3_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann3() -> Problem:
    def curve(p: dict[str, Any], step: int) -> tuple[float, float]:
        x = np.array([p["x1"], p["x2"], p["x3"]])
        alpha = _H3_ALPHA - 0.1 * (1 - step / 81)
        value = -float(np.sum(alpha * np.exp(-np.sum(_H3_A * (x - _H3_P) ** 2, axis=1))))
        return value, 0.5 + p["u"]

    space = {
        "x1": aa.Float(0.0, 1.0),
        "x2": aa.Float(0.0, 1.0),
        "x3": aa.Float(0.0, 1.0),
        "u": aa.Float(0.0, 1.0),
    }
    return Problem("hartmann3", space, 81, curve, -3.86278, 1.0, [0.5, 0.1, 0.01])


def digits() -> Problem | None:
    path = HERE / "data" / "digits_mlp_curves.csv"
    if not path.exists():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))
    epochs = sum(1 for k in rows[0] if k.startswith("err_"))
    errs = [[float(r[f"err_{e}"]) for e in range(1, epochs + 1)] for r in rows]
    secs = [[float(r[f"sec_{e}"]) for e in range(1, epochs + 1)] for r in rows]

    def curve(p: dict[str, Any], step: int) -> tuple[float, float]:
        i = p["config"]
        return errs[i][step - 1] * 100, secs[i][step - 1]

    mean = statistics.fmean(s for row in secs for s in row)
    space = {"config": aa.Int(0, len(rows) - 1)}
    # 240 configurations only: with the default budget random search would try half of them.
    optimum = min(e[-1] for e in errs) * 100
    return Problem("digits", space, epochs, curve, optimum, mean, [1.0, 0.5, 0.25], budget=15)


LCBENCH_TASKS = ("3945", "7593", "126025")


def lcbench(folder: Path, task: str) -> Problem | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    if not (folder / "model.onnx").exists():
        return None
    import json

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), opts)
    inputs = [i.name for i in session.get_inputs()]
    code = json.loads((folder / "encoding.json").read_text())["OpenML_task_id"][task]
    epochs = 50  # steps 1..50 are epochs 2..51 (see DATA.md)
    keys = (
        "batch_size",
        "learning_rate",
        "momentum",
        "weight_decay",
        "num_layers",
        "max_units",
        "max_dropout",
    )

    def query(configs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(validation error %, cumulative seconds), shape [len(configs), epochs]."""
        n = len(configs)
        cont = np.zeros((n * epochs, 8), dtype=np.float32)
        for i, c in enumerate(configs):
            rows = cont[i * epochs : (i + 1) * epochs]
            rows[:, 0] = np.arange(2, epochs + 2)
            rows[:, 1:] = [c[k] for k in keys]
        cat = np.full((n * epochs, 1), code, dtype=np.int32)
        out = session.run(None, {inputs[0]: cat, inputs[1]: cont})[0].reshape(n, epochs, 6)
        return 100.0 - out[:, :, 1], out[:, :, 0]

    # A table of 3,000 random configurations, queried once (batched): the methods then search
    # over the table, as on a tabulated benchmark, instead of querying per trial.
    space = aa.SearchSpace(
        {
            "batch_size": aa.Int(16, 512, log=True),
            "learning_rate": aa.Float(1e-4, 1e-1, log=True),
            "momentum": aa.Float(0.1, 0.99),
            "weight_decay": aa.Float(1e-5, 1e-1),
            "num_layers": aa.Int(1, 5),
            "max_units": aa.Int(64, 1024, log=True),
            "max_dropout": aa.Float(0.0, 1.0),
        }
    )
    rng = np.random.default_rng(12345)
    table = [space.from_unit(rng.random(space.ndim)) for _ in range(3000)]
    err, cum = query(table)
    secs = np.maximum(np.diff(np.concatenate([np.zeros((len(table), 1)), cum], axis=1), axis=1), 1e-3)

    def curve(p: dict[str, Any], step: int) -> tuple[float, float]:
        i = p["config"]
        return float(err[i, step - 1]), float(secs[i, step - 1])

    mean_step = float(np.mean(secs))
    search = {"config": aa.Int(0, len(table) - 1)}
    return Problem(f"lcbench-{task}", search, epochs, curve, float(err[:, -1].min()), mean_step)


# ------------------------------------------------------------------------------- methods
Trace = list[tuple[float, int, float]]  # (simulated time, step, value), every report


def milestones(max_r: int) -> list[int]:
    return list(aa.ASHA(1, max_r, 3).milestones)


def run_async(problem: Problem, method: str, workers: int, budget_s: float, seed: int) -> Trace:
    mode = "stopping" if method == "ASHA-stopping" else "promotion"
    brackets: int | str = "all" if method == "async-HB" else 1
    sched = aa.ASHA(1, problem.max_r, 3, mode=mode, brackets=brackets)  # type: ignore[arg-type]
    result = simulate(
        problem.curve, space=problem.space, scheduler=sched, workers=workers, time_budget=budget_s, seed=seed
    )
    return [(t, step, v) for t, _, step, v in result.reports if t <= budget_s]


def run_baseline(problem: Problem, method: str, workers: int, budget_s: float, seed: int) -> Trace:
    space = aa.SearchSpace(problem.space)
    rng = np.random.default_rng(seed)
    trace: Trace = []
    ms = milestones(problem.max_r)

    def sample() -> dict[str, Any]:
        return space.from_unit(rng.random(space.ndim))

    async def train(p: dict[str, Any], start: int, stop: int) -> float:
        value = math.nan
        for step in range(start + 1, stop + 1):
            value, seconds = problem.curve(p, step)
            await anyio.sleep(seconds)
            trace.append((now(), step, value))
        return value

    async def rung(jobs: list[tuple[dict[str, Any], int, int]]) -> list[float]:
        """Share the jobs among the workers; return when all are done (the barrier)."""
        results = [math.nan] * len(jobs)
        queue = list(enumerate(jobs))

        async def worker() -> None:
            while queue:
                i, (p, a, b) = queue.pop(0)
                results[i] = await train(p, a, b)

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
                        await train(sample(), 0, problem.max_r)

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
    return [(t, step, v) for t, step, v in trace if t <= budget_s]


_PROBLEMS: dict[str, Problem] = {}  # filled before the pool forks: the workers inherit them


def one_run(args: tuple[str, str, int, float, int]) -> tuple[str, str, int, int, list[float], list[float]]:
    name, method, workers, budget_s, seed = args
    problem = _PROBLEMS[name]
    fn = run_baseline if method in ("random", "sync-SH", "sync-HB") else run_async
    trace = sorted(fn(problem, method, workers, budget_s, seed))
    times, regrets = [], []
    best = math.inf
    for t, step, v in trace:
        # The incumbent is the best configuration evaluated at full fidelity: lower fidelities
        # of these functions can read better than the optimum itself.
        if step == problem.max_r and math.isfinite(v) and v < best:
            best = v
            times.append(t)
            regrets.append(max(0.0, v - problem.optimum))
    return problem.name, method, workers, seed, times, regrets


# ------------------------------------------------------------------------------- reporting
def regret_at(times: list[float], regrets: list[float], t: float) -> float:
    value = math.inf
    for ti, r in zip(times, regrets, strict=True):
        if ti > t:
            break
        value = r
    return value


def time_to(times: list[float], regrets: list[float], level: float) -> float:
    for ti, r in zip(times, regrets, strict=True):
        if r <= level:
            return ti
    return math.inf


def quartiles(values: list[float]) -> tuple[float, float, float]:
    a = np.array(values, dtype=float)
    q = np.quantile(a, [0.25, 0.5, 0.75], method="nearest") if np.all(np.isfinite(a)) else None
    if q is None:
        s = sorted(values)
        n = len(s)
        return s[n // 4], s[n // 2], s[(3 * n) // 4]
    return float(q[0]), float(q[1]), float(q[2])


def fmt_time(t: float, budget: float) -> str:
    def f(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"

    return f">{f(budget)}" if not math.isfinite(t) else f(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["branin", "hartmann3", "lcbench", "digits"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=float, default=100, help="full trainings' worth of compute")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--lcbench",
        type=Path,
        default=Path(os.environ.get("AIO_ASHB_LCBENCH", HERE.parent.parent / "shared/data/yahpo_lcbench")),
    )
    parser.add_argument("--tasks", nargs="+", default=list(LCBENCH_TASKS))
    parser.add_argument(
        "--plot", type=Path, default=None, help="write best-so-far plots (PNG) to this folder"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    problems: list[Problem] = []
    for name in args.problems:
        if name == "branin":
            problems.append(branin())
        elif name == "hartmann3":
            problems.append(hartmann3())
        elif name == "digits":
            p = digits()
            print("digits: skipped (run bench/make_digits_curves.py)" if p is None else "", end="")
            problems += [p] if p else []
        elif name == "lcbench":
            for task in args.tasks:
                p = lcbench(args.lcbench, task)
                if p is None:
                    print(f"lcbench-{task}: skipped (needs onnxruntime and {args.lcbench})")
                    break
                problems.append(p)
    methods = ", ".join(args.methods)
    print(f"# {len(problems)} problems, methods {methods}, W = {args.workers}, {args.seeds} seeds\n")

    jobs = []
    budgets: dict[tuple[str, int], float] = {}
    for p in problems:
        for w in args.workers:
            # At least three full trainings' time, or many workers would never finish one.
            full = p.max_r * p.mean_step
            budget_s = max((p.budget or args.budget) * full / w, 3 * full)
            budgets[p.name, w] = budget_s
            jobs += [(p.name, m, w, budget_s, seed) for m in args.methods for seed in range(args.seeds)]
        _PROBLEMS[p.name] = p
    ctx = multiprocessing.get_context("fork")  # the workers only compute; nothing else runs yet
    with ctx.Pool(args.jobs) as pool:
        results = pool.map(one_run, jobs, chunksize=4)
    runs: dict[tuple[str, str, int], list[tuple[list[float], list[float]]]] = {}
    for name, method, w, _seed, times, regrets in results:
        runs.setdefault((name, method, w), []).append((times, regrets))

    for p in problems:
        if not p.levels and "random" in args.methods:
            w0 = min(args.workers)
            base = statistics.median(
                regret_at(t, r, budgets[p.name, w0]) for t, r in runs[p.name, "random", w0]
            )
            p.levels = (
                [float(f"{base / d:.2g}") for d in (1.5, 2, 4)] if math.isfinite(base) and base > 0 else []
            )
        print(f"## {p.name} (optimum {p.optimum:.6g}; R = {p.max_r}; mean step {p.mean_step:.3g} s)\n")
        levels = " | ".join(f"time to regret {lv:g}" for lv in p.levels)
        print(f"| W | method | final regret, median [q25, q75] | {levels} |")
        print("| --- | --- | --- |" + " --- |" * len(p.levels))
        for w in args.workers:
            budget_s = budgets[p.name, w]
            for m in args.methods:
                rs = runs[p.name, m, w]
                final = quartiles([regret_at(t, r, budget_s) for t, r in rs])
                cells = []
                for lv in p.levels:
                    med = statistics.median(time_to(t, r, lv) for t, r in rs)
                    cells.append(fmt_time(med, budget_s))
                print(
                    f"| {w} | {m} | {final[1]:.4g} [{final[0]:.4g}, {final[2]:.4g}] | "
                    + " | ".join(cells)
                    + " |"
                )
            print(f"| {w} | (budget) | {budget_s:,.0f} simulated s |" + " |" * len(p.levels))
        print()
    if args.plot is not None:
        draw(problems, args.workers, args.methods, runs, budgets, args.plot)


def draw(
    problems: list[Problem],
    workers: list[int],
    methods: list[str],
    runs: dict[tuple[str, str, int], list[tuple[list[float], list[float]]]],
    budgets: dict[tuple[str, int], float],
    folder: Path,
) -> None:
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    for p in problems:
        fig = Figure(figsize=(4.2 * len(workers), 3.8), layout="constrained")
        axes = fig.subplots(1, len(workers), squeeze=False)[0]
        for ax, w in zip(axes, workers, strict=True):
            budget_s = budgets[p.name, w]
            grid = np.linspace(budget_s / 200, budget_s, 200)
            for m in methods:
                curves = np.array([[regret_at(t, r, g) for g in grid] for t, r in runs[p.name, m, w]])
                # Before a first full evaluation there is no incumbent: plotted as missing.
                curves[~np.isfinite(curves)] = np.nan
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns early on
                    med = np.nanmedian(curves, axis=0)
                    lo, hi = np.nanquantile(curves, 0.25, axis=0), np.nanquantile(curves, 0.75, axis=0)
                ax.plot(grid, med, label=m)
                ax.fill_between(grid, lo, hi, alpha=0.15)
            # Regret reaches 0 on the tables (their optimum is one of their rows): a log scale
            # that turns linear near 0 keeps those curves on the plot.
            ax.set_yscale("symlog", linthresh=max(min(p.levels, default=1e-3) / 10, 1e-6))
            ax.set_title(f"{p.name}, W = {w}")
            ax.set_xlabel("simulated seconds")
        axes[0].set_ylabel("regret of the best so far (median, quartiles)")
        axes[-1].legend(fontsize="small")
        out = folder / f"quality-{p.name}.png"
        fig.savefig(out, dpi=90)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
