"""``tdp-fraction``: a CPU's thermal design power scaled by its measured utilization."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from . import power_model


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
        "net_mj_per_inference": (power - tdp * idle) * mean_ms,
        "source": "estimated",
        "measurement_method": "model-estimate",
        "meter": f"tdp-fraction(tdp_w={tdp:g}, idle_fraction={idle:g}, cores={cores}, utilization={utilization:.2f})",
        "boundary": "estimate",
    }
