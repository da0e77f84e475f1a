"""The fast-forwarding event loop of the runner tests: the public one in aio_ashb.simulation."""

from __future__ import annotations

from aio_ashb.simulation import VirtualTimeLoop, run_virtual
from aio_ashb.simulation import now as vnow

__all__ = ["VirtualTimeLoop", "run_virtual", "vnow"]
