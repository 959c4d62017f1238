"""How idle OpenMP threads wait, chosen before torch loads OpenMP (libgomp reads it once, at load).

A decode step is hundreds of small parallel regions (MKL calls, attention) with a few microseconds of Python
between them. Threads that sleep at once (PASSIVE) pay a wake-up at each region; threads that spin for good
(ACTIVE, or libgomp's default 300,000 spins) hold cores that other work on the machine needs. Measured
(bench/threads.py, bench/README.md, 2 CPUs): with a short bounded spin (GOMP_SPINCOUNT=3000, then sleep)
guided generation at D1024 ran ~1.26x faster than PASSIVE on a quiet machine; beside two busy processes the
demo model ran ~1.2x slower than PASSIVE, where unbounded spinning ran up to 25x slower. A Hugging Face Space
serves several visitors on shared cores: there threads sleep at once. A user's own OMP_WAIT_POLICY or
GOMP_SPINCOUNT always wins.
"""
from __future__ import annotations

import os
from typing import Mapping

SPIN_COUNT = "3000"


def wait_policy(env: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP variables to set (none where the user set one)."""
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return {}
    if env.get("SPACE_ID"):  # a Hugging Face Space
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": SPIN_COUNT}


def apply() -> dict[str, str]:
    """Sets the policy in this process's environment (read by OpenMP when torch loads; inherited by children)."""
    chosen = wait_policy(os.environ)
    os.environ.update(chosen)
    return chosen
