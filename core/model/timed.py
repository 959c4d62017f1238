"""Which of two equal computations runs faster on this machine: the timing both kernel choices use
(core.model.attention.measure, core.model.fast_step.row_mm)."""
from __future__ import annotations

import time
from typing import Callable


def best_times(forms: dict[str, Callable[[], object]], trials: int) -> dict[str, float]:
    """Seconds per form: one untimed call (allocation, kernel selection), then the best of `trials` calls, so a
    busy moment on the machine skews it less."""
    best = {}
    for name, run in forms.items():
        run()
        times = []
        for _ in range(trials):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        best[name] = min(times)
    return best
