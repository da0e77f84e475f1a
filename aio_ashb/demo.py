"""The tuning job of ``aio-ashb demo``: scikit-learn's bundled digits, an ``MLPClassifier``
trained one epoch at a time with ``partial_fit``, five hyperparameters, ASHA with promotion.

Read it as an example (``examples/sklearn_digits.py`` runs it with your options). The objective
is a plain function, so it runs in worker threads: scikit-learn's numpy work releases the GIL
for part of each epoch, and the event loop stays free for the scheduler and the SQLite writes.
Needs scikit-learn (``pip install "aio_ashb[examples]"``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

import aio_ashb as aa

__all__ = ["SPACE", "build_model", "load_digits_split", "objective", "scheduler"]

SPACE: dict[str, Any] = {
    "hidden": aa.Int(16, 256, log=True),  # units in the hidden layer
    "learning_rate_init": aa.Float(1e-4, 0.3, log=True),
    "alpha": aa.Float(1e-6, 1e-1, log=True),  # L2 penalty
    "batch_size": aa.Categorical([16, 32, 64, 128]),
    "activation": aa.Categorical(["relu", "tanh", "logistic"]),
}


def scheduler(max_epochs: int = 81) -> aa.ASHA:
    """Rungs at 1, 3, 9, 27 and 81 epochs (for the default): a third of each rung goes on."""
    return aa.ASHA(min_resource=1, max_resource=max_epochs, reduction_factor=3)


@cache
def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1,797 8x8 digit images (shipped with scikit-learn, nothing is downloaded), scaled to
    [0, 1], split 75/25 into training and validation sets. Loaded once per process."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise aa.MissingDependencyError(
            'the demo needs scikit-learn: pip install "aio_ashb[examples]"'
        ) from exc
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    return x_train, x_val, y_train, y_val


def build_model(params: dict[str, Any], seed: int) -> Any:
    """An untrained ``MLPClassifier`` with these hyperparameters (one hidden layer)."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(params["hidden"],),
        activation=params["activation"],
        alpha=params["alpha"],
        batch_size=params["batch_size"],
        learning_rate_init=params["learning_rate_init"],
        random_state=seed,
    )


def objective(trial: aa.ThreadTrial) -> None:
    """Train epoch by epoch; report the validation error after each epoch.

    When the trial pauses at a rung, ``trial.steps()`` waits (this thread sleeps); when it is
    promoted the loop simply continues with the same model. The checkpoint is only taken if the
    trial is released or interrupted: then a later call continues from the pickled model.
    """
    x_train, x_val, y_train, y_val = load_digits_split()
    model = trial.checkpoint if trial.checkpoint is not None else build_model(trial.params, trial.number)
    classes = np.arange(10)
    for _epoch in trial.steps():
        model.partial_fit(x_train, y_train, classes=classes)
        error = 1.0 - model.score(x_val, y_val)
        trial.report(error, checkpoint=lambda: model)
