"""Energy per inference from a meter, measured in windows (MLPerf Tiny / MLPerf Power style).

Counters and power sensors update slowly and read noisily at the edges, so energy is read only
at the edges of long windows (default 5 x 10 s, the MLPerf Tiny rule) and the median over
windows is reported. Gross energy (everything the meter's boundary saw) is what MLPerf
reports and what budgets gate on (``idle_subtracted`` false); net energy subtracts the idle power
measured just before, with the model loaded. A reading that cannot be right is refused
(``EnergyRefused``), never reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from .settings import ENERGY
from .meters.base import EnergyRefused, Meter


def _check_window(what: str, seconds: float, meter: Meter) -> None:
    minimum = 10 * meter.update_period_s
    if seconds < minimum:
        raise EnergyRefused(
            f"{what}={seconds:g} s is shorter than 10x the {meter.name} meter's update period "
            f"({meter.update_period_s:g} s): use at least {minimum:g} s"
        )


def check_delta(meter: str, what: str, joules: float, seconds: float, *, zero_ok: bool = False) -> None:
    """A window's energy must be positive: zero is a counter that did not advance (a stuck or virtualised
    sensor), below zero a counter that went backwards or a power sign the meter misread. ``zero_ok``: the
    idle window, where a power-gated rail may truly read nothing."""
    if joules == 0 and not zero_ok:
        raise EnergyRefused(f"the {meter} reading did not advance over the {what} ({seconds:.3g} s): a stuck "
                            "counter, or a sensor this machine does not update (common in VMs)")
    if joules < 0:
        raise EnergyRefused(f"the {meter} reading fell by {-joules:.4g} J over the {what} ({seconds:.3g} s): "
                            "energy cannot be negative (a counter reset, or a power sign the meter misread)")


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
    min_duration_s: float = ENERGY.min_duration_s,
) -> dict:
    """Idle power, then ``windows`` windows each calling ``run_once`` until ``window_s`` elapsed.

    ``meter`` must be opened and not started; this starts and stops it. ``run_once`` must block
    until its inference is finished (synchronize GPU work). Every window runs at least one
    inference, so a window lasts at least one inference. ``min_duration_s`` lengthens the windows
    so that together they last at least that long (MLPerf Power runs at least 10 minutes).

    Raises ``EnergyRefused`` when a reading cannot be right: a window shorter than ten of the
    meter's updates, or a window whose energy is zero or negative.
    """
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    window_s = max(window_s, min_duration_s / windows)
    idle_s = window_s if idle_s is None else idle_s
    _check_window("window_s", window_s, meter)
    _check_window("idle_s", idle_s, meter)

    meter.start()
    try:
        j0, t0 = _edge(meter)
        time.sleep(idle_s)
        j1, t1 = _edge(meter)
        check_delta(meter.name, "idle window", j1 - j0, t1 - t0, zero_ok=True)
        idle_power_w = (j1 - j0) / (t1 - t0)

        rows = []
        for k in range(windows):
            j_start, t_start = _edge(meter)
            deadline, n = t_start + window_s, 0
            while True:
                run_once()
                n += 1
                if time.perf_counter() >= deadline:
                    break
            j_end, t_end = _edge(meter)
            seconds, joules = t_end - t_start, j_end - j_start
            check_delta(meter.name, f"window {k + 1} of {windows}", joules, seconds)
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
        "status": "measured",
        "source": "measured",
        "meter": meter.name,
        "measurement_method": meter.method,
        "boundary": meter.boundary,
        "sampling_interval_s": meter.sampling_interval_s,
        "window_s": window_s,
        "window_count": len(rows),
        "duration_s": sum(r["seconds"] for r in rows),
        "inferences": sum(r["inferences"] for r in rows),
        "windows": rows,
        "mj_per_inference": mj,
        "net_mj_per_inference": statistics.median(r["net_mj_per_inference"] for r in rows),
        "avg_power_w": statistics.median(r["power_w"] for r in rows),
        "idle_power_w": idle_power_w,
        "idle_s": t1 - t0,
        "idle_subtracted": False,
        "inferences_per_joule": 1000.0 / mj,
        "describe": meter.describe(),
    }
