"""Budgets at the application's rate (rate_hz), accuracy per joule and SQNR in dB (issue 16).

At full load every artifact draws about the same power, so accuracy per watt could not tell a 50 µs
artifact from a 200 µs one; at a 30 Hz duty cycle the power is idle plus energy above idle x rate,
which ranks them by their energy per inference.
"""

from __future__ import annotations

import pytest

from edgekd.gate.budgets import BudgetsFile
from edgekd.gate.check import evaluate, power_at_rate
from edgekd.report.schema import Report


def energy(net_mj: float, mean_ms: float, idle_w: float = 4.0, status: str = "measured") -> dict:
    gross = net_mj + idle_w * mean_ms  # W x ms = mJ
    return {"status": status, "source": status, "meter": "rapl", "boundary": "cpu-package", "mj_per_inference": gross,
            "avg_power_w": gross / mean_ms, "inferences_per_joule": 1000.0 / gross, "idle_power_w": idle_w,
            "net_mj_per_inference": net_mj}


def artifact(ident: str, mean_ms: float, net_mj: float, sqnr_db: float | None = 40.0) -> dict:
    target, backend, precision = ident.split("/")
    e = energy(net_mj, mean_ms)
    return {"id": ident, "target": target, "backend": backend, "precision": precision, "path": None, "status": "ok",
            "accuracy": 0.98, "latency_ms": {"p50": mean_ms, "mean": mean_ms, "p95": mean_ms * 1.2}, "energy": e,
            "accuracy_per_watt": 0.98 / e["avg_power_w"], "accuracy_per_joule": 0.98 * e["inferences_per_joule"],
            "parity": {"max_abs_diff": 0.0 if sqnr_db is None else 0.01, "top1_agreement": 1.0, "ok": True, "sqnr_db": sqnr_db}}


def report(*artifacts: dict) -> dict:
    figures = {"accuracy": 0.98, "per_class_accuracy": [0.98, 0.98]}
    rep = {"edgekd_version": "0", "created": "2026-01-01T00:00:00+00:00", "run": "t", "class_names": ["a", "b"],
           "teacher": figures, "student": figures, "artifacts": list(artifacts)}
    return Report.model_validate(rep).model_dump(mode="json")


def gate(rep: dict, **budget) -> dict[str, dict[str, dict]]:
    budgets = BudgetsFile.model_validate({"budgets": [{"target": "*", **budget}]})
    return {ident: {c["budget"]: c for c in checks} for ident, checks in evaluate(rep, budgets)["per_artifact"].items()}


FAST, SLOW = "cpu/ort/int8", "cpu/ort/fp32"


def test_accuracy_per_watt_at_a_rate_ranks_artifacts_by_their_energy_per_inference():
    rep = report(artifact(FAST, mean_ms=0.05, net_mj=0.5), artifact(SLOW, mean_ms=0.2, net_mj=2.0))
    at_30 = {ident: 0.98 / power_at_rate(a["energy"], 30.0) for ident, a in zip((FAST, SLOW), rep["artifacts"])}
    assert at_30[FAST] == pytest.approx(0.98 / (4.0 + 0.5 * 0.030)) and at_30[SLOW] == pytest.approx(0.98 / (4.0 + 2.0 * 0.030))
    assert at_30[FAST] > at_30[SLOW]
    limit = (at_30[FAST] + at_30[SLOW]) / 2
    checks = gate(rep, rate_hz=30, min_accuracy_per_watt=limit)
    assert checks[FAST]["min_accuracy_per_watt"]["passed"] and not checks[SLOW]["min_accuracy_per_watt"]["passed"]
    assert checks[SLOW]["min_accuracy_per_watt"]["measured"] == pytest.approx(at_30[SLOW])
    assert checks[SLOW]["min_accuracy_per_watt"]["message"].endswith(f"< {limit:g} at 30 Hz")
    assert checks[FAST]["rate_hz"]["passed"] and "0.15% of the time busy" in checks[FAST]["rate_hz"]["message"]
    # without a rate the same budget reads the full-load figure, and says so
    full = gate(rep, min_accuracy_per_watt=0.01)[FAST]["min_accuracy_per_watt"]
    assert full["measured"] == pytest.approx(rep["artifacts"][0]["accuracy_per_watt"]) and "at full load" in full["message"]


def test_a_rate_the_latency_cannot_sustain_fails_with_that_reason():
    rep = report(artifact(FAST, mean_ms=0.05, net_mj=0.5), artifact(SLOW, mean_ms=40.0, net_mj=2.0))
    checks = gate(rep, rate_hz=30)
    assert checks[FAST]["rate_hz"]["passed"]
    slow = checks[SLOW]["rate_hz"]
    assert not slow["passed"] and slow["measured"] == pytest.approx(1.2)
    assert slow["message"] == "30 Hz x mean 40 ms = 120.00% of the time busy: cannot sustain 30 Hz (at most 25 per second)"


def test_accuracy_per_watt_at_a_rate_needs_idle_power_and_says_so():
    no_idle = artifact(FAST, mean_ms=0.05, net_mj=0.5)
    no_idle["energy"]["idle_power_w"] = None
    check = gate(report(no_idle), rate_hz=30, min_accuracy_per_watt=0.1)[FAST]["min_accuracy_per_watt"]
    assert not check["passed"] and check["measured"] is None
    assert "power at 30 Hz needs the idle power" in check["message"]


def test_min_accuracy_per_joule_and_min_sqnr_db():
    rep = report(artifact(FAST, mean_ms=0.05, net_mj=0.5, sqnr_db=38.0), artifact(SLOW, mean_ms=0.2, net_mj=2.0, sqnr_db=None))
    checks = gate(rep, min_sqnr_db=40, min_accuracy_per_joule=500)
    assert not checks[FAST]["min_sqnr_db"]["passed"] and checks[FAST]["min_sqnr_db"]["message"] == "38 < 40"
    assert checks[SLOW]["min_sqnr_db"]["passed"]  # identical outputs: no noise at all
    older = artifact(FAST, mean_ms=0.05, net_mj=0.5)
    del older["parity"]["sqnr_db"]  # a parity recorded before SQNR was: outputs differ, their SQNR is unknown
    check = gate(report(older), min_sqnr_db=40)[FAST]["min_sqnr_db"]
    assert not check["passed"] and check["measured"] is None and check["message"] == "not measured"
    per_joule = {ident: c["min_accuracy_per_joule"] for ident, c in checks.items()}
    assert per_joule[FAST]["measured"] == pytest.approx(0.98 * 1000 / (0.5 + 4.0 * 0.05))  # 1400
    assert per_joule[FAST]["passed"] and not per_joule[SLOW]["passed"]  # 0.98 x 1000 / 2.8 = 350


def test_a_targets_rate_applies_where_budgets_do_and_a_budgets_own_rate_wins():
    """A target may state the application's rate (target rate_hz, carried into the report): the gate then checks
    that each of its artifacts sustains it and judges accuracy per watt at it; a budget's rate_hz overrides it."""
    fast, slow = artifact(FAST, mean_ms=0.05, net_mj=0.5), artifact(SLOW, mean_ms=40.0, net_mj=2.0)
    for a in (fast, slow):
        a["rate_hz"] = 30.0
    rep = report(fast, slow)
    checks = gate(rep, min_accuracy=0.5, min_accuracy_per_watt=0.2)
    assert not checks[SLOW]["rate_hz"]["passed"] and "cannot sustain 30 Hz" in checks[SLOW]["rate_hz"]["message"]
    assert checks[FAST]["min_accuracy_per_watt"]["message"].endswith("at 30 Hz")
    assert checks[FAST]["min_accuracy_per_watt"]["measured"] == pytest.approx(0.98 / power_at_rate(rep["artifacts"][0]["energy"], 30.0))
    assert gate(rep, min_accuracy=0.5, rate_hz=20)[SLOW]["rate_hz"]["limit"] == 20  # 20 Hz x 40 ms: 80% busy
    assert gate(rep, min_accuracy=0.5, rate_hz=20)[SLOW]["rate_hz"]["passed"]
    assert evaluate(rep, BudgetsFile.model_validate({"budgets": [{"target": "other", "min_accuracy": 0.5}]}))["per_artifact"][SLOW] == []


def test_a_targets_rate_is_validated_with_the_target(tmp_path):
    from edgekd.errors import ConfigError
    from edgekd.targets import load_target

    path = tmp_path / "cam.yaml"
    path.write_text("name: cam\nrate_hz: 30\nartifacts: [{backend: onnxruntime, precisions: [fp32]}]\n")
    assert load_target(str(path), tmp_path).rate_hz == 30.0
    path.write_text("name: cam\nrate_hz: -5\nartifacts: [{backend: onnxruntime, precisions: [fp32]}]\n")
    with pytest.raises(ConfigError, match="rate_hz"):
        load_target(str(path), tmp_path)
