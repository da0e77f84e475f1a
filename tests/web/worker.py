"""A remote worker in plain httpx, as one in any language would be: ask for a job, train it
step by step reporting each value, stop when told; run as a process by the tests.

    python worker.py BASE_URL STUDY MAX_TRIALS STEP_TIME

It prints one line per event (``took``, ``reported``, ``lost``, ``done``) for the test to follow.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import httpx


def value(params: dict[str, Any], step: int) -> float:
    """The "training" result: a deterministic function of the params and the step."""
    return float(abs(math.log10(params["lr"]) + 2) + params["width"] / 1000 + 1 / step)


def work(base: str, study: str, max_trials: int, step_time: float) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        while True:
            answer = client.post(f"/studies/{study}/jobs", json={"max_trials": max_trials}).json()
            job = answer["job"]
            if job is None:
                if answer["done"]:
                    print("done", flush=True)
                    return
                time.sleep(0.05)  # another worker's trial may still be promoted
                continue
            print("took", job["number"], job["step"], job["target"], flush=True)
            for step in range(job["step"] + 1, job["target"] + 1):
                time.sleep(step_time)
                r = client.post(
                    f"/studies/{study}/jobs/{job['lease']}/report",
                    json={"value": value(job["params"], step), "step": step, "checkpoint": {"step": step}},
                )
                if r.status_code == 409:  # the lease expired: the job went to someone else
                    print("lost", job["number"], flush=True)
                    break
                r.raise_for_status()
                print("reported", job["number"], step, r.json()["decision"], flush=True)
                if r.json()["done"]:
                    break


if __name__ == "__main__":
    work(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
