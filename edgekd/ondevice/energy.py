"""Energy per inference from a meter, measured in windows (MLPerf Tiny / MLPerf Power style).

Counters and power sensors update slowly and read noisily at the edges, so energy is read only
at the edges of long windows (default 5 x 10 s, the MLPerf Tiny rule) and the median over
windows is reported. Gross energy (everything the meter's boundary saw) is what MLPerf
reports and what budgets gate on; net energy subtracts the idle power measured just before,
with the model loaded, and is for diagnosis only.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from .settings import ENERGY
from .meters.base import Meter


def _check_window(what: str, seconds: float, meter: Meter) -> None:
    minimum = 10 * meter.update_period_s
    if seconds < minimum:
        raise ValueError(
            f"{what}={seconds:g} s is shorter than 10x the {meter.name} meter's update period "
            f"({meter.update_period_s:g} s): use at least {minimum:g} s"
        )


def _edge(meter: Meter) -> tuple[float, float]:
    """Joules and the time they were read: just after, since ``joules()`` may first wait for the
    meter's polling thread, while the read itself takes at most milliseconds."""
    joules = meter.joules()
    return joules, time.perf_counter()


def measure_energy(
    run_once: Callable[[], None],
    meter: Meter,
    *,
    windows: int = ENERGY.windows,
    window_s: float = ENERGY.window_s,
    idle_s: float | None = None,
) -> dict:
    """Idle power, then ``windows`` windows each calling ``run_once`` until ``window_s`` elapsed.

    ``meter`` must be opened and not started; this starts and stops it. ``run_once`` must block
    until its inference is finished (synchronize GPU work). Every window runs at least one
    inference, so a window lasts at least one inference.
    """
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    idle_s = window_s if idle_s is None else idle_s
    _check_window("window_s", window_s, meter)
    _check_window("idle_s", idle_s, meter)

    meter.start()
    try:
        j0, t0 = _edge(meter)
        time.sleep(idle_s)
        j1, t1 = _edge(meter)
        idle_power_w = (j1 - j0) / (t1 - t0)

        rows = []
        for _ in range(windows):
            j_start, t_start = _edge(meter)
            deadline, n = t_start + window_s, 0
            while True:
                run_once()
                n += 1
                if time.perf_counter() >= deadline:
                    break
            j_end, t_end = _edge(meter)
            seconds, joules = t_end - t_start, j_end - j_start
            rows.append({
                "seconds": seconds,
                "inferences": n,
                "joules": joules,
                "power_w": joules / seconds,
                "mj_per_inference": 1000.0 * joules / n,
                "net_mj_per_inference": 1000.0 * (joules - idle_power_w * seconds) / n,
            })
    finally:
        meter.stop()

    mj = statistics.median(r["mj_per_inference"] for r in rows)
    return {
        "source": "measured",
        "meter": meter.name,
        "boundary": meter.boundary,
        "windows": rows,
        "mj_per_inference": mj,
        "net_mj_per_inference": statistics.median(r["net_mj_per_inference"] for r in rows),
        "avg_power_w": statistics.median(r["power_w"] for r in rows),
        "idle_power_w": idle_power_w,
        "idle_s": t1 - t0,
        "inferences_per_joule": 1000.0 / mj if mj > 0 else float("inf"),
        "describe": meter.describe(),
    }
