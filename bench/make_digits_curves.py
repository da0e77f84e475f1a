"""Generate the digits-MLP learning curves that bench/quality.py replays (run once; the output
is committed).

    python bench/make_digits_curves.py            # 240 configurations x 27 epochs, a few minutes

Real training: the demo's objective (scikit-learn's digits, ``MLPClassifier.partial_fit`` one
epoch at a time, the demo's search space), for random configurations of the demo's space. For
each configuration and epoch it records the validation error and the seconds that epoch took,
in ``bench/data/digits_mlp_curves.csv`` (one row per configuration: its parameters, then
``err_1..err_27`` and ``sec_1..sec_27``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import aio_ashb as aa
from aio_ashb import demo

OUT = Path(__file__).resolve().parent / "data" / "digits_mlp_curves.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=27)
    args = parser.parse_args()
    x_train, x_val, y_train, y_val = demo.load_digits_split()
    space = aa.SearchSpace(demo.SPACE)
    rng = np.random.default_rng(0)
    names = list(space)
    with OUT.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            names
            + [f"err_{e}" for e in range(1, args.epochs + 1)]
            + [f"sec_{e}" for e in range(1, args.epochs + 1)]
        )
        for i in range(args.configs):
            p = space.from_unit(rng.random(space.ndim))
            model = demo.build_model(p, seed=i)
            errs, secs = [], []
            for _ in range(args.epochs):
                t0 = time.process_time()
                model.partial_fit(x_train, y_train, classes=np.arange(10))
                secs.append(time.process_time() - t0)
                errs.append(1.0 - model.score(x_val, y_val))
            writer.writerow([p[n] for n in names] + [f"{e:.5f}" for e in errs] + [f"{s:.5f}" for s in secs])
            print(f"{i + 1}/{args.configs}: final error {errs[-1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
