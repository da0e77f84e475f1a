"""The common workload of shared/BENCHMARKS.md, shared by the benchmark scripts."""

from __future__ import annotations

import math
import platform
import sys
import time
from typing import Any

import aio_ashb as aa

SPACE: dict[str, Any] = {
    "lr": aa.Float(1e-4, 1.0, log=True),
    "x": aa.Float(0.0, 1.0),
    "c": aa.Categorical(["a", "b", "c", "d"]),
}
OFFSETS = {"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3}
MIN_R, MAX_R, ETA = 1, 81, 3


def curve_terms(params: dict[str, Any]) -> tuple[float, float]:
    """``loss(step) = f + g / sqrt(step)`` for these params."""
    f = (math.log10(params["lr"]) + 2) ** 2 / 4 + (params["x"] - 0.3) ** 2 + OFFSETS[params["c"]]
    g = 1 + params["x"] + 0.5 * abs(math.log10(params["lr"]) + 2)
    return f, g


def machine() -> str:
    import numpy

    return (
        f"Python {platform.python_version()} on {platform.machine()}, {sys.platform}; "
        f"aio_ashb {aa.__version__}, numpy {numpy.__version__}"
    )


def optuna_run(n_trials: int, storage: str | None = None) -> tuple[int, float] | None:
    """Optuna's ``optimize`` on the same workload with a SuccessiveHalvingPruner: (reports,
    seconds), or None when optuna is not installed. ``storage`` is an Optuna storage URL."""
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    reports = 0

    def objective(trial: Any) -> float:
        nonlocal reports
        params = {
            "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
            "x": trial.suggest_float("x", 0.0, 1.0),
            "c": trial.suggest_categorical("c", ["a", "b", "c", "d"]),
        }
        f, g = curve_terms(params)
        loss = math.inf
        for step in range(1, MAX_R + 1):
            loss = f + g / math.sqrt(step)
            trial.report(loss, step)
            reports += 1
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_R, reduction_factor=ETA)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    return reports, time.perf_counter() - t0
