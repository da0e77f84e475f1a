"""Tune on a Dask cluster: budget-style trials, checkpoints handed from rung to rung.

    pip install -e ".[dask]"
    python examples/dask_cluster.py                          # a local cluster on 127.0.0.1
    python examples/dask_cluster.py tcp://scheduler:8786     # your cluster
    python examples/dask_cluster.py --trials 20 --db runs.db

Without an address, the example starts a scheduler and two single-threaded workers with Dask's
own command-line tools (``dask scheduler``, ``dask worker``), exactly as you would on real
machines, and stops them at the end. The study's state lives in a SQLite file on this machine
(the coordinator); only the training runs on the workers.

The objective trains a logistic regression with numpy by gradient descent. ``budget`` is the
number of epochs to reach; the checkpoint (the weights, as bytes) says where the previous rung
segment stopped, so a promoted trial continues instead of starting over, on whichever worker
Dask picks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

import aio_ashb as aa

SPACE = {
    "lr": aa.Float(1e-3, 3.0, log=True),
    "l2": aa.Float(1e-6, 1e-1, log=True),
    "batch": aa.Categorical([16, 64, 256]),
}


def dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed synthetic binary classification problem (the same on every worker)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 20))
    w = rng.normal(size=20)
    y = (x @ w + rng.normal(scale=2.0, size=3000) > 0).astype(float)
    return x[:2000], y[:2000], x[2000:], y[2000:]


def train(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> tuple[float, bytes]:
    """Train up to ``budget`` epochs from ``checkpoint``; return (validation loss, checkpoint)."""
    x, y, xv, yv = dataset()
    if checkpoint is None:
        w, epoch = np.zeros(x.shape[1]), 0
    else:
        saved = np.load(io.BytesIO(checkpoint))
        w, epoch = saved["w"], int(saved["epoch"])
    rng = np.random.default_rng(epoch)
    batch = int(params["batch"])
    for _ in range(epoch, budget):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            p = 1 / (1 + np.exp(-(x[idx] @ w)))
            w = w - params["lr"] * (x[idx].T @ (p - y[idx]) / len(idx) + params["l2"] * w)
    p = np.clip(1 / (1 + np.exp(-(xv @ w))), 1e-9, 1 - 1e-9)
    loss = float(-np.mean(yv * np.log(p) + (1 - yv) * np.log(1 - p)))
    out = io.BytesIO()
    np.savez(out, w=w, epoch=budget)
    return loss, out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def quiet(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """A scheduler and ``workers`` worker processes on loopback, started with the dask CLI."""
    address = f"tcp://127.0.0.1:{free_port()}"
    # `python -m dask ...` is the `dask` command of this very environment.
    dask = [sys.executable, "-m", "dask", "scheduler"]
    worker = [sys.executable, "-m", "dask", "worker"]
    port = address.rsplit(":", 1)[1]
    procs = [quiet([*dask, "--host", "127.0.0.1", "--port", port, "--no-dashboard"])]
    try:
        for _ in range(workers):
            procs.append(quiet([*worker, address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"]))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


async def tune(address: str, trials: int, db: str | None, workers: int) -> None:
    from distributed import Client

    storage = f"sqlite:///{db}" if db else None
    study = await aa.create_study(
        space=SPACE,
        scheduler=aa.ASHA(min_resource=1, max_resource=27, reduction_factor=3),
        sampler=aa.TPESampler(seed=0),
        storage=storage,
        name="dask-logreg",
        load_if_exists=True,
    )
    # Connect (the scheduler may still be starting) and wait for the workers to join.
    async with study, await Client(address, asynchronous=True, timeout="30s") as client:
        await client.wait_for_workers(workers, timeout=60)  # concurrency = the threads found
        executor = aa.DaskExecutor(client)
        await study.run(train, max_trials=trials, executor=executor, retries=2)
        print(f"trials by state: { {s.value: n for s, n in study.counts.items() if n} }")
        best = study.best_trial
        assert best is not None
        print(f"best: trial {best.number}, validation loss {best.value:.4f} at {best.resource} epochs")
        print(f"      {best.params}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Tune on a Dask cluster.")
    parser.add_argument("address", nargs="?", help="scheduler address; default: start a local cluster")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster")
    parser.add_argument("--db", default=None, help="SQLite file for the study (default: in memory)")
    args = parser.parse_args()
    if args.address:
        asyncio.run(tune(args.address, args.trials, args.db, 1))
    else:
        with local_cluster(args.workers) as address:
            asyncio.run(tune(address, args.trials, args.db, args.workers))


if __name__ == "__main__":
    main()
