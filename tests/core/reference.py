"""A deliberately simple reference of the paper's Algorithm 2 (plus our documented rules).

Lists, dicts and full sorts everywhere: O(n) per decision on purpose, so that it reads like the
rules in docs/scheduling.md and can be checked against the real, O(log n), core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aio_ashb._core import SearchSpace


@dataclass
class RefTrial:
    number: int
    bracket: int
    params: dict[str, Any]
    state: str = "running"
    step: int = 0
    crossed: list[int] = field(default_factory=list)  # rung indices crossed, in order
    target: int = 0  # promotion mode: rung it may run to
    paused_at: int | None = None


class ReferenceASHA:
    def __init__(
        self,
        space: SearchSpace,
        milestones: list[int],
        eta: int,
        brackets: int,
        mode: str,
        maximize: bool,
        seed: int,
    ) -> None:
        self.space = space
        self.brackets = [milestones[s:] for s in range(brackets)]
        self.eta = eta
        self.mode = mode
        self.maximize = maximize
        self.rng = np.random.default_rng(seed)
        s_max = len(milestones) - 1
        sizes = [math.ceil((s_max + 1) / (s_max - s + 1) * eta ** (s_max - s)) for s in range(brackets)]
        self.probs = np.array(sizes, dtype=float) / sum(sizes)
        self.trials: list[RefTrial] = []
        # recorded[b][k] = {trial number: value recorded at rung k}
        self.recorded: list[list[dict[int, float]]] = [[{} for _ in ms] for ms in self.brackets]

    def rank_key(self, number: int, value: float) -> tuple[int, float, int]:
        if not math.isfinite(value):
            return (1, 0.0, number)
        return (0, -value if self.maximize else value, number)

    def ranked(self, b: int, k: int) -> list[int]:
        rung = self.recorded[b][k]
        return sorted(rung, key=lambda n: self.rank_key(n, rung[n]))

    def get_job(self, can_start: bool) -> tuple[Any, ...] | None:
        interrupted = [t.number for t in self.trials if t.state == "interrupted"]
        if interrupted:
            t = self.trials[min(interrupted)]
            t.state = "running"
            return ("resume", t.number)
        if self.mode == "promotion":
            for b, ms in enumerate(self.brackets):
                for k in reversed(range(len(ms) - 1)):
                    ranked = self.ranked(b, k)
                    candidates = ranked[: len(ranked) // self.eta]
                    for n in candidates:  # best first
                        t = self.trials[n]
                        if t.state == "paused" and t.paused_at == k:
                            t.state = "running"
                            t.paused_at = None
                            t.target = k + 1
                            return ("promote", n, k + 1)
        if not can_start:
            return None
        b = 0
        if len(self.brackets) > 1:
            u = self.rng.random()
            b = min(int(np.searchsorted(np.cumsum(self.probs), u, side="right")), len(self.brackets) - 1)
        params = self.space.validate(self.space.sample(self.rng))
        t = RefTrial(len(self.trials), b, params)
        self.trials.append(t)
        return ("create", t.number, b, params)

    def report(self, number: int, step: int, value: float) -> str:
        t = self.trials[number]
        assert t.state == "running" and step > t.step
        t.step = step
        ms = self.brackets[t.bracket]
        newly = []
        for k, m in enumerate(ms):
            if k not in t.crossed and step >= m:
                t.crossed.append(k)
                self.recorded[t.bracket][k][number] = value
                newly.append(k)
        if not newly:
            return "continue"
        if len(ms) - 1 in newly:
            t.state = "complete"
            return "complete"
        if self.mode == "promotion":
            t.state = "paused"
            t.paused_at = max(newly)
            return "pause"
        for k in newly:
            ranked = self.ranked(t.bracket, k)
            if ranked.index(number) >= max(1, len(ranked) // self.eta):
                t.state = "stopped"
                return "stop"
        return "continue"

    def fail(self, number: int) -> None:
        t = self.trials[number]
        t.state = "failed"
        t.paused_at = None

    def interrupt(self, number: int) -> None:
        t = self.trials[number]
        assert t.state == "running"
        t.state = "interrupted"
