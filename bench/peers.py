"""aio_ashb next to Ray Tune, Optuna and Syne Tune on the common workload, in one run.

    pip install -e ".[bench]"          # Optuna and Dask; Ray Tune and Syne Tune by hand:
    pip install "ray[tune]" syne-tune  # ~1.5 GB; a peer that is missing is reported as such
    python bench/peers.py
    python bench/peers.py --trials 2000 --aio-trials 20000 --e2e-trials 300   # quicker

The workload of shared/BENCHMARKS.md: ASHA with eta 3 and rungs 1-3-9-27-81, random search over
lr (log 1e-4..1), x (0..1) and c (4 categories), the cheap deterministic loss reported at every
step, 8 trials active.

1. The cost of one scheduler decision, block by block of 1,000 trials: each peer's scheduler is
   driven directly (Ray's AsyncHyperBandScheduler.on_trial_result, Optuna's
   SuccessiveHalvingPruner through report/should_prune on an in-memory study, Syne Tune's ASHA
   on_trial_result; aio_ashb's Core.apply), 8 trials active, round robin, every trial
   reporting each step until it is stopped. Peers run in stopping mode (the only one they
   have); aio_ashb in both modes. Time between decisions (starting trials) counts in the block.
2. End to end with a no-op objective: study.run against Optuna's optimize (in memory and on
   SQLite) and Ray Tune's Tuner (reuse_actors). Results per second; startup excluded where it
   is a separate step (Ray's init is shown on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/peers.py` works

from bench._workload import ETA, MAX_R, MIN_R, curve_terms, machine, optuna_run
from bench.core import MODES, core_blocks, e2e_aio
from bench.storage import aio_run

Blocks = list[tuple[int, float]]  # per block of 1,000 trials: (decisions, seconds)


def _params(rng: random.Random) -> dict[str, Any]:
    return {"lr": 10 ** rng.uniform(-4, 0), "x": rng.uniform(0, 1), "c": rng.choice("abcd")}


def drive(
    n_trials: int,
    start: Callable[[int], tuple[Any, dict[str, Any]]],
    decide: Callable[[Any, int, float], bool],
    block: int = 1000,
) -> tuple[Blocks, int, float]:
    """The common driver: 8 trials active, round robin, one report per turn. ``start(i)`` makes
    trial i and returns (handle, params); ``decide(handle, step, value)`` says whether it goes
    on."""
    blocks = [[0, 0.0] for _ in range((n_trials + block - 1) // block)]
    running: list[list[Any]] = []  # [index, handle, step, f, g]
    perf = time.perf_counter
    started = 0
    decisions = 0
    t_start = perf()
    i = 0
    while True:
        t0 = perf()
        while len(running) < 8 and started < n_trials:
            handle, params = start(started)
            f, g = curve_terms(params)
            running.append([started, handle, 0, f, g])
            started += 1
        if not running:
            break
        i = (i + 1) % len(running)
        entry = running[i]
        index, handle, step, f, g = entry
        step += 1
        if decide(handle, step, f + g / math.sqrt(step)) and step < MAX_R:
            entry[2] = step
        else:
            running.pop(i)
        b = blocks[index // block]
        b[0] += 1
        b[1] += perf() - t0
        decisions += 1
    return [(int(d), float(s)) for d, s in blocks], decisions, perf() - t_start


def ray_blocks(n_trials: int) -> tuple[Blocks, int, float] | None:
    try:
        from ray.tune.schedulers import AsyncHyperBandScheduler
    except ImportError:
        return None
    sched = AsyncHyperBandScheduler(
        time_attr="training_iteration",
        metric="loss",
        mode="min",
        max_t=MAX_R,
        grace_period=MIN_R,
        reduction_factor=ETA,
        brackets=1,
    )
    rng = random.Random(0)

    class _Trial:  # what the scheduler reads of a trial: its id
        __slots__ = ("trial_id",)

        def __init__(self, trial_id: str) -> None:
            self.trial_id = trial_id

    def start(i: int) -> tuple[Any, dict[str, Any]]:
        t = _Trial(f"t{i}")
        sched.on_trial_add(None, t)
        return t, _params(rng)

    def decide(t: Any, step: int, value: float) -> bool:
        result = {"training_iteration": step, "loss": value}
        if step == MAX_R:
            sched.on_trial_complete(None, t, result)
            return False
        return bool(sched.on_trial_result(None, t, result) == "CONTINUE")

    return drive(n_trials, start, decide)


def optuna_blocks(n_trials: int) -> tuple[Blocks, int, float] | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_R, reduction_factor=ETA)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
        "x": optuna.distributions.FloatDistribution(0.0, 1.0),
        "c": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"]),
    }

    def start(i: int) -> tuple[Any, dict[str, Any]]:
        trial = study.ask(dists)
        return trial, trial.params

    def decide(trial: Any, step: int, value: float) -> bool:
        trial.report(value, step)
        if step == MAX_R:
            study.tell(trial, value)
            return False
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return False
        return True

    return drive(n_trials, start, decide)


def syne_blocks(n_trials: int) -> tuple[Blocks, int, float] | None:
    try:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import choice, loguniform, uniform
        from syne_tune.optimizer.baselines import ASHA
    except ImportError:
        return None
    space = {"lr": loguniform(1e-4, 1.0), "x": uniform(0.0, 1.0), "c": choice(["a", "b", "c", "d"])}
    sched = ASHA(
        space,
        metric="loss",
        time_attr="epoch",
        max_t=MAX_R,
        grace_period=MIN_R,
        reduction_factor=ETA,
        random_seed=0,
    )
    now = datetime.datetime.now()

    def start(i: int) -> tuple[Any, dict[str, Any]]:
        suggestion = sched.suggest()
        assert suggestion is not None and suggestion.config is not None
        trial = Trial(trial_id=i, config=suggestion.config, creation_time=now)
        sched.on_trial_add(trial)
        return trial, dict(suggestion.config)

    def decide(trial: Any, step: int, value: float) -> bool:
        result = {"epoch": step, "loss": value}
        if step == MAX_R:
            sched.on_trial_complete(trial, result)
            return False
        return bool(sched.on_trial_result(trial, result) == "CONTINUE")

    return drive(n_trials, start, decide)


def ray_e2e(n_trials: int) -> tuple[int, float, float] | None:
    """Ray Tune's Tuner with reuse_actors, 8 at once: (results, seconds, ray.init seconds)."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import AsyncHyperBandScheduler
    except ImportError:
        return None

    def trainable(config: dict[str, Any]) -> None:
        f, g = curve_terms(config)
        for step in range(1, MAX_R + 1):
            tune.report({"loss": f + g / math.sqrt(step)})

    t0 = time.perf_counter()
    ray.init(num_cpus=8, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    init = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(
                trainable,
                param_space={
                    "lr": tune.loguniform(1e-4, 1.0),
                    "x": tune.uniform(0.0, 1.0),
                    "c": tune.choice(["a", "b", "c", "d"]),
                },
                tune_config=tune.TuneConfig(
                    metric="loss",
                    mode="min",
                    num_samples=n_trials,
                    max_concurrent_trials=8,
                    reuse_actors=True,
                    scheduler=AsyncHyperBandScheduler(max_t=MAX_R, grace_period=MIN_R, reduction_factor=ETA),
                ),
                run_config=tune.RunConfig(storage_path=tmp, verbose=0),
            )
            t0 = time.perf_counter()
            results = tuner.fit()
            elapsed = time.perf_counter() - t0
        reports = sum(int(r.metrics.get("training_iteration", 0)) for r in results)
        return reports, elapsed, init
    finally:
        ray.shutdown()


def block_row(
    name: str, res: tuple[Blocks, int, float], marks: list[int]
) -> tuple[str, dict[int, float], float]:
    blocks, decisions, seconds = res
    rates = {k: blocks[k][0] / blocks[k][1] for k in marks if k < len(blocks) and blocks[k][1] > 0}
    return name, rates, decisions / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--trials", type=int, default=10_000, help="trials per peer in part 1 (default 10000)"
    )
    parser.add_argument("--aio-trials", type=int, default=100_000, help="aio_ashb's trials in part 1")
    parser.add_argument("--e2e-trials", type=int, default=1000, help="trials end to end (default 1000)")
    parser.add_argument("--ray-e2e-trials", type=int, default=100, help="Ray Tune's trials end to end")
    parser.add_argument("--sqlite-trials", type=int, default=200, help="trials on SQLite (Optuna is slow)")
    args = parser.parse_args()
    print(f"# {machine()}\n")
    versions = []
    for pkg in ("ray", "optuna", "syne-tune"):
        try:
            from importlib.metadata import version

            versions.append(f"{pkg} {version(pkg)}")
        except Exception:
            versions.append(f"{pkg}: not installed")
    print("peers: " + ", ".join(versions) + "\n")

    n = args.trials
    last = n // 1000 - 1
    marks = sorted({0, min(4, last), last})
    print(f"## 1. Decisions per second by block of 1,000 trials ({n:,} trials per peer, 8 active)\n")
    header = " | ".join(f"trials {k}k-{k + 1}k" for k in marks)
    print(f"| scheduler | {header} | whole run | aio_ashb (stopping) at {last}k-{last + 1}k / this |")
    print("|" + " --- |" * (len(marks) + 3))
    rows = []
    for mode in MODES:
        blocks, decisions, seconds = core_blocks(n, mode)
        rows.append(block_row(f"aio_ashb Core.apply ({mode})", (blocks, decisions, seconds), marks))
    ours = next(rates for name, rates, _ in rows if "stopping" in name)[last]
    for name, fn in (
        ("Ray Tune AsyncHyperBandScheduler", ray_blocks),
        ("Optuna SuccessiveHalvingPruner (in memory)", optuna_blocks),
        ("Syne Tune ASHA (stopping)", syne_blocks),
    ):
        res = fn(n)
        if res is None:
            print(f"| {name} | not installed |" + " |" * (len(marks) + 1))
            continue
        rows.append(block_row(name, res, marks))
    for name, rates, whole in rows:
        cells = " | ".join(f"{rates[k]:,.0f} ({1e6 / rates[k]:,.0f} µs)" for k in marks if k in rates)
        ratio = "-" if name.startswith("aio_ashb") else f"{ours / rates[last]:,.0f}x"
        print(f"| {name} | {cells} | {whole:,.0f}/s | {ratio} |")
    if args.aio_trials > n:
        blocks, decisions, seconds = core_blocks(args.aio_trials, "stopping")
        k = len(blocks) - 1
        print(
            f"\naio_ashb alone up to {args.aio_trials:,} trials (stopping): block {k}k-{k + 1}k "
            f"{blocks[k][0] / blocks[k][1]:,.0f}/s, first block {blocks[0][0] / blocks[0][1]:,.0f}/s, "
            f"whole run {decisions / seconds:,.0f}/s"
        )

    print("\n## 2. End to end, no-op objective, 8 at once (results per second)\n")
    print("| run | trials | results | results/s | aio_ashb / this |")
    print("| --- | --- | --- | --- | --- |")
    aio_mem = asyncio.run(e2e_aio(args.e2e_trials, "stopping"))
    n_aio_db = args.sqlite_trials * 5
    rate_db = asyncio.run(aio_run(lambda tmp: f"sqlite:///{tmp}/p.db", "durable", n_aio_db, 8))
    rate_mem = aio_mem[0] / aio_mem[1]
    n_e2e = args.e2e_trials
    print(f"| aio_ashb study.run, stopping, in memory | {n_e2e:,} | {aio_mem[0]:,} | {rate_mem:,.0f} | - |")
    print(f"| aio_ashb study.run, stopping, SQLite (durable) | {n_aio_db:,} | - | {rate_db:,.0f} | - |")
    om = optuna_run(args.e2e_trials)
    if om is None:
        print("| Optuna | not installed | | | |")
    else:
        r = om[0] / om[1]
        print(f"| Optuna optimize, in memory | {n_e2e:,} | {om[0]:,} | {r:,.0f} | {rate_mem / r:,.1f}x |")
        with tempfile.TemporaryDirectory() as tmp:
            od = optuna_run(args.sqlite_trials, f"sqlite:///{tmp}/o.db")
        assert od is not None
        r = od[0] / od[1]
        n_db = args.sqlite_trials
        print(f"| Optuna optimize, SQLite | {n_db:,} | {od[0]:,} | {r:,.0f} | {rate_db / r:,.0f}x |")
    ray = ray_e2e(args.ray_e2e_trials)
    if ray is None:
        print("| Ray Tune | not installed | | | |")
    else:
        r = ray[0] / ray[1]
        print(
            f"| Ray Tune Tuner, reuse_actors (ray.init {ray[2]:.1f} s not counted) | {args.ray_e2e_trials:,} "
            f"| {ray[0]:,} | {r:,.0f} | {rate_mem / r:,.0f}x |"
        )
    print("| Syne Tune | not run end to end here: its LocalBackend starts a process per trial | | | |")


if __name__ == "__main__":
    main()
