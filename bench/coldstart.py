"""Cold start: a new interpreter imports aio_ashb, creates a SQLite study and runs its first trial.

    python bench/coldstart.py                # 7 runs of each row, medians
    python bench/coldstart.py --runs 15 --modules 15

What a user's script or a CLI call pays before the first trial's first report is durable. Each
run is a fresh ``python`` process (the operating system's file cache is warm, as it is for a
user running a script twice). Rows, each timed from the parent (interpreter start and exit
included):

- the interpreter alone (``python -c pass``): the floor no package can lower;
- ``import aio_ashb``;
- ``import aio_ashb``, ``create_study`` on a new SQLite file, one trial with one report, close;

and, measured inside the child of the last row, where its time goes (import, the study, the
trial). Then the modules whose own import time is largest (``python -X importtime``), to show
what a lazy import could save.

The children import from compiled bytecode, as an installed package does (pip compiles it at
install time; an editable install caches it on first import): the cache goes to a temporary
``PYTHONPYCACHEPREFIX``, written by one untimed run first, even where ``PYTHONDONTWRITEBYTECODE``
is set (as on the development machines, where each import would otherwise compile every module
from source: about 0.1 s more). ``--no-bytecode`` measures that case instead.

Target (issue 14): the last row within 0.3 s, on the machine the target was set on; read it
here against the interpreter and numpy's own import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/...` works

from bench._workload import machine

_FIRST_TRIAL = """
import time
t0 = time.perf_counter()
import asyncio
import aio_ashb as aa
t1 = time.perf_counter()

async def main(path):
    study = await aa.create_study(
        space={"x": aa.Float(0.0, 1.0)}, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{path}"
    )
    t2 = time.perf_counter()

    async def objective(trial):
        async for _ in trial.steps():
            await trial.report(trial.params["x"])

    async with study:
        await study.run(objective, max_trials=1)
    return t2

import json, sys
t2 = asyncio.run(main(sys.argv[1]))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "study": t2 - t1, "trial": t3 - t2}))
"""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - t, done.stdout


def child_env(cache: Path | None) -> dict[str, str]:
    """The children's environment: bytecode cached under ``cache`` (None: never written)."""
    env = dict(os.environ)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def heaviest(count: int, env: dict[str, str]) -> list[tuple[float, str]]:
    """The modules with the largest own import time (ms), from ``-X importtime``."""
    argv = [sys.executable, "-X", "importtime", "-c", "import aio_ashb"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        rows.append((int(own) / 1000, name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per row (default 7)")
    parser.add_argument("--modules", type=int, default=10, help="heaviest modules listed (default 10)")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module from source (no .pyc cache)"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.modules < 0:
        parser.error(f"--runs must be >= 1 and --modules >= 0, got {args.runs} and {args.modules}")
    py = sys.executable
    print(f"# {machine()}\n")
    walls: dict[str, list[float]] = {"interpreter": [], "import": [], "first": []}
    parts: dict[str, list[float]] = {"import": [], "study": [], "trial": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(None if args.no_bytecode else Path(tmp) / "pycache")
        timed([py, "-c", _FIRST_TRIAL, str(Path(tmp) / "warm.db")], env)  # (writes the cache)
        for i in range(args.runs):  # interleaved: a slow moment of the machine hits every row
            walls["interpreter"].append(timed([py, "-c", "pass"], env)[0])
            walls["import"].append(timed([py, "-c", "import aio_ashb"], env)[0])
            wall, out = timed([py, "-c", _FIRST_TRIAL, str(Path(tmp) / f"cold{i}.db")], env)
            walls["first"].append(wall)
            for k, v in json.loads(out).items():
                parts[k].append(v)
        heavy = heaviest(args.modules, env) if args.modules else []
    med = {k: statistics.median(v) for k, v in walls.items()}
    source = "every module compiled from source" if args.no_bytecode else "bytecode cached"
    print(f"medians of {args.runs} fresh processes each; {source}\n")
    print("| what | wall s (median) | min s |")
    print("| --- | --- | --- |")
    print(f"| `python -c pass` | {med['interpreter']:.3f} | {min(walls['interpreter']):.3f} |")
    print(f"| `import aio_ashb` | {med['import']:.3f} | {min(walls['import']):.3f} |")
    print(f"| import + SQLite study + first trial | {med['first']:.3f} | {min(walls['first']):.3f} |")
    split = ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in parts.items())
    print(f"\nInside the last row's process (medians): {split}.")
    if args.modules:
        print("\nLargest own import times (`python -X importtime -c 'import aio_ashb'`, one run):\n")
        print("| module | ms |")
        print("| --- | --- |")
        for ms, name in heavy:
            print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
