"""The real core and the reference Algorithm 2 make identical decisions on random event streams."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aio_ashb._core import (
    ASHA,
    Categorical,
    Core,
    Decision,
    Direction,
    Float,
    RandomSampler,
    Reported,
    SearchSpace,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
)
from tests.core.reference import ReferenceASHA

SPACE = SearchSpace({"x": Float(0.0, 1.0), "c": Categorical(["a", "b"])})
VALUES = [0.0, 0.25, 0.5, 0.5, 1.0, 2.0, -1.0, math.nan, math.inf, -math.inf]
STEPS = [1, 1, 1, 2, 3, 5, 9, 30, 100]

configs = st.fixed_dictionaries(
    {
        "eta": st.sampled_from([2, 2, 3, 4]),
        "min_resource": st.integers(1, 2),
        "rungs": st.integers(2, 4),
        "extra": st.integers(0, 1),
        "brackets": st.integers(1, 3),
        "mode": st.sampled_from(["promotion", "stopping"]),
        "maximize": st.booleans(),
        "seed": st.integers(0, 2**32),
    }
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["job"] * 6 + ["report"] * 8 + ["fail", "interrupt"]),
        st.integers(0, 10**6),
        st.sampled_from(STEPS),
        st.sampled_from(VALUES),
    ),
    min_size=20,
    max_size=400,
)


def _build(cfg: dict[str, Any]) -> tuple[Core, ReferenceASHA]:
    eta, r = cfg["eta"], cfg["min_resource"]
    big_r = r * eta ** (cfg["rungs"] - 1) + cfg["extra"]  # sometimes not a power of eta
    sched = ASHA(r, big_r, eta, brackets=min(cfg["brackets"], cfg["rungs"]), mode=cfg["mode"])
    direction = Direction.MAXIMIZE if cfg["maximize"] else Direction.MINIMIZE
    core = Core(SPACE, sched, RandomSampler(cfg["seed"]), direction)
    ref = ReferenceASHA(
        SPACE,
        list(sched.milestones),
        eta,
        sched.n_brackets,
        cfg["mode"],
        cfg["maximize"],
        cfg["seed"],
    )
    return core, ref


def _job_tuple(job: Any) -> tuple[Any, ...] | None:
    if job is None:
        return None
    if isinstance(job, TrialCreated):
        return ("create", job.number, job.bracket, job.params)
    if isinstance(job, TrialPromoted):
        return ("promote", job.number, job.rung)
    assert isinstance(job, TrialResumed)
    return ("resume", job.number)


def _apply_both(
    core: Core, ref: ReferenceASHA, op: tuple[str, int, int, float], max_trials: int | None = None
) -> tuple[Any, ...] | None:
    """Apply one random operation to both, check they agree; the job handed out, if any."""
    kind, pick, inc, value = op
    running = [t.number for t in ref.trials if t.state == "running"]
    alive = [t.number for t in ref.trials if t.state in ("running", "paused")]
    if kind == "job":
        can_start = pick % 3 != 0 and (max_trials is None or core.n_trials < max_trials)
        job = _job_tuple(core.next_job(can_start=can_start))
        assert job == ref.get_job(can_start)
        return job
    if kind == "report" and running:
        n = running[pick % len(running)]
        step = ref.trials[n].step + inc
        decision = core.apply(Reported(n, step, value))
        assert decision is not None
        assert decision.value == ref.report(n, step, value)
    elif kind == "fail" and alive:
        n = alive[pick % len(alive)]
        core.apply(TrialEnded(n, TrialState.FAILED, "boom"))
        ref.fail(n)
    elif kind == "interrupt" and running:
        n = running[pick % len(running)]
        core.apply(TrialInterrupted(n))
        ref.interrupt(n)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, ops=operations)
def test_core_matches_reference(cfg: dict[str, Any], ops: list[tuple[str, int, int, float]]) -> None:
    core, ref = _build(cfg)
    for op in ops:
        _apply_both(core, ref, op)
    # Same trial states and the same rung contents, in the same order.
    assert [core.state_of(t.number).value for t in ref.trials] == [t.state for t in ref.trials]
    for b, ms in enumerate(ref.brackets):
        for k in range(len(ms)):
            assert core.rung_members(b, k) == ref.ranked(b, k)


def _promotion_config(eta: int, seed: int) -> dict[str, Any]:
    """One bracket of rungs 1, eta and eta ** 2, minimizing, in promotion mode."""
    return {
        "eta": eta,
        "min_resource": 1,
        "rungs": 3,
        "extra": 0,
        "brackets": 1,
        "mode": "promotion",
        "maximize": False,
        "seed": seed,
    }


def test_reference_agrees_on_a_known_promotion() -> None:
    # A hand-checked case so the reference itself is anchored: eta=3, rungs 1, 3, 9.
    core, ref = _build(_promotion_config(eta=3, seed=1))
    for impl in (core, ref):
        for _ in range(3):
            job = impl.next_job() if isinstance(impl, Core) else impl.get_job(True)
            assert job is not None
    for n, v in enumerate([0.3, 0.1, 0.2]):
        assert core.apply(Reported(n, 1, v)) is Decision.PAUSE
        assert ref.report(n, 1, v) == "pause"
    # floor(3 / 3) = 1 candidate: trial 1 (0.1) is promoted to rung 1.
    assert _job_tuple(core.next_job(can_start=False)) == ("promote", 1, 1)
    assert ref.get_job(False) == ("promote", 1, 1)


def _waiting_rung(core: Core, n: int) -> tuple[int, int]:
    """(bracket, rung index) where the paused trial ``n`` waits."""
    bracket = core.frozen(n).bracket
    milestone, _ = core.waiting_position(n)
    return bracket, [m for m, _ in core.rung_sizes()[bracket]].index(milestone)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, ops=operations, limit=st.integers(1, 40), prefix=st.integers(0, 400))
@example(  # a trial pushed out of rung 0's best after its promotion, waiting in rung 1
    cfg=_promotion_config(eta=2, seed=0),
    ops=[("job", 1, 1, 0.0)] * 4
    + [("report", 0, 1, 0.1), ("report", 0, 1, 0.2), ("job", 0, 1, 0.0), ("report", 0, 1, 0.0)]
    + [("report", 1, 1, 0.05), ("report", 1, 1, 0.06)]
    + [("job", 0, 1, 0.0), ("report", 0, 1, 0.5)] * 4,
    limit=4,
    prefix=0,
)
def test_a_limit_on_results_changes_no_decision_and_flags_exactly_the_hopeless_trials(
    cfg: dict[str, Any], ops: list[tuple[str, int, int, float]], limit: int, prefix: int
) -> None:
    """Core.limit_results (a run with max_trials, set after ``prefix`` operations of earlier
    runs): the same decisions as the reference; a trial flagged unpromotable waits with at least
    floor(N / eta) better results in its rung, is flagged once and never promoted after; and
    every trial that paused since the limit was set and has that many better results is flagged."""
    cfg = {**cfg, "mode": "promotion"}
    core, ref = _build(cfg)
    for op in ops[:prefix]:
        _apply_both(core, ref, op)
    bound = max(limit, core.n_trials)  # as Runner.run sets it
    core.limit_results(bound)
    room = bound // cfg["eta"]
    # Trials waiting when the limit was set, and where: not flagged until they move or are pushed.
    before = {t.number: _waiting_rung(core, t.number) for t in ref.trials if t.state == "paused"}
    flagged: set[int] = set()
    for op in ops[prefix:]:
        job = _apply_both(core, ref, op, max_trials=bound)
        assert job is None or job[0] != "promote" or job[1] not in flagged
        for n in core.unpromotable:
            assert n not in flagged, f"trial {n} flagged twice"
            assert ref.trials[n].state == "paused"
            assert ref.ranked(*_waiting_rung(core, n)).index(n) >= room
            flagged.add(n)
        core.unpromotable.clear()
        for t in ref.trials:
            if t.state == "paused" and t.number not in flagged:
                where = _waiting_rung(core, t.number)
                if before.get(t.number) != where:
                    assert ref.ranked(*where).index(t.number) < room, f"trial {t.number} not flagged"
    core.limit_results(None)
    assert not core.unpromotable
