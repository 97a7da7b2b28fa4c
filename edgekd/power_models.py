"""Energy estimates for targets without a meter, from the target's ``power:`` block.

An estimate is labelled ``estimated`` and names its model and parameters
wherever it appears; it is never reported as measured, and a budget can
require measured energy.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import ConfigError
from .registry import Registry

# name -> fn(the target's power block, one benchmark result) -> energy dict
POWER_MODELS: Registry[Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = Registry("power model")


def power_model(name: str, *, example: dict[str, Any]):
    """Register ``fn(params, bench)`` as ``name``; ``example`` is a valid power block (without ``model``), for the contract tests."""

    def register(fn):
        fn.example = dict(example)
        return POWER_MODELS.register(name, fn)

    return register


@power_model("tdp-fraction", example={"tdp_w": 15.0, "idle_fraction": 0.3, "cores": 2})
def tdp_fraction(params: dict[str, Any], bench: dict[str, Any]) -> dict[str, Any]:
    """P = TDP x (idle_fraction + (1 - idle_fraction) x utilization).

    ``utilization`` is measured: the benchmark process's CPU seconds per wall second during the
    timed runs, divided by the cores the TDP covers (``cores``, default 1). Energy per inference
    is P x mean latency.
    """
    unknown = set(params) - {"model", "tdp_w", "idle_fraction", "cores"}
    if unknown or "tdp_w" not in params:
        raise ConfigError(f"power model tdp-fraction takes tdp_w (required), idle_fraction and cores; got {sorted(params)}")
    tdp, idle, cores = float(params["tdp_w"]), float(params.get("idle_fraction", 0.3)), int(params.get("cores", 1))
    utilization = min(1.0, max(0.0, (bench.get("cpu_utilization") or 1.0) / cores))
    power = tdp * (idle + (1 - idle) * utilization)
    mean_ms = bench["latency_ms"]["mean"]
    mj = power * mean_ms  # W x ms = mJ
    return {
        "mj_per_inference": mj,
        "avg_power_w": power,
        "inferences_per_joule": 1000.0 / mj if mj > 0 else float("inf"),
        "idle_power_w": tdp * idle,
        "source": "estimated",
        "meter": f"tdp-fraction(tdp_w={tdp:g}, idle_fraction={idle:g}, cores={cores}, utilization={utilization:.2f})",
        "boundary": "estimate",
    }


def estimate(power: dict[str, Any] | None, bench: dict[str, Any]) -> dict[str, Any] | None:
    """The target's power model applied to one benchmark result; None when the target has none."""
    if not power:
        return None
    return POWER_MODELS.get(power.get("model"), key="power.model")(power, bench)
