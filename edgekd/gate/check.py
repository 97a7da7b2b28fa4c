"""Apply budgets to a report: one check per artifact and budget, each passed or failed with the numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .budgets import BudgetsFile, effective

# budget key -> (what is measured, how it compares): "min" passes when measured >= limit, "max" when <=.
# Accuracies are ratios of counts (0.97 - 0.94 is not exactly 0.03 in floating point): a measurement equal
# to its limit up to this tolerance meets it.
TOLERANCE = 1e-9

# Budget keys that change how the others are judged; they are not checks themselves.
OPTIONS = ("against", "class_drop_against", "allow_not_run", "allow_unstable_latency", "max_percentile_spread")
TAIL_PERCENTILES = ("p90", "p95", "p99")  # the keys of latency_ms.tail_spread
ENERGY_KEYS = ("max_energy_mj", "min_accuracy_per_watt", "min_accuracy_per_joule")

LIMITS = {
    "min_accuracy": "min",
    "max_accuracy_drop": "max",
    "max_class_drop": "max",
    "max_energy_mj": "max",
    "min_accuracy_per_watt": "min",
    "min_accuracy_per_joule": "min",
    "min_sqnr_db": "min",
    "max_size_mb": "max",
    "max_peak_memory_mb": "max",
}


def _measured(key: str, artifact: dict[str, Any], report: dict[str, Any], limits: dict[str, Any]) -> float | None:
    accuracy = artifact.get("accuracy")
    if key == "min_accuracy":
        return accuracy
    if key == "max_accuracy_drop":
        reference = report[limits.get("against", "student")]["accuracy"]
        return None if accuracy is None else reference - accuracy
    if key == "max_class_drop":
        reference = report[limits.get("class_drop_against", "teacher")]["per_class_accuracy"]
        mine = artifact.get("per_class_accuracy")
        if not mine:
            return None
        return max(r - a for r, a in zip(reference, mine) if r == r and a == a)  # NaN: a class absent from the split
    if key == "max_energy_mj":
        return (artifact.get("energy") or {}).get("mj_per_inference")
    if key == "min_accuracy_per_watt":
        if limits.get("rate_hz") is None:
            return artifact.get("accuracy_per_watt")
        power = power_at_rate(artifact.get("energy") or {}, limits["rate_hz"])
        return None if accuracy is None or power is None or power <= 0 else accuracy / power
    if key == "min_accuracy_per_joule":
        return artifact.get("accuracy_per_joule")
    if key == "min_sqnr_db":
        parity = artifact.get("parity")
        if not parity:
            return None
        if parity.get("sqnr_db") is not None:
            return parity["sqnr_db"]
        return float("inf") if parity.get("max_abs_diff") == 0 else None  # identical outputs: no noise at all
    if key == "max_size_mb":
        return None if artifact.get("size_bytes") is None else artifact["size_bytes"] / 1e6
    if key == "max_peak_memory_mb":
        return artifact.get("peak_memory_mb")
    raise KeyError(key)


def power_at_rate(energy: dict[str, Any], rate_hz: float) -> float | None:
    """Average power of an application running one inference every 1/rate_hz seconds: idle power plus the
    energy above idle of each inference times the rate. None when the energy lacks either figure."""
    idle, net = energy.get("idle_power_w"), energy.get("net_mj_per_inference")
    if energy.get("mj_per_inference") is None or idle is None or net is None:
        return None
    return idle + max(net, 0.0) * rate_hz / 1000.0  # a noisy window can put net a hair below idle


def _rate_check(artifact: dict[str, Any], rate_hz: float) -> dict[str, Any]:
    """Whether back-to-back inferences keep up with the rate: the mean latency times the rate is the time busy."""
    latency = artifact.get("latency_ms") or {}
    per_ms, which = (latency.get("mean"), "mean") if latency.get("mean") is not None else (latency.get("p50"), "p50")
    if per_ms is None:
        return _check(artifact, "rate_hz", rate_hz, None, False, "not measured (no mean or median latency)")
    busy = rate_hz * per_ms / 1000.0
    ok = busy <= 1.0
    text = f"{rate_hz:g} Hz x {which} {per_ms:.4g} ms = {busy:.2%} of the time busy"
    if not ok:
        text += f": cannot sustain {rate_hz:g} Hz (at most {1000.0 / per_ms:.4g} per second)"
    return _check(artifact, "rate_hz", rate_hz, busy, ok, text)


def _energy_gap(artifact: dict[str, Any], key: str, limits: dict[str, Any]) -> str:
    """Why an energy figure is missing, in the words of the report."""
    energy = artifact.get("energy") or {}
    if not energy:
        return "not measured (no energy: no meter here and the target has no power model)"
    if energy.get("mj_per_inference") is None:
        return f"not measured (energy {energy.get('status')}: {energy.get('reason') or 'no reason given'})"
    if key == "min_accuracy_per_watt" and limits.get("rate_hz") is not None:
        return f"not measured (power at {limits['rate_hz']:g} Hz needs the idle power and the energy above idle)"
    return "not measured"


def _check(artifact, budget, limit, measured, passed, message) -> dict[str, Any]:
    return {"target": artifact["target"], "artifact": artifact["id"], "budget": budget, "limit": limit,
            "measured": measured, "passed": bool(passed), "message": message, "skipped": False}


def _latency_checks(artifact: dict[str, Any], bounds: dict[str, float], allow_unstable: bool,
                    max_spread: float | None = None) -> list[dict[str, Any]]:
    """One check per percentile. A number flagged unstable (its p50_spread, the spread of the median across
    blocks of the timed runs, stayed above the stability threshold after the repeats) fails unless the budgets allow
    it: on a busy machine it says more about the machine than the model. A tail percentile's own spread across the
    blocks is shown beside it, and with ``max_spread`` (the budget's max_percentile_spread) checked on its own."""
    latency = artifact.get("latency_ms") or {}
    unstable = latency.get("stable") is False
    p50_spread, threshold = latency.get("p50_spread"), latency.get("stability_threshold")
    spread = f"p50 spread across blocks {_num(p50_spread)} above stability threshold {_num(threshold)}"
    checks = []
    for percentile, bound in sorted(bounds.items()):
        value = latency.get(percentile)
        meets = value is not None and value <= bound + TOLERANCE
        if value is None:
            ok, text = False, f"not measured ({latency.get('measured_by', 'the benchmark')} gave no {percentile})"
        elif unstable and not allow_unstable:
            ok = False
            text = (f"unstable: {spread} ({percentile} {value:.4g} ms {'<=' if meets else '>'} {bound:g} ms); "
                    "re-measure on a quieter machine or set `allow_unstable_latency: true`")
        else:
            ok = meets
            text = f"{percentile} {value:.4g} ms {'<=' if ok else '>'} {bound:g} ms"
            if unstable:
                text += f" (unstable: {spread}; allowed by allow_unstable_latency)"
            tail = (latency.get("tail_spread") or {}).get(percentile)
            if tail is not None:
                text += f"; its spread across blocks {tail:.3g}"
        checks.append(_check(artifact, f"max_latency_ms.{percentile}", bound, value, ok, text))
        if max_spread is not None and percentile in TAIL_PERCENTILES:
            checks.append(_tail_spread_check(artifact, latency, percentile, max_spread))
    return checks


def _tail_spread_check(artifact: dict[str, Any], latency: dict[str, Any], percentile: str, max_spread: float) -> dict[str, Any]:
    """How far a budgeted tail percentile moved across blocks of the timed runs (``latency_ms.tail_spread``), against
    the budget's ``max_percentile_spread``; unknown (a tool's aggregates, or too few runs per block) fails."""
    tail = (latency.get("tail_spread") or {}).get(percentile)
    budget = f"max_percentile_spread.{percentile}"
    if tail is None:
        return _check(artifact, budget, max_spread, None, False,
                      f"{percentile} spread across blocks unknown (no per-run times, or fewer than 10 runs above the "
                      f"{percentile} in each block): re-measure with more runs")
    ok = tail <= max_spread + TOLERANCE
    text = f"{percentile} moved {tail:.3g} across blocks of the timed runs {'<=' if ok else '>'} {max_spread:g}"
    return _check(artifact, budget, max_spread, tail, ok, text + ("" if ok else ": re-measure on a quieter machine"))


def _num(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3g}"


def check_artifact(artifact: dict[str, Any], report: dict[str, Any], budgets: BudgetsFile) -> list[dict[str, Any]]:
    limits = effective(budgets, artifact["target"], artifact["backend"], artifact["precision"])
    gated = [k for k in limits if k not in OPTIONS]
    if not gated:
        return []
    if artifact.get("rate_hz") is not None and "rate_hz" not in limits:  # the rate the target states, unless a budget's
        limits["rate_hz"] = artifact["rate_hz"]
        gated.append("rate_hz")
    if artifact["status"] == "not run here" and limits.get("allow_not_run", True):
        return [{**_check(artifact, "status", "ok", artifact["status"], True, f"skipped: not run here ({artifact.get('reason', '')})"),
                 "skipped": True}]
    if artifact["status"] != "ok":
        return [_check(artifact, "status", "ok", artifact["status"], False,
                       f"{artifact['status']}: {artifact.get('reason') or 'no reason given'}")]
    checks = []
    for key in gated:
        limit = limits[key]
        if key == "max_latency_ms":
            checks += _latency_checks(artifact, limit, allow_unstable=bool(limits.get("allow_unstable_latency")),
                                      max_spread=limits.get("max_percentile_spread"))
        elif key == "require_measured_energy":
            energy = artifact.get("energy") or {}
            status = energy.get("status")
            ok = not limit or status == "measured"
            text = f"energy is {status or 'missing'}" + (f" ({energy.get('meter')})" if status == "estimated" else "")
            if not ok:
                text += "; a meter reading is required" + (f": {energy['reason']}" if energy.get("reason") else "")
            checks.append(_check(artifact, key, bool(limit), status, ok, text))
        elif key == "rate_hz":
            checks.append(_rate_check(artifact, limit))
        elif key == "require_stable_latency":
            stable = (artifact.get("latency_ms") or {}).get("stable")
            ok = not limit or stable is True
            text = {True: "latency stable", False: "latency flagged unstable (p50 spread across blocks above threshold)"}.get(
                stable, "latency stability unknown (no per-run times: a device's own tool, or too few runs)")
            checks.append(_check(artifact, key, bool(limit), stable, ok, text))
        else:
            value = _measured(key, artifact, report, limits)
            kind = LIMITS[key]
            ok = value is not None and (value >= limit - TOLERANCE if kind == "min" else value <= limit + TOLERANCE)
            sign = (">=" if ok else "<") if kind == "min" else ("<=" if ok else ">")
            if value is None:
                text = _energy_gap(artifact, key, limits) if key in ENERGY_KEYS else "not measured"
            else:
                text = f"{value:.4g} {sign} {limit:g}"
                if key == "min_accuracy_per_watt":
                    rate = limits.get("rate_hz")
                    text += f" at {rate:g} Hz" if rate is not None else " at full load (set rate_hz for the application's rate)"
            checks.append(_check(artifact, key, limit, value, ok, text))
    return checks


def verdict(checks: Sequence[Mapping[str, Any]] | None) -> Literal["none", "skipped", "pass", "fail"]:
    """What one artifact's checks add up to, one word for the terminal table and report.html alike.

    ``none``: no budgets applied, or none applies to the artifact; ``skipped``: every check was skipped
    (not run here, which the budgets allow); otherwise ``pass`` or ``fail``.
    """
    if not checks:
        return "none"
    if all(c["skipped"] for c in checks):
        return "skipped"
    return "pass" if all(c["passed"] for c in checks) else "fail"


def evaluate(report: dict[str, Any], budgets: BudgetsFile, budgets_file: str = "") -> dict[str, Any]:
    """Checks per artifact id, and the verdict."""
    per_artifact = {a["id"]: check_artifact(a, report, budgets) for a in report["artifacts"]}
    checks = [c for cs in per_artifact.values() for c in cs]
    failures = sum(not c["passed"] for c in checks)
    return {"per_artifact": per_artifact,
            "summary": {"passed": failures == 0, "checks": len(checks), "failures": failures, "budgets_file": budgets_file}}


def apply(report: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The report with each artifact's checks and the verdict filled in."""
    artifacts = [{**a, "gate": result["per_artifact"].get(a["id"], [])} for a in report["artifacts"]]
    return {**report, "artifacts": artifacts, "gate": result["summary"]}
