"""The ASHA state machine, rule by rule, with plain synchronous calls (no event loop)."""

from __future__ import annotations

import gc
import math
import weakref
from typing import Any

import numpy as np
import pytest

from aio_ashb import (
    ASHA,
    ConfigError,
    Float,
    RandomSampler,
    ReportError,
    SearchSpace,
    StateError,
    TPESampler,
)
from aio_ashb._core import (
    Checkpointed,
    Core,
    Decision,
    Direction,
    Enqueued,
    FrozenTrial,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
)
from aio_ashb._core._events import unpack_rng_state

SPACE = SearchSpace({"x": Float(0.0, 1.0)})
PAUSE, CONTINUE, STOP, COMPLETE = Decision.PAUSE, Decision.CONTINUE, Decision.STOP, Decision.COMPLETE


def make(*, mode: str = "promotion", direction: Direction = Direction.MINIMIZE, **kw: Any) -> Core:
    sched = ASHA(**{"min_resource": 1, "max_resource": 9, "reduction_factor": 3, **kw}, mode=mode)  # type: ignore[arg-type]
    return Core(SPACE, sched, RandomSampler(0), direction)


def start(core: Core, k: int) -> list[int]:
    out = []
    for _ in range(k):
        job = core.next_job()
        assert isinstance(job, TrialCreated)
        out.append(job.number)
    return out


# ---------------------------------------------------------------- geometry and configuration
def test_milestones_and_brackets() -> None:
    assert ASHA(1, 81, 3).milestones == (1, 3, 9, 27, 81)
    assert ASHA(1, 100, 3).milestones == (1, 3, 9, 27, 81, 100)
    assert ASHA(2, 16, 2).milestones == (2, 4, 8, 16)
    h = ASHA(1, 81, 3, brackets="all")
    assert h.brackets == 5
    assert h.bracket_milestones(0) == (1, 3, 9, 27, 81)
    assert h.bracket_milestones(3) == (27, 81)
    # Synchronous Hyperband starts 81, 34, 15, 8, 5 configurations in its five brackets.
    assert np.allclose(h.bracket_probabilities(), np.array([81, 34, 15, 8, 5]) / 143)
    assert np.allclose(ASHA(1, 81, 3, brackets=2).bracket_probabilities(), [81 / 115, 34 / 115])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_resource": 0}, "min_resource must be >= 1, got 0"),
        ({"min_resource": 1.5}, "min_resource must be an integer, got 1.5"),
        ({"max_resource": 1}, "greater than min_resource"),
        ({"reduction_factor": 1}, "reduction_factor must be >= 2, got 1"),
        ({"reduction_factor": 2.5}, "reduction_factor must be an integer"),
        ({"brackets": 0}, "brackets must be >= 1, got 0"),
        ({"brackets": 6}, "brackets=6 is too many"),
        ({"brackets": "some"}, "brackets must be an integer"),
        ({"mode": "halving"}, "mode must be 'promotion' or 'stopping', got 'halving'"),
        ({"max_resource": True}, "max_resource must be an integer"),
        ({"max_resource": 3**700}, r"max_resource must be at most 2\*\*53 .* \(a number of 334 digits\)"),
        ({"reduction_factor": 10**30}, r"reduction_factor must be at most 2\*\*53"),
    ],
)
def test_bad_scheduler_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ASHA(**{"min_resource": 1, "max_resource": 81, **kwargs})


# ---------------------------------------------------------------- promotion
def test_a_rung_promotes_nothing_until_it_holds_eta_results() -> None:
    core = make()
    a, b, c = start(core, 3)
    assert core.apply(Reported(a, 1, 0.5)) is PAUSE
    assert core.apply(Reported(b, 1, 0.1)) is PAUSE
    assert core.next_job(can_start=False) is None
    assert core.apply(Reported(c, 1, 0.9)) is PAUSE
    assert core.next_job(can_start=False) == TrialPromoted(b, 1)
    assert core.state_of(b) is TrialState.RUNNING
    assert core.target_of(b) == 3
    assert core.next_job(can_start=False) is None  # floor(3/3) = 1, already promoted


def test_promotes_best_unpromoted_among_top_fraction_as_the_rung_grows() -> None:
    core = make()
    nums = start(core, 6)
    values = [0.6, 0.1, 0.5, 0.4, 0.3, 0.2]
    for n, v in zip(nums[:3], values[:3], strict=True):
        core.apply(Reported(n, 1, v))
    assert core.next_job(can_start=False) == TrialPromoted(1, 1)
    for n, v in zip(nums[3:], values[3:], strict=True):
        core.apply(Reported(n, 1, v))
    # Top floor(6/3) = 2 are trials 1 (promoted) and 5 (0.2): 5 goes next, then nothing.
    assert core.next_job(can_start=False) == TrialPromoted(5, 1)
    assert core.next_job(can_start=False) is None


def test_promotions_scan_rungs_from_the_top_down() -> None:
    core = make(max_resource=27)  # rungs 1, 3, 9, 27
    nums = start(core, 10)
    for n in nums[:9]:
        core.apply(Reported(n, 1, n / 10))
    promoted = []
    for _ in range(3):
        job = core.next_job(can_start=False)
        assert isinstance(job, TrialPromoted)
        promoted.append(job.number)
        assert core.apply(Reported(job.number, 3, job.number / 10)) is PAUSE
    assert promoted == [0, 1, 2]
    core.apply(Reported(nums[9], 1, -1.0))  # a new best in rung 0, promotable there
    # Rung 1 (3 results, trial 0 on top) and rung 0 are both promotable: rung 1 goes first.
    assert core.next_job(can_start=False) == TrialPromoted(0, 2)
    assert core.next_job(can_start=False) == TrialPromoted(9, 1)
    assert core.next_job(can_start=False) is None


def test_ties_break_by_trial_number() -> None:
    core = make()
    nums = start(core, 3)
    for n in reversed(nums):
        core.apply(Reported(n, 1, 0.5))
    assert core.next_job(can_start=False) == TrialPromoted(0, 1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("direction", [Direction.MINIMIZE, Direction.MAXIMIZE])
def test_nan_and_inf_rank_worst(bad: float, direction: Direction) -> None:
    core = make(direction=direction)
    nums = start(core, 3)
    core.apply(Reported(nums[0], 1, bad))
    core.apply(Reported(nums[1], 1, 100.0))
    core.apply(Reported(nums[2], 1, -100.0))
    assert core.rung_members(0, 0)[-1] == nums[0]


def test_maximize_promotes_the_largest() -> None:
    core = make(direction=Direction.MAXIMIZE)
    nums = start(core, 3)
    for n, v in zip(nums, [0.1, 0.9, 0.5], strict=True):
        core.apply(Reported(n, 1, v))
    assert core.next_job(can_start=False) == TrialPromoted(1, 1)


def test_reports_between_milestones_continue() -> None:
    core = make(min_resource=2, max_resource=18)
    (n,) = start(core, 1)
    assert core.apply(Reported(n, 1, 0.5)) is CONTINUE
    assert core.apply(Reported(n, 2, 0.5)) is PAUSE


def test_a_report_past_several_milestones_is_recorded_at_each() -> None:
    core = make(max_resource=27)
    (n,) = start(core, 1)
    assert core.apply(Reported(n, 10, 0.5)) is PAUSE  # crosses 1, 3, 9
    assert core.rung_sizes() == [[(1, 1), (3, 1), (9, 1), (27, 0)]]
    assert core.waiting_position(n)[0] == 9
    assert core.frozen(n).rung_values == {1: 0.5, 3: 0.5, 9: 0.5}


def test_reaching_max_resource_completes() -> None:
    core = make()
    nums = start(core, 9)
    for n in nums:
        core.apply(Reported(n, 1, n / 10))
    for _ in range(3):
        job = core.next_job(can_start=False)
        assert isinstance(job, TrialPromoted)
        core.apply(Reported(job.number, 3, job.number / 10))
    job = core.next_job(can_start=False)
    assert job == TrialPromoted(0, 2)
    assert core.apply(Reported(0, 9, 0.0)) is COMPLETE
    assert core.state_of(0) is TrialState.COMPLETE
    # Jumping straight past max_resource completes too, never "stopped".
    (m,) = start(core, 1)
    assert core.apply(Reported(m, 100, 9.0)) is COMPLETE
    best = core.best()
    assert best is not None and best.number == 0 and best.resource == 9


# ---------------------------------------------------------------- stopping
def test_stopping_rank_rule() -> None:
    core = make(mode="stopping")
    a, b, c, d = start(core, 4)
    assert core.apply(Reported(a, 1, 0.5)) is CONTINUE  # rank 0 < max(1, 0)
    assert core.apply(Reported(b, 1, 0.7)) is STOP  # rank 1 >= max(1, 0)
    assert core.apply(Reported(c, 1, 0.1)) is CONTINUE  # best so far
    assert core.apply(Reported(d, 1, 0.6)) is STOP  # rank 3 of 4 >= max(1, 1)
    assert core.state_of(b) is TrialState.STOPPED
    assert core.apply(Reported(a, 2, 0.4)) is CONTINUE  # no milestone
    assert core.apply(Reported(a, 3, 0.4)) is CONTINUE
    assert core.apply(Reported(a, 9, 0.4)) is COMPLETE


def test_stopping_checks_every_milestone_crossed() -> None:
    core = make(mode="stopping", max_resource=27)
    a, b = start(core, 2)
    core.apply(Reported(a, 3, 0.1))  # rungs 1 and 3
    # b is best at milestone 1 but worst at milestone 3 with the same value: 0.2 > 0.1 at both.
    assert core.apply(Reported(b, 3, 0.2)) is STOP
    assert core.rung_sizes()[0][:2] == [(1, 2), (3, 2)]


def test_stopping_mode_never_pauses_or_promotes() -> None:
    core = make(mode="stopping")
    nums = start(core, 6)
    for n in nums:
        assert core.apply(Reported(n, 1, float(-n))) in (CONTINUE, STOP)
    assert core.counts[TrialState.PAUSED] == 0
    job = core.next_job(can_start=False)
    assert job is None


# ---------------------------------------------------------------- brackets
def test_bracket_draws_follow_hyperband_sizes_and_the_seed() -> None:
    def draws(seed: int) -> list[int]:
        core = Core(SPACE, ASHA(1, 81, 3, brackets="all"), RandomSampler(seed))
        out = []
        for _ in range(5000):
            job = core.next_job()
            assert isinstance(job, TrialCreated)
            out.append(job.bracket)
        return out

    a = draws(11)
    assert a == draws(11)
    assert a != draws(12)
    freq = np.bincount(a, minlength=5) / len(a)
    assert np.allclose(freq, np.array([81, 34, 15, 8, 5]) / 143, atol=0.025)


def test_each_bracket_has_its_own_rungs() -> None:
    core = Core(SPACE, ASHA(1, 9, 3, brackets=2), RandomSampler(3))
    by_bracket: dict[int, list[int]] = {0: [], 1: []}
    while min(len(v) for v in by_bracket.values()) < 3:
        job = core.next_job()
        assert isinstance(job, TrialCreated)
        by_bracket[job.bracket].append(job.number)
    n1 = by_bracket[1][0]
    assert core.apply(Reported(n1, 1, 0.1)) is CONTINUE  # bracket 1 starts at milestone 3
    assert core.apply(Reported(n1, 3, 0.1)) is PAUSE
    assert core.rung_sizes()[1] == [(3, 1), (9, 0)]
    assert core.rung_sizes()[0][0] == (1, 0)


def test_a_single_bracket_draws_nothing_for_brackets() -> None:
    core = make()
    before = core.rng.bit_generator.state
    job = core.next_job()
    assert isinstance(job, TrialCreated)
    fresh = np.random.default_rng(0)
    fresh.bit_generator.state = before
    assert job.params == SPACE.sample(fresh)  # only the sampler drew


def test_creation_events_carry_the_generator_state_packed_and_old_logs_replay_the_same() -> None:
    """The state is a flat tuple (memory, and nothing for the collector to scan); a log written
    with numpy's own dict (before 2026-12) replays to the same core, draws included."""
    core = make()
    events = []
    for _ in range(5):
        job = core.next_job()
        assert isinstance(job, TrialCreated) and type(job.rng_state) is tuple
        assert job.rng_state[0] == "PCG64" and all(type(x) is int for x in job.rng_state[1:])
        events.append(job)
    old_style = []
    for e in events:
        assert e.rng_state is not None
        old_style.append(TrialCreated(e.number, e.bracket, e.params, unpack_rng_state(e.rng_state), e.time))
    assert type(old_style[0].rng_state) is dict
    after_five = core.rng.bit_generator.state
    sixth = core.next_job()
    assert isinstance(sixth, TrialCreated)
    for log in (events, old_style):
        replayed = make()
        replayed.replay(log)
        assert replayed.rng.bit_generator.state == after_five
        following = replayed.next_job()
        assert isinstance(following, TrialCreated)
        assert following.params == sixth.params and following.rng_state == sixth.rng_state


# ---------------------------------------------------------------- queue, interruption, failure
def test_enqueued_params_come_first_and_are_validated() -> None:
    core = make()
    core.apply(Enqueued({"x": 0.25}))
    core.apply(Enqueued({"x": 0.75}))
    jobs = [core.next_job() for _ in range(3)]
    assert [j.params for j in jobs if isinstance(j, TrialCreated)][:2] == [{"x": 0.25}, {"x": 0.75}]
    with pytest.raises(ConfigError, match=r"'x'=2\.0 is outside"):
        core.apply(Enqueued({"x": 2.0}))
    assert core.n_enqueued == 0


def test_interrupted_trials_resume_first_lowest_number_first() -> None:
    core = make()
    a, b = start(core, 2)
    core.apply(TrialInterrupted(b))
    core.apply(TrialInterrupted(a))
    assert core.next_job() == TrialResumed(a)
    assert core.next_job() == TrialResumed(b)
    assert core.state_of(a) is TrialState.RUNNING
    assert core.apply(Reported(a, 1, 0.3)) is PAUSE


def test_failed_paused_trials_are_never_promoted() -> None:
    core = make()
    a, b, c = start(core, 3)
    for n, v in zip((a, b, c), (0.1, 0.2, 0.3), strict=True):
        core.apply(Reported(n, 1, v))
    core.apply(TrialEnded(a, TrialState.FAILED, "Traceback ..."))
    assert core.next_job(can_start=False) is None  # a was the only candidate
    assert core.frozen(a).error == "Traceback ..."
    assert core.is_done()


def test_objective_returning_early_completes() -> None:
    core = make()
    (a,) = start(core, 1)
    core.apply(TrialEnded(a, TrialState.COMPLETE))
    assert core.counts[TrialState.COMPLETE] == 1


# ---------------------------------------------------------------- illegal events change nothing
def _snapshot(core: Core) -> Any:
    return (core.trials(), core.rung_sizes(), dict(core.counts), core.rng.bit_generator.state)


@pytest.mark.parametrize(
    ("event", "error", "match"),
    [
        (Reported(0, 1, 0.5), StateError, "trial 0 is paused"),
        (Reported(1, 1, None), ReportError, "got None"),  # type: ignore[arg-type]
        (Reported(1, 1, "0.5"), ReportError, "got '0.5'"),  # type: ignore[arg-type]
        (Reported(1, 1, True), ReportError, "got True"),
        (Reported(1, 0, 0.5), ReportError, "step must be an integer >= 1, got 0"),
        (Reported(1, 1.5, 0.5), ReportError, "got 1.5"),  # type: ignore[arg-type]
        (Reported(9, 1, 0.5), StateError, "no trial 9"),
        (TrialPromoted(1, 1), StateError, "not waiting"),
        (TrialPromoted(0, 2), StateError, "not waiting in rung 1"),
        (TrialResumed(1), StateError, "not interrupted"),
        (TrialInterrupted(0), StateError, "only a running trial"),
        (TrialEnded(0, TrialState.COMPLETE), StateError, "only a running trial completes"),
        (TrialEnded(1, TrialState.RUNNING), StateError, "not an end state"),
        (TrialCreated(5, 0, {"x": 0.5}, {}), StateError, "out of order"),
        (TrialCreated(2, 3, {"x": 0.5}, {}), StateError, "bracket 3"),
        ("not an event", StateError, "not an event"),
    ],
)
def test_illegal_events_raise_and_leave_the_state_unchanged(event: Any, error: type, match: str) -> None:
    core = make()
    a, _b = start(core, 2)
    core.apply(Reported(a, 1, 0.5))  # trial 0 paused, trial 1 running at step 0
    before = _snapshot(core)
    with pytest.raises(error, match=match):
        core.apply(event)
    assert _snapshot(core) == before


def test_steps_must_increase() -> None:
    core = make(min_resource=3, max_resource=27)
    (b,) = start(core, 1)
    core.apply(Reported(b, 2, 0.5))
    with pytest.raises(ReportError, match="step 2 after step 2"):
        core.apply(Reported(b, 2, 0.4))


def test_promoting_a_trial_outside_the_top_fraction_is_illegal() -> None:
    core = make()
    nums = start(core, 3)
    for n, v in zip(nums, (0.1, 0.2, 0.3), strict=True):
        core.apply(Reported(n, 1, v))
    with pytest.raises(StateError, match="not in the top 1/eta"):
        core.apply(TrialPromoted(2, 1))


# ---------------------------------------------------------------- replay
def test_replaying_the_events_rebuilds_the_core_exactly() -> None:
    rng = np.random.default_rng(5)
    sched = ASHA(1, 27, 3, brackets=2)
    core = Core(SPACE, sched, RandomSampler(42))
    log: list[Any] = [Enqueued({"x": 0.5})]
    core.apply(log[0])
    running: list[int] = []
    for _ in range(600):
        if len(running) < 4:
            job = core.next_job(can_start=core.n_trials < 60)
            if job is not None:
                log.append(job)
                running.append(job.number)
                continue
        if not running:
            break
        n = running[int(rng.integers(len(running)))]
        if rng.random() < 0.03:
            ev: Any = TrialEnded(n, TrialState.FAILED, "x")
            core.apply(ev)
            log.append(ev)
            running.remove(n)
            continue
        ev = Reported(n, core.step_of(n) + 1, float(rng.choice([0.1, 0.2, 0.3, math.nan])))
        d = core.apply(ev)
        log.append(ev)
        if d is PAUSE:
            ck = Checkpointed(n, ev.step, None)
            core.apply(ck)
            log.append(ck)
        if d is not CONTINUE:
            running.remove(n)
    replayed = Core(SPACE, sched, RandomSampler(42))
    replayed.replay(log)
    assert _snapshot(replayed) == _snapshot(core)
    assert replayed.best() == core.best()
    for _ in range(20):  # and it decides the same from here on
        assert replayed.next_job() == core.next_job()


def test_bracket_draw_bisects_as_searchsorted_does_at_the_edges() -> None:
    import bisect

    cum = np.cumsum(ASHA(1, 81, 3, brackets="all").bracket_probabilities())
    points = [
        0.0,
        *cum.tolist(),
        *np.nextafter(cum, 0).tolist(),
        *np.random.default_rng(1).random(1000).tolist(),
    ]
    for u in points:
        assert bisect.bisect_right(cum.tolist(), u) == int(np.searchsorted(cum, u, side="right"))


# ---------------------------------------------------------------- the fast paths of callers with no log
def _paused_study(core: Core) -> list[Any]:
    """Two brackets' worth of trials, a third of them failed, the rest reporting until paused:
    the state at the end of a promotion-mode run. Returns the events applied."""
    log: list[Any] = []
    for n in start(core, 30):
        log.append(core.apply(TrialEnded(n, TrialState.FAILED, "x")) if n % 3 == 0 else None)
        step = 0
        while n % 3 and core.state_of(n) is TrialState.RUNNING:
            step += 1
            core.apply(Reported(n, step, (n * 0.37) % 1.0))
    return log


def test_report_decides_as_applying_the_reported_event_does() -> None:
    rng = np.random.default_rng(3)
    by_event, by_call = make(max_resource=27, brackets=2), make(max_resource=27, brackets=2)
    running: list[int] = []
    for _ in range(2000):
        while len(running) < 5:
            job = by_event.next_job(can_start=by_event.n_trials < 200)
            if job is None:
                break
            assert job == by_call.next_job(can_start=by_call.n_trials < 200)
            running.append(job.number)
        if not running:
            break
        n = running[int(rng.integers(len(running)))]
        step, value = by_event.step_of(n) + int(rng.integers(1, 4)), float(rng.choice([0.1, 0.4, math.nan]))
        decision = by_event.apply(Reported(n, step, value))
        assert by_call.report(n, step, value) is decision
        if decision is not CONTINUE:
            running.remove(n)
    assert _snapshot(by_call) == _snapshot(by_event)
    checked = make(min_resource=3, max_resource=27)  # and it checks as apply does
    (n,) = start(checked, 1)
    assert checked.report(n, 2, 0.5) is CONTINUE
    with pytest.raises(ReportError, match=f"trial {n} reported step 1 after step 2"):
        checked.report(n, 1, 0.5)
    with pytest.raises(ReportError, match="got None"):
        checked.report(n, 3, None)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="no trial 999"):
        checked.report(999, 1, 0.5)


def test_stopping_the_paused_trials_at_once_is_applying_trial_ended_to_each() -> None:
    one_by_one, at_once = make(max_resource=27, brackets=2), make(max_resource=27, brackets=2)
    _paused_study(one_by_one), _paused_study(at_once)
    waiting = one_by_one.waiting_trials()
    assert len(waiting) > 10 and waiting == at_once.waiting_trials()
    expected = [TrialEnded(n, TrialState.STOPPED, None, 7.0) for n in waiting]
    for event in expected:
        one_by_one.apply(event)
    assert at_once.stop_paused(waiting, 7.0) == expected
    assert _snapshot(at_once) == _snapshot(one_by_one)
    assert at_once.waiting_trials() == [] and at_once.counts[TrialState.PAUSED] == 0
    for _ in range(5):  # and it decides the same from here on: nothing left to promote
        assert at_once.next_job() == one_by_one.next_job()


@pytest.mark.parametrize("bad", [0, 999, -1, True, "1"])
def test_stopping_a_trial_that_is_not_paused_is_refused_naming_it(bad: Any) -> None:
    core = make()
    _paused_study(core)  # trial 0 failed; 1, 2, ... paused
    with pytest.raises(StateError, match=f"trial {bad!r}|trial {bad} is failed, not paused"):
        core.stop_paused([1, bad, 2], 1.0)
    # The trials before it are stopped, the ones after it untouched (as applying one by one).
    assert core.state_of(1) is TrialState.STOPPED and core.state_of(2) is TrialState.PAUSED


def test_a_core_that_is_not_replayable_records_no_generator_state() -> None:
    """simulate()'s core: its creation events carry None, and the same params and decisions
    as a replayable core's; applying such an event is refused."""
    replayable, plain = make(brackets=2), make(brackets=2)
    plain.replayable = False
    for _ in range(10):
        a, b = replayable.next_job(), plain.next_job()
        assert isinstance(a, TrialCreated) and isinstance(b, TrialCreated)
        assert b.rng_state is None and (a.number, a.bracket, a.params) == (b.number, b.bracket, b.params)
    replaying = make()
    replaying.apply(Enqueued({"x": 0.5}))
    before = _snapshot(replaying)
    with pytest.raises(StateError, match="trial 0's creation carries no generator state"):
        replaying.apply(TrialCreated(0, 0, {"x": 0.5}, None))
    assert _snapshot(replaying) == before and replaying.n_enqueued == 1  # refused, nothing changed


@pytest.mark.parametrize("sampler", [RandomSampler(0), TPESampler(0)], ids=["random", "learning"])
def test_a_core_is_freed_with_its_last_reference_not_at_a_later_collection(sampler: Any) -> None:
    # A core holds a study's columns (100,000 trials: tens of MB); in a reference cycle it would
    # wait for a full collection, as the bound handlers it once kept made it.
    core = Core(SPACE, ASHA(1, 9, 3), sampler)
    for n in start(core, 3):
        core.apply(Reported(n, 1, 0.1 * n))
    core.apply(TrialEnded(2, TrialState.FAILED, "boom"))
    freed = weakref.ref(core)
    gc.disable()
    try:
        del core
        assert freed() is None
    finally:
        gc.enable()


def test_snapshots_of_the_same_trial_are_equal_where_a_value_is_nan() -> None:
    def snapshot(value: float) -> FrozenTrial:
        # float("nan") twice: two NaN objects, as a replayed log's are (json makes new ones)
        nan = float("nan")
        return FrozenTrial(4, TrialState.PAUSED, {"x": nan}, 0, 3, value, 3, {1: 0.2, 3: nan}, None, 3)

    assert snapshot(float("nan")) == snapshot(float("nan"))
    assert snapshot(float("nan")) != snapshot(0.5)
    assert snapshot(0.5) == snapshot(0.5)
    other = FrozenTrial(4, TrialState.PAUSED, {"x": 0.1}, 0, 3, 0.5, 3, {1: 0.2, 3: 0.3}, None, 3)
    assert snapshot(0.5) != other  # NaN is no wildcard: it equals NaN only
    assert snapshot(0.5) != (4,)
