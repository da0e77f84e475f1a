"""The ``aio-ashb`` command (also ``python -m aio_ashb``).

``demo`` runs a real tuning job and ``delete`` deletes a study (asking first); the other commands
read a study file, never write it, and are safe while a study runs in another process (they open
the database read-only and show one consistent snapshot of it). Every error is a short message on
stderr, never a traceback, and a non-zero exit code: 2 for bad usage, 1 for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib
import io
import json
import math
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple

import anyio
import anyio.to_thread

import aio_ashb as aa
from aio_ashb._core import Event
from aio_ashb._factory import read_core, study_from_snapshot
from aio_ashb._progress import status_line
from aio_ashb._report import StudyStatus, json_safe, status_of, trial_row


class CliError(Exception):
    """A one-line error for the user (exit code 1)."""


# ---------------------------------------------------------------------------------- reading
class _Snapshot(NamedTuple):
    """What a reading command shows, all from one read transaction of the file (``events``: the
    whole log, for the commands that read it; otherwise empty)."""

    study: aa.Study
    info: aa.storage.StudyInfo
    events: list[Event]


async def _only_study(storage: aa.SQLiteStorage, db: str) -> str:
    names = [s.name for s in await storage.list_studies()]
    if not names:
        raise CliError(f"{db} holds no studies")
    if len(names) > 1:
        raise CliError(f"{db} holds {len(names)} studies ({', '.join(names)}); name one of them")
    return names[0]


async def _with_study(
    db: str, name: str | None, fn: Callable[[_Snapshot], Coroutine[Any, Any, int]], *, every_event: bool
) -> int:
    """Open ``db`` read-only, read the study ``name`` (or the only one) and call ``fn``. Only
    ``every_event`` reads the whole log (curves); otherwise the study's latest snapshot and the
    events after it are read (``read_core``), which for a long log is much faster."""
    if not await anyio.Path(db).exists():
        raise CliError(f"no such file: {db}")
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        if name is None:
            name = await _only_study(storage, db)
        if every_event:
            info, events = await storage.read_study(name)
            return await fn(_Snapshot(study_from_snapshot(name, storage, info, events), info, events))
        info, core, _ = await read_core(name, storage)
        return await fn(_Snapshot(aa.Study(name, storage, core, owns_storage=False), info, []))


def _json(v: Any, indent: int | None = 2) -> str:
    return json.dumps(json_safe(v), indent=indent, default=str, allow_nan=False)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _status_text(st: StudyStatus) -> str:
    out = [f"study {st.name!r} ({st.direction.value}): {st.trials} trials"]
    out.append("  " + ", ".join(f"{s.value} {n}" for s, n in st.states.items() if n) if st.trials else "  -")
    out.append(f"  running {st.running}, paused {st.paused}")
    for r in st.rungs:
        waiting = f", {r.waiting} paused here" if r.waiting else ""
        out.append(
            f"  bracket {r.bracket} rung {r.rung} (resource {r.milestone}): {r.results} results{waiting}"
        )
    if st.best is not None:
        b = st.best
        out.append(
            f"  best: trial {b.number}, value {_fmt(b.rung_values[b.resource])} at resource {b.resource}"
        )
        out.append(f"        {json.dumps(b.params)}")
    else:
        out.append("  best: - (no trial has reached a milestone yet)")
    return "\n".join(out)


async def _studies(db: str) -> int:
    if not await anyio.Path(db).exists():
        raise CliError(f"no such file: {db}")
    rows: list[dict[str, Any]] = []
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        for info in await storage.list_studies():
            try:
                _, core, _ = await read_core(info.name, storage)
                st = status_of(info.name, core)
            except aa.StorageError as exc:  # one damaged study does not hide the others
                rows.append({"name": info.name, "trials": f"unreadable: {exc}", "running": None})
                continue
            rows.append(
                {
                    "name": info.name,
                    "trials": st.trials,
                    "running": st.running,
                    "best": st.best.rung_values[st.best.resource] if st.best else None,
                    "direction": st.direction.value,
                }
            )
    columns = ["name", "trials", "running", "best", "direction"]
    print(_table([{c: r.get(c) for c in columns} for r in rows], columns) if rows else f"{db}: no studies")
    return 0


async def _status(study: aa.Study, fmt: str) -> int:
    st = study.status()
    if fmt == "json":
        print(_json(st.to_dict()))
    elif fmt == "line":
        print(status_line(st))
    else:
        print(_status_text(st))
    return 0


def _rows(study: aa.Study, state: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    names = list(study.space)
    rows = [trial_row(t, names) for t in study.trials if state is None or t.state.value == state]
    columns = ["number", "state", "bracket", "resource", "value", "step", *[f"params.{n}" for n in names]]
    return rows, columns


async def _trials(study: aa.Study, fmt: str, state: str | None, sort: str) -> int:
    rows, columns = _rows(study, state)
    if sort == "value":
        sign = -1 if study.direction is aa.Direction.MAXIMIZE else 1

        def key(r: dict[str, Any]) -> tuple[float, float, int]:
            v = r["value"]
            bad = v is None or not math.isfinite(v)
            return (-r["resource"], math.inf if bad else sign * v, r["number"])

        rows.sort(key=key)
    if fmt == "json":
        print(_json(rows))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*columns, "last_value", "error"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        print(buf.getvalue(), end="")
    else:
        print(_table(rows, columns) if rows else "no trials")
    return 0


async def _best(study: aa.Study, fmt: str) -> int:
    best = study.best_trial
    if best is None:
        raise CliError(f"study {study.name!r} has no trial at a milestone yet")
    row = trial_row(best, list(study.space))
    if fmt == "json":
        print(_json({**row, "params": best.params, "rung_values": best.rung_values}))
    else:
        value = _fmt(row["value"])
        print(f"trial {best.number} ({best.state.value}): value {value} at resource {best.resource}")
        for k, v in best.params.items():
            print(f"  {k} = {_fmt(v)}")
    return 0


async def _plot(snap: _Snapshot, output: str) -> int:
    from aio_ashb import plots

    data = await plots.collect(snap.study, events=snap.events)
    path = plots.draw(data, output)
    print(f"wrote {path}")
    return 0


async def _export(snap: _Snapshot, output: str | None) -> int:
    """Everything recorded, as one JSON document: configuration, trials, every report."""
    from aio_ashb._report import curves_from_events

    curves = curves_from_events(snap.events)
    trials = []
    for t in snap.study.trials:
        c = curves.get(t.number)
        trials.append(
            {
                "number": t.number,
                "state": t.state.value,
                "bracket": t.bracket,
                "params": t.params,
                "resource": t.resource,
                "rung_values": {str(k): v for k, v in t.rung_values.items()},
                "reports": []
                if c is None
                else [list(r) for r in zip(c.steps, c.values, c.times, strict=True)],
                "error": t.error,
            }
        )
    doc = {
        "name": snap.study.name,
        "created": snap.info.created,
        "config": snap.info.config,
        "trials": trials,
    }
    text = _json(doc, indent=1)
    if output is None or output == "-":
        print(text)
    else:
        await anyio.Path(output).write_text(text + "\n")
        print(f"wrote {output}: {len(trials)} trials")
    return 0


async def _delete(db: str, name: str, yes: bool) -> int:
    """Delete a study (the only command that writes): refused while a runner holds it."""
    if not await anyio.Path(db).exists():
        raise CliError(f"no such file: {db}")
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        info, events = await storage.read_study(name)
        st = study_from_snapshot(name, storage, info, events).status()
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"deleting study {name!r} cannot be undone: pass --yes to confirm")
        prompt = f"Delete study {name!r} of {db} ({st.trials} trials, {len(events)} events)? [y/N] "
        answer = await anyio.to_thread.run_sync(input, prompt)
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    await aa.delete_study(name=name, storage=f"sqlite:///{db}")
    print(f"deleted study {name!r} ({st.trials} trials) from {db}")
    return 0


# ---------------------------------------------------------------------------------- demo
async def _demo(trials: int, concurrency: int, seed: int, max_epochs: int, db: str, progress: bool) -> int:
    from aio_ashb import demo

    demo.load_digits_split()  # fails here, in one line, if scikit-learn is missing
    sampler: aa.Sampler | None = aa.TPESampler(seed)
    if await anyio.Path(db).exists():
        async with aa.SQLiteStorage(db, readonly=True) as storage:
            if any(info.name == "digits-mlp" for info in await storage.list_studies()):
                # Resumed with the sampler it was made with: a demo file from before TPESampler
                # became the default goes on with its RandomSampler.
                sampler = None
    study = await aa.create_study(
        space=demo.SPACE,
        scheduler=demo.scheduler(max_epochs),
        sampler=sampler,
        name="digits-mlp",
        storage=f"sqlite:///{db}",
        load_if_exists=True,  # re-running the demo resumes it
    )
    async with study:
        done = len(study.trials)
        print(
            f"aio_ashb demo: an MLP on scikit-learn's digits, {trials} trials, concurrency {concurrency}, "
            f"ASHA rungs {'-'.join(map(str, study.scheduler.milestones))} epochs, state in {db}"
            + (f" (resuming: {done} trials already there)" if done else ""),
            flush=True,
        )
        await study.run(demo.objective, max_trials=trials, concurrency=concurrency, progress=progress)
        print(status_line(study.status(), trials))  # final states: paused trials are STOPPED now
        print("\nLeaderboard (best at the highest rung; value = validation error):")
        rows, _ = _rows(study, None)
        rows = sorted((r for r in rows if r["value"] is not None), key=lambda r: (-r["resource"], r["value"]))
        names = list(study.space)
        print(_table(rows[:8], ["number", "resource", "value", *[f"params.{n}" for n in names]]))
        print(f"\nInspect it: aio-ashb status {db}; aio-ashb trials {db}; aio-ashb plot {db} -o demo.png")
    return 0


# ---------------------------------------------------------------------------------- parsing
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aio-ashb", description="Asynchronous Successive Halving for asyncio."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="tune an MLP on scikit-learn's digits (about two minutes)")
    demo.add_argument("--trials", type=_positive_int, default=1000, help="trials in the study (default 1000)")
    demo.add_argument("--concurrency", type=_positive_int, default=4, help="trials at once (default 4)")
    demo.add_argument("--max-epochs", type=_positive_int, default=81, help="the top rung (default 81)")
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        help="TPE sampler seed of a new demo study (default 0; a resumed one keeps its own)",
    )
    demo.add_argument("--db", default="aio_ashb_demo.db", help="SQLite file (default ./aio_ashb_demo.db)")
    demo.add_argument("--no-progress", action="store_true", help="no live progress display")

    def reader(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("db", metavar="DB", help="a study file (SQLite)")
        if name != "studies":
            p.add_argument(
                "study", metavar="STUDY", nargs="?", help="the study's name (default: the only one)"
            )
        return p

    reader("studies", "list the studies in a file")
    p = reader("status", "trials by state, rung occupancy, best so far")
    p.add_argument("--format", choices=["text", "json", "line"], default="text")
    p = reader("trials", "every trial, as a table, CSV or JSON")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--state", choices=[s.value for s in aa.TrialState], help="only trials in this state")
    p.add_argument("--sort", choices=["number", "value"], default="number", help="value: best first")
    p = reader("best", "the best trial (at the highest rung reached)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p = reader("plot", "learning curves, best so far and rung occupancy, as a PNG")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    p = reader("export", "everything recorded (configuration, trials, every report) as JSON")
    p.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    p = sub.add_parser("delete", help="delete a study and everything recorded of it (asks first)")
    p.add_argument("db", metavar="DB", help="a study file (SQLite)")
    p.add_argument("study", metavar="STUDY", help="the study's name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def server(name: str, help: str, db_help: str, port: int) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("db", metavar="DB", help=db_help)
        p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; another host needs a token")
        p.add_argument("--port", type=_positive_int, default=port, help=f"default {port}")
        p.add_argument(
            "--token-env", metavar="VAR", help="read the bearer token from this environment variable"
        )
        p.add_argument("--root-path", default="", help="the path prefix a reverse proxy strips (e.g. /hpo)")
        return p

    p = server(
        "serve",
        "serve a study file over HTTP: runs, status, jobs for remote workers",
        "a study file (SQLite; created if missing)",
        8000,
    )
    p.add_argument(
        "--objective",
        action="append",
        default=[],
        metavar="NAME=MODULE:FUNCTION",
        help="an objective runs may name (repeatable); without any, studies are driven by the job API",
    )
    p.add_argument("--job-lease", type=float, default=60.0, help="seconds a worker holds a job (default 60)")
    server(
        "dashboard",
        "a live, read-only dashboard of a study file, in the browser",
        "a study file (SQLite); opened read-only",
        8080,
    )
    return parser


def _objective(spec: str) -> tuple[str, Any]:
    """``NAME=MODULE:FUNCTION`` -> (NAME, the function)."""
    name, eq, target = spec.partition("=")
    module, colon, attr = target.partition(":")
    if not (name and eq and module and colon and attr):
        raise CliError(f"--objective must look like NAME=MODULE:FUNCTION, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"--objective {spec!r}: cannot import {target!r} ({exc})") from None
    return name, fn


def _token(args: argparse.Namespace) -> str | None:
    token = None
    if args.token_env is not None:
        token = os.environ.get(args.token_env)
        if not token:
            raise CliError(f"--token-env {args.token_env}: that environment variable is not set")
    return token


def _serve(args: argparse.Namespace) -> int:
    """Serve the file with the study service (blocking, until Ctrl-C)."""
    from aio_ashb.web import StudyService, serve

    token = _token(args)
    objectives = dict(_objective(spec) for spec in args.objective)
    service = StudyService(
        f"sqlite:///{args.db}", objectives=objectives, token=token, job_lease=args.job_lease
    )
    serve(service, host=args.host, port=args.port, root_path=args.root_path, proxy_headers=True)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """Serve the read-only dashboard of the file (blocking, until Ctrl-C)."""
    from aio_ashb.web import Dashboard, check_host, serve_dashboard

    if not os.path.isfile(args.db):
        raise CliError(f"no such file: {args.db}")
    dashboard = Dashboard(args.db, token=_token(args))
    check_host(args.host, dashboard)  # before printing where it listens
    print(f"aio_ashb dashboard of {args.db}: http://{args.host}:{args.port}{args.root_path}/", flush=True)
    serve_dashboard(dashboard, host=args.host, port=args.port, root_path=args.root_path, log_level="warning")
    return 0


async def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "demo":
        return await _demo(
            args.trials, args.concurrency, args.seed, args.max_epochs, args.db, progress=not args.no_progress
        )
    if cmd == "studies":
        return await _studies(args.db)
    if cmd == "delete":
        return await _delete(args.db, args.study, args.yes)
    actions: dict[str, Callable[[_Snapshot], Coroutine[Any, Any, int]]] = {
        "status": lambda s: _status(s.study, args.format),
        "trials": lambda s: _trials(s.study, args.format, args.state, args.sort),
        "best": lambda s: _best(s.study, args.format),
        "plot": lambda s: _plot(s, args.output),
        "export": lambda s: _export(s, args.output),
    }
    return await _with_study(args.db, args.study, actions[cmd], every_event=cmd in ("plot", "export"))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # bad usage: argparse prints one line and exits with 2
    try:
        if args.command == "serve":  # uvicorn runs its own event loop
            return _serve(args)
        if args.command == "dashboard":
            return _dashboard(args)
        return asyncio.run(_dispatch(args))
    except BrokenPipeError:  # `aio-ashb trials DB | head`: the reader left; nothing to say
        sys.stderr.close()
        return 1
    except (CliError, aa.AioAshbError, OSError) as exc:
        text = str(exc).strip() or type(exc).__name__
        print(f"aio-ashb: error: {text}", file=sys.stderr)  # our messages: no traceback
        return 1
    except KeyboardInterrupt:
        print("aio-ashb: interrupted (the study is saved; run the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
