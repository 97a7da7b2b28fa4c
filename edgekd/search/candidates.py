"""Every artifact of every trial is a candidate: how far it is from the budgets, and which to choose.

A candidate's distance is the sum, over its failed checks, of how far each is past its limit relative to
the limit (a p95 of 3 ms against 2 ms: 0.5); a check that could not be measured counts 1. The binding
budget is the failed check with the largest distance; an artifact that failed to build or run has no distance
(None: farther than any that ran). Passing candidates have distance 0; among them the
choice is the most accurate, then the fastest (p95), then the smallest.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from ..report.plots import pareto_front

UNMEASURED = 1.0  # the distance of a check with no measurement (an error, a missing meter)


def check_distance(check: dict[str, Any]) -> float:
    """How far one failed check is past its limit, relative to the limit; 0 for a passing or skipped one."""
    if check["passed"] or check.get("skipped"):
        return 0.0
    measured, limit, budget = check.get("measured"), check.get("limit"), check["budget"]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in (measured, limit))
    if not numeric:
        return UNMEASURED
    scale = abs(limit) or 1.0
    if budget == "rate_hz":  # measured is the fraction of the time busy; 1.0 is the limit
        gap = measured - 1.0
    elif budget.startswith("max_"):  # max_latency_ms.p95, max_percentile_spread.p95, max_size_mb, ...: upper limits
        gap = (measured - limit) / scale
    else:
        gap = (limit - measured) / scale
    return max(gap, 1e-3)  # failed for another reason (e.g. unstable latency under its bound): still not zero


def candidates(report: dict[str, Any], trial: int) -> list[dict[str, Any]]:
    """The artifacts of one trial's report that ran here, with their figures, distance and binding budget."""
    found = []
    for artifact in report.get("artifacts", []):
        if artifact.get("status") == "not run here":
            continue
        checks = [c for c in artifact.get("gate") or [] if not c.get("skipped")]
        distances = [(check_distance(c), c) for c in checks]
        failed = [(d, c) for d, c in distances if not c["passed"]]
        binding = max(failed, key=lambda item: item[0], default=None)
        latency = artifact.get("latency_ms") or {}
        found.append({
            "trial": trial, "id": artifact["id"], "target": artifact["target"], "backend": artifact["backend"],
            "precision": artifact["precision"], "status": artifact.get("status"),
            "accuracy": artifact.get("accuracy"), "p95_ms": latency.get("p95"), "p50_ms": latency.get("p50"),
            "size_bytes": artifact.get("size_bytes"),
            "mj_per_inference": (artifact.get("energy") or {}).get("mj_per_inference"),
            # no budget applies to an artifact: nothing to meet (as the gate's verdict "none")
            "passed": artifact.get("status") == "ok" and not failed,
            "distance": sum(d for d, _ in failed) if artifact.get("status") == "ok" else None,  # None: did not run
            "binding": None if binding is None else {"budget": binding[1]["budget"], "limit": binding[1]["limit"],
                                                     "measured": binding[1]["measured"], "distance": binding[0],
                                                     "message": binding[1]["message"]},
            "failed": [c["budget"] for _, c in failed],
        })
    return found


def preference(candidate: dict[str, Any]) -> tuple:
    """Sort key: passing first, then the most accurate, the fastest, the smallest; else the closest."""
    def number(v, default=math.inf):
        return v if isinstance(v, (int, float)) and math.isfinite(v) else default
    return (not candidate["passed"], number(candidate["distance"]), -number(candidate["accuracy"], -1.0),
            number(candidate["p95_ms"]), number(candidate["size_bytes"]), candidate["trial"])


def best(found: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return min(found, key=preference, default=None)


def groups(found: Iterable[dict[str, Any]], *keys: str) -> dict[str, list[dict[str, Any]]]:
    """Candidates by ``target`` or ``target/backend``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in found:
        out.setdefault("/".join(c[k] for k in keys), []).append(c)
    return out


def trial_value(found: list[dict[str, Any]]) -> float:
    """What the sampler maximises: per runtime (target/backend), 1 + accuracy of its best passing artifact,
    else minus the smallest distance to the budgets (capped); the mean over runtimes."""
    scores = []
    for group in groups(found, "target", "backend").values():
        top = best(group)
        if top["passed"]:
            scores.append(1.0 + (top["accuracy"] or 0.0))
        else:
            scores.append(-min(10.0 if top["distance"] is None else top["distance"], 10.0))
    return sum(scores) / len(scores) if scores else -10.0


def front(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates no other beats on both accuracy and p95 latency (one target's, ordered by latency)."""
    keyed = {f"{c['trial']}:{c['id']}": c for c in found}
    return [keyed[k] for k in pareto_front([(k, c["accuracy"], c["p95_ms"]) for k, c in keyed.items()])]


# ``edgekd search --objectives``: what the sampler optimises. ``budgets`` (one objective: ``trial_value``);
# the others are two (accuracy up, the named figure down) with the budgets as Optuna constraints.
OBJECTIVES = {"budgets": None, "accuracy-latency": ("p95_ms", "p95 latency"),
              "accuracy-energy": ("mj_per_inference", "energy per inference")}


def trial_values(found: list[dict[str, Any]], objective: str) -> float | tuple[float, float]:
    """The trial's objective value(s): per runtime its best candidate (``best``), then the mean accuracy and
    the mean of the objective's figure over runtimes."""
    if OBJECTIVES[objective] is None:
        return trial_value(found)
    key, what = OBJECTIVES[objective]
    tops = [best(group) for group in groups(found, "target", "backend").values()]
    measured = [t for t in tops if t["accuracy"] is not None and t[key] is not None]
    if not measured:
        raise ValueError(f"no artifact with both an accuracy and a {what}: nothing to place against the others")
    return (sum(t["accuracy"] for t in measured) / len(measured), sum(t[key] for t in measured) / len(measured))


def trial_constraint(found: list[dict[str, Any]]) -> float:
    """The budgets as one Optuna constraint (feasible at 0 or below): the mean over runtimes of the best
    candidate's distance to the budgets (capped at 10, as ``trial_value`` does)."""
    tops = [best(group) for group in groups(found, "target", "backend").values()]
    distances = [10.0 if t["distance"] is None else min(t["distance"], 10.0) for t in tops]
    return sum(distances) / len(distances) if distances else 10.0
