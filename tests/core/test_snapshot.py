"""A core restored from a snapshot behaves exactly as the core it was taken of."""

from __future__ import annotations

import io
import json
import math
import pickle
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aio_ashb._core import (
    ASHA,
    Categorical,
    Checkpointed,
    Core,
    Direction,
    Enqueued,
    Float,
    Int,
    RandomSampler,
    Reported,
    SearchSpace,
    TPESampler,
    TrialEnded,
    TrialInterrupted,
    TrialState,
)
from aio_ashb._core._snapshot import SnapshotError, dump, load

SPACE = SearchSpace({"x": Float(0.0, 1.0), "n": Int(1, 8), "c": Categorical(["a", "b", 3]), "k": 5})
VALUES = [0.0, 0.25, 0.5, 0.5, 1.0, 2.0, -1.0, math.nan, math.inf, -math.inf]
STEPS = [1, 1, 1, 2, 3, 5, 9, 30, 100]

SMALL = {"eta": 3, "rungs": 3, "brackets": 1, "mode": "promotion", "maximize": False, "tpe": False, "seed": 1}
configs = st.fixed_dictionaries(
    {
        "eta": st.sampled_from([2, 3, 4]),
        "rungs": st.integers(2, 4),
        "brackets": st.integers(1, 3),
        "mode": st.sampled_from(["promotion", "stopping"]),
        "maximize": st.booleans(),
        "tpe": st.booleans(),
        "seed": st.integers(0, 2**32),
    }
)
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["job"] * 6 + ["report"] * 10 + ["fail", "interrupt", "checkpoint", "enqueue", "end"]
        ),
        st.integers(0, 10**6),
        st.sampled_from(STEPS),
        st.sampled_from(VALUES),
    ),
    min_size=10,
    max_size=400,
)


def _core(cfg: dict[str, Any]) -> Core:
    eta = cfg["eta"]
    sched = ASHA(
        1, eta ** (cfg["rungs"] - 1), eta, brackets=min(cfg["brackets"], cfg["rungs"]), mode=cfg["mode"]
    )
    sampler = TPESampler(cfg["seed"], n_candidates=8) if cfg["tpe"] else RandomSampler(cfg["seed"])
    return Core(SPACE, sched, sampler, Direction.MAXIMIZE if cfg["maximize"] else Direction.MINIMIZE)


def _step(core: Core, op: tuple[str, int, int, float]) -> Any:
    """One operation on ``core``: what it returned or raised, for comparing two cores."""
    kind, pick, inc, value = op
    try:
        if kind == "job":
            return core.next_job(can_start=pick % 3 != 0, time=1.0)
        if kind == "enqueue":
            return core.apply(Enqueued({"x": 0.5, "n": 2, "c": "b", "k": 5}))
        # Mostly legal operations (on a running or an unfinished trial), sometimes any trial.
        states = [core.state_of(i) for i in range(core.n_trials)]
        running = [i for i, s in enumerate(states) if s is TrialState.RUNNING]
        alive = [i for i, s in enumerate(states) if not s.is_finished]
        pool = (running if kind in ("report", "interrupt") else alive) if pick % 7 else []
        n = pool[pick % len(pool)] if pool else pick % max(core.n_trials, 1)
        if kind == "report":
            return core.apply(Reported(n, core.step_of(n) + inc, value, 2.0))
        if kind == "fail":
            return core.apply(TrialEnded(n, TrialState.FAILED, "boom", 3.0))
        if kind == "end":
            return core.apply(TrialEnded(n, TrialState.COMPLETE, None, 3.0))
        if kind == "interrupt":
            return core.apply(TrialInterrupted(n, 4.0))
        return core.apply(Checkpointed(n, core.step_of(n), None, 5.0))
    except Exception as exc:  # an illegal operation: both must refuse it the same way
        return (type(exc).__name__, str(exc))


def _state(core: Core) -> str:
    """Everything a core answers, as text: NaN == NaN there, and floats print exactly."""
    # Each rung's answers: its members best first, which of them are in its top 1/eta, its
    # best, and its waiting trials.
    rungs = [
        [
            (ranked := r.ranked(), [k for k in ranked if r.in_top(k)], r.best, sorted(r.waiting_keys()))
            for r in rs
        ]
        for rs in core._rungs
    ]
    h = core.history
    seen = None
    if h is not None:
        levels = {
            m: (lv.numbers.view.tolist(), lv.values.view.tolist(), lv.seqs.view.tolist())
            for m, lv in h.levels.items()
        }
        seen = (h.points.tolist(), h.results, list(h.pending.items()), levels)
    return repr(
        (
            core.trials(),
            dict(core.counts),
            rungs,
            core.best(),
            core.waiting_trials(),  # (in the same order: the end of a run stops them in it)
            core.is_done(),
            core.n_enqueued,
            [core.target_of(i) for i in range(core.n_trials)],
            [core.segment_end(i) for i in range(core.n_trials)],
            seen,
        )
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, ops=operations, cut=st.floats(0.0, 1.0))
def test_a_restored_core_makes_the_same_decisions(cfg: dict[str, Any], ops: list[Any], cut: float) -> None:
    _restore_and_compare(cfg, ops, int(cut * len(ops)))


def _restore_and_compare(cfg: dict[str, Any], ops: list[Any], at: int, min_rung: int = 0) -> None:
    """Apply ``ops[:at]``, snapshot, restore into a fresh core, then apply the rest to both."""
    original = _core(cfg)
    for op in ops[:at]:
        _step(original, op)
    assert max(len(r) for rs in original._rungs for r in rs) >= min_rung
    restored = _core(cfg)
    load(restored, dump(original))
    assert _state(restored) == _state(original)
    # Everything after the snapshot: the same answers, errors, jobs (and params sampled).
    for op in ops[at:]:
        assert repr(_step(restored, op)) == repr(_step(original, op))
    assert _state(restored) == _state(original)


def test_refuses_another_configuration_a_used_core_and_damage() -> None:
    cfg = SMALL
    core = _core(cfg)
    for _ in range(5):
        core.next_job()
    blob = dump(core)
    with pytest.raises(SnapshotError, match="another configuration"):
        load(_core({**cfg, "eta": 2}), blob)
    with pytest.raises(SnapshotError, match="another configuration"):
        load(_core({**cfg, "seed": 2}), blob)
    with pytest.raises(SnapshotError, match="fresh core"):
        load(core, blob)
    for damaged in (
        blob[: len(blob) // 2],
        b"",
        b"PK\x03\x04" + bytes(100),
        blob.replace(b'"trials":5', b'"trials":6'),
    ):
        with pytest.raises(SnapshotError):
            load(_core(cfg), damaged)


@pytest.mark.parametrize("number", [-1, 5])
def test_a_snapshot_whose_running_trials_are_not_its_trials_is_refused(number: int) -> None:
    # A learning sampler's running trials are kept by trial number; a number outside the
    # snapshot's trials (a negative one would silently index from the end) is damage.
    cfg = {**SMALL, "tpe": True}
    core = _core(cfg)
    for _ in range(5):
        core.next_job()
    with np.load(io.BytesIO(dump(core)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["history"]["pending"][0][0] = number
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    with pytest.raises(SnapshotError, match="running trials are not among its trials"):
        load(_core(cfg), out.getvalue())


@pytest.mark.parametrize("mode", ["promotion", "stopping"])
@pytest.mark.parametrize("tpe", [False, True])
def test_large_studies_restore_exactly_at_several_points(mode: str, tpe: bool) -> None:
    # Hypothesis keeps its examples small; rungs of many results with several paused trials
    # each are where a rebuilt heap could go wrong, so here are 1,500 operations.
    cfg = {"eta": 3, "rungs": 4, "brackets": 2, "mode": mode, "maximize": False, "tpe": tpe, "seed": 11}
    draw = random.Random(5)
    kinds = ["job"] * 6 + ["report"] * 12 + ["fail", "interrupt", "checkpoint", "enqueue", "end"]
    ops = [
        (draw.choice(kinds), draw.randrange(10**6), draw.choice(STEPS), draw.random()) for _ in range(1500)
    ]
    for at in (300, 800, 1200):
        _restore_and_compare(cfg, ops, at, min_rung=12)


RAN: list[str] = []


def _mark(what: str) -> None:
    RAN.append(what)


class _Planted:
    """Unpickling this calls _mark: a snapshot must never be unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark, ("ran",))


def test_a_snapshot_holding_a_pickle_runs_nothing() -> None:
    cfg = SMALL
    out = io.BytesIO()
    np.savez(out, header=np.array([_Planted()], dtype=object), state=np.array([_Planted()], dtype=object))
    with pytest.raises(SnapshotError, match="damaged snapshot"):
        load(_core(cfg), out.getvalue())
    assert RAN == []
    pickle.loads(pickle.dumps(_Planted()))  # (it would have run)
    assert RAN == ["ran"]
