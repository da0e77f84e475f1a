"""A core's state as bytes and back: what readers of a long log start from instead of event 1.

Replaying a log costs 10-20 us an event; a study of 100,000 trials has about a million. The
writer of a study stores, now and then, the state of its core (:func:`dump`) beside the log, with
the sequence number of the last event it reflects; a reader restores it (:func:`load`) and then
applies only the events after that number. The log stays the truth: a snapshot that cannot be
read, or that the events after it do not fit, is ignored and the log replayed whole.

The format is numpy's ``.npz`` (uncompressed), read with ``allow_pickle=False``: plain arrays
of numbers and one JSON header, never a pickle, so a reader runs no code found in the file.
Per-trial state is stored as columns (a column per parameter when every trial has the same
parameters, as a search space gives them). Only what cannot be derived is stored: rungs are
rebuilt from the values each trial recorded (a rung's answers depend only on the set of its
keys), the per-state counts and the interrupted list from the states, and a learning sampler's
model cache is left empty (it never changes a proposal; see ``_history``).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import zipfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from aio_ashb._core._events import TrialState, pack_rng_state, unpack_rng_state
from aio_ashb._core._history import History, Level
from aio_ashb._core._rung import Rung
from aio_ashb._exceptions import StateError

if TYPE_CHECKING:
    from aio_ashb._core._machine import Core

FORMAT = 1


class SnapshotError(StateError):
    """A snapshot that cannot be used (damaged, another format, or not this study's)."""


_ORDER = list(TrialState)
_CODES = {s: i for i, s in enumerate(_ORDER)}
# Keyed by the members' ids: Enum.__hash__ is Python code, an int's hash is not (dumping
# 100,000 states by id takes a tenth of the time).
_CODE_OF_ID = {id(s): i for s, i in _CODES.items()}


def _column(values: list[Any]) -> np.ndarray | None:
    """A parameter's values as one array, when they are all floats or all ints."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return np.fromiter(values, np.float64, len(values))
    if kinds == {int} and all(-(2**62) < v < 2**62 for v in values):
        return np.fromiter(values, np.int64, len(values))
    return None


def _dict_builder(names: list[str]) -> Callable[..., dict[str, Any]]:
    """``f(v0, v1, ...) -> {names[0]: v0, ...}`` as one dict display: three times faster than
    ``dict(zip(...))`` over 100,000 trials (the technique of ``_space._params_builder``; names
    enter the source only as ``repr`` literals)."""
    args = ", ".join(f"v{i}" for i in range(len(names)))
    entries = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names))
    env: dict[str, Any] = {}
    exec(f"def build({args}):\n    return {{{entries}}}\n", env)
    builder: Callable[..., dict[str, Any]] = env["build"]
    return builder


def fingerprint(core: Core) -> str:
    """Names a core's configuration (space, scheduler, sampler, direction), so that a snapshot
    is never applied to another one."""
    parts = [core.space.to_dict(), core.scheduler.to_dict(), core.sampler.to_dict(), core.direction.value]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def dump(core: Core) -> bytes:
    """The state of ``core`` as bytes."""
    # Built with C-level iteration (map, chain, array from a list): a Python generator per
    # column made this several times slower, and a writer runs it on its event loop.
    n = core.n_trials
    values = list(core._value)
    no_value = [i for i, v in enumerate(values) if v is None]
    for i in no_value:
        values[i] = math.nan
    rung_values = core._rung_values
    arrays: dict[str, np.ndarray] = {
        "bracket": np.array(core._bracket, np.int64),
        "state": np.fromiter(map(_CODE_OF_ID.__getitem__, map(id, core._state)), np.int8, n),
        "step": np.array(core._step, np.int64),
        "value": np.array(values, np.float64),
        "no_value": np.isin(np.arange(n), no_value),
        "granted": np.array(core._granted, np.int64),
        "rungs": np.fromiter(map(len, rung_values), np.int64, n),
        "rung_values": np.array(list(itertools.chain.from_iterable(rung_values)), np.float64),
    }
    header: dict[str, Any] = {
        "format": FORMAT,
        "config": fingerprint(core),
        "trials": n,
        "error": list(core._error.items()),
        "checkpoint_step": list(core._checkpoint_step.items()),
        "queue": list(core._queue),
        "rng": pack_rng_state(core.rng.bit_generator.state),
    }
    params = core._params
    names = list(params[0]) if params else []
    if not params or set(map(tuple, params)) == {tuple(names)}:
        header["params"] = {"names": names, "json": {}}
        for i, name in enumerate(names):
            column = [p[name] for p in params]
            array = _column(column)
            if array is None:
                header["params"]["json"][name] = column
            else:
                arrays[f"param{i}"] = array
    else:  # params of different shapes (a custom sampler's): one JSON object per trial
        header["params"] = {"rows": params}
    h = core.history
    if h is not None:
        arrays["points"] = h.points
        header["history"] = {
            "results": h.results,
            "pending": list(h.pending.items()),
            "levels": list(h.levels),
        }
        for i, level in enumerate(h.levels.values()):
            arrays[f"level{i}"] = np.stack([level.numbers.view, level.values.view, level.seqs.view])
    # NaN and infinities in the header (in a parameter's value) use JSON's common extension:
    # Python reads them back, and only Python reads this.
    arrays["header"] = np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), np.uint8)
    out = io.BytesIO()
    np.savez(out, **cast(dict[str, Any], arrays))  # (cast: numpy's stub reads a key as allow_pickle)
    return out.getvalue()


def load(core: Core, blob: bytes) -> None:
    """Put the state stored in ``blob`` into ``core``, a core fresh from the study's
    configuration (no event applied). Raises :class:`SnapshotError`, leaving ``core`` unusable,
    for anything that does not fit."""
    if core.n_trials or core.n_enqueued:
        raise SnapshotError("a snapshot is loaded into a fresh core only")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        header = json.loads(arrays.pop("header").tobytes())
        if header.get("format") != FORMAT:
            raise SnapshotError(f"snapshot format {header.get('format')!r} is not {FORMAT}")
        if header.get("config") != fingerprint(core):
            raise SnapshotError("the snapshot is of another configuration")
        _load(core, header, arrays)
    except SnapshotError:
        raise
    except (
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        OverflowError,
        OSError,
        zipfile.BadZipFile,
        EOFError,
    ) as exc:
        raise SnapshotError(f"damaged snapshot ({type(exc).__name__}: {exc})") from None


def _load(core: Core, header: dict[str, Any], a: dict[str, np.ndarray]) -> None:
    n = int(header["trials"])
    if any(len(a[c]) != n for c in ("bracket", "state", "step", "value", "no_value", "granted", "rungs")):
        raise SnapshotError("the snapshot's columns differ in length")
    geometry = core._milestones
    brackets: list[int] = a["bracket"].tolist()
    if n and not 0 <= a["state"].min() <= a["state"].max() < len(_ORDER):
        raise SnapshotError("the snapshot names a trial state that does not exist")
    states = list(map(_ORDER.__getitem__, a["state"].tolist()))
    if (a["rungs"] < 0).any() or a["rungs"].sum() != len(a["rung_values"]):
        raise SnapshotError("the snapshot's rung values do not add up")
    # Each trial's values as a tuple, built a whole group of trials with as many values at a time.
    rung_values: list[tuple[float, ...]] = [()] * n
    counts_a = a["rungs"]
    ends = np.cumsum(counts_a)
    for c in np.unique(counts_a).tolist():
        if c:
            which = np.flatnonzero(counts_a == c)
            block = a["rung_values"][(ends[which] - c)[:, None] + np.arange(c)]
            # zip over the columns makes each tuple directly (tolist() would first make a list
            # per trial: 100,000 more objects for the garbage collector to walk).
            for number, vs in zip(which.tolist(), zip(*block.T.tolist(), strict=True), strict=True):
                rung_values[number] = vs
    granted: list[int] = a["granted"].tolist()
    p = header["params"]
    if "rows" in p:
        params = [dict(row) for row in p["rows"]]
    else:
        names = p["names"]
        columns = [
            p["json"][name] if name in p["json"] else a[f"param{i}"].tolist() for i, name in enumerate(names)
        ]
        if any(len(c) != n for c in columns):
            raise SnapshotError("the snapshot's parameter columns differ in length")
        if not all(type(name) is str for name in names):
            raise SnapshotError("the snapshot's parameter names are not strings")
        params = list(map(_dict_builder(names), *columns)) if names else [{} for _ in range(n)]
    values: list[float | None] = a["value"].tolist()
    for j in np.flatnonzero(a["no_value"]).tolist():
        values[j] = None
    core._bracket = brackets
    core._params = params
    core._state = states
    core._step = a["step"].tolist()
    core._value = values
    core._granted = granted
    core._rung_values = rung_values
    core._error = {int(k): str(v) for k, v in header["error"]}
    core._checkpoint_step = {int(k): int(v) for k, v in header["checkpoint_step"]}
    core._queue.extend(core.space.validate(q) for q in header["queue"])
    core.rng.bit_generator.state = unpack_rng_state(tuple(header["rng"]))

    # Rungs, next milestones and waiting keys, by numpy over the columns (a Python loop over
    # 100,000 trials would be most of a restore's time).
    sign = core._sign
    bracket_a, count_a = a["bracket"], a["rungs"]
    if n and (bracket_a.min() < 0 or bracket_a.max() >= len(geometry)):
        raise SnapshotError("the snapshot names a bracket that does not exist")
    offsets = np.concatenate(([0], np.cumsum(count_a)[:-1])) if n else count_a
    signed = sign * a["rung_values"]
    signed[~np.isfinite(signed)] = math.inf
    next_at = np.zeros(n, np.int64)
    numbers = np.arange(n)
    for b, ms in enumerate(geometry):
        in_b = bracket_a == b
        reached = count_a[in_b]
        if len(reached) and reached.max() > len(ms):
            raise SnapshotError("a trial recorded more values than its bracket has rungs")
        next_at[in_b] = np.asarray(ms)[np.minimum(reached, len(ms) - 1)]
        for k, rung in enumerate(core._rungs[b]):
            at = in_b & (count_a > k)
            rung_keys = signed[offsets[at] + k]
            order = np.lexsort((numbers[at], rung_keys))
            _fill(rung, list(zip(rung_keys[order].tolist(), numbers[at][order].tolist(), strict=True)))
    waiting: list[tuple[float, int] | None] = [None] * n
    for number in np.flatnonzero(a["state"] == _CODES[TrialState.PAUSED]).tolist():
        vs, g = rung_values[number], granted[number]
        if not vs or g != len(vs) - 1:
            raise SnapshotError(f"paused trial {number} waits in no rung")
        v = vs[-1]
        key = (sign * v, number) if math.isfinite(v) else (math.inf, number)
        waiting[number] = key
        core._rungs[brackets[number]][g].waiting.append(key)
    core._next_at = next_at.tolist()
    core._waiting = waiting
    for rungs in core._rungs:
        for rung in rungs:
            rung.waiting.sort()  # a sorted list is a heap
    for code, count in enumerate(np.bincount(a["state"], minlength=len(_ORDER)).tolist()):
        core._counts[_ORDER[code]._value_] = count
    core._interrupted = np.flatnonzero(a["state"] == _CODES[TrialState.INTERRUPTED]).tolist()
    if core.history is not None:
        _load_history(core.history, header["history"], a, core, n)


def _fill(rung: Rung, keys: list[tuple[float, int]]) -> None:
    """A rung holding ``keys`` (sorted), as if they had been added one by one (see ``_rung``)."""
    n = len(keys)
    t = n // rung.eta
    rung.n = n
    rung.top = [(-k[0], -k[1], k) for k in reversed(keys[:t])]  # worst first: a valid max-heap
    rung.rest = keys[t:]  # sorted: a valid min-heap
    if t:
        rung.cut = keys[t - 1]
    if n:
        rung.best = keys[0]
    rung.settled = False


def _load_history(h: History, s: dict[str, Any], a: dict[str, np.ndarray], core: Core, n: int) -> None:
    points = a["points"]
    if points.shape != (n, max(core.space.ndim, 1)):
        raise SnapshotError("the snapshot's sampler history has the wrong number of points")
    h._points.extend(points)
    h.results = int(s["results"])
    pending = [(int(k), int(v)) for k, v in s["pending"]]
    if any(not 0 <= k < n for k, _ in pending):
        raise SnapshotError("the snapshot's running trials are not among its trials")
    h.restore_pending(pending)
    for i, m in enumerate(s["levels"]):
        level = h.levels[int(m)] = Level()
        columns = a[f"level{i}"]
        if columns.ndim != 2 or len(columns) != 3:
            raise SnapshotError("the snapshot's sampler history is damaged")
        level.numbers.extend(columns[0])
        level.values.extend(columns[1])
        level.seqs.extend(columns[2])
