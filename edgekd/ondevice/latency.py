"""The single-stream latency protocol: batch 1, warm-up by time and count, then timed runs.

Follows the recipe of the standard tools (trtexec, benchmark_app,
benchmark_model): at least two seconds of warm-up, since CPUs take over a
second to reach their boost clock; per-iteration times kept, so every
percentile comes from the same samples; load and first inference reported
apart from the steady state; an unstable measurement repeated and, if
still unstable, flagged.

Stability is judged on what the gate reads, the median: the timed runs are cut
into ``BLOCKS`` consecutive blocks and ``p50_spread`` is (max - min) of the
blocks' medians over the median of all runs. A median that drifts while the loop
runs (a clock change, another job starting) shows up there; the per-sample
coefficient of variation does not tell these apart from OS jitter and timer
granularity, which dominate single runs of a tens-of-microseconds inference and
leave the median steady, so ``cov`` is kept as context only.

Each run is timed by a clock around the Python call unless the runtime keeps its own
(``Model.runtime_clock``: OpenVINO times ``infer`` in C++): then each run's figure is the
runtime's, which is what a C++ application pays, and the Python call's median is kept
beside it (``python_call_p50``), so the cost of calling from Python stays visible.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Callable

import numpy as np

from .settings import LatencySettings

__all__ = ["LatencySettings", "PYTHON_CLOCK", "empty_call_ms", "measure_latency", "summarize", "settings_dict", "p50_spread", "percentile_spread", "BLOCKS", "MIN_SPREAD_RUNS"]

BLOCKS = 5  # consecutive blocks of the timed runs whose medians are compared
MIN_SPREAD_RUNS = 50  # fewer timed runs than this: blocks too small for a median to mean much, stability unknown
TAIL_RUNS_PER_BLOCK = 10  # runs above a tail percentile each block needs for its spread to be judged
TAIL_PERCENTILES = (90, 95, 99)  # the budgetable percentiles above the median, each with its own spread


def p50_spread(samples_ms: np.ndarray, blocks: int = BLOCKS) -> float | None:
    """(max - min) of the medians of ``blocks`` consecutive blocks, over the median of all samples;
    None with fewer than ``MIN_SPREAD_RUNS`` samples, or a zero median (a timer too coarse to judge)."""
    return percentile_spread(samples_ms, 50, blocks)


def percentile_spread(samples_ms: np.ndarray, q: float, blocks: int = BLOCKS) -> float | None:
    """``p50_spread`` for the ``q``-th percentile: (max - min) of the blocks' q-th percentiles over that of all samples.
    A tail percentile needs ``TAIL_RUNS_PER_BLOCK`` runs above it in each block to be more than a few samples' whim
    (p95: 200 runs a block, 1,000 in all; p99: 5,000 in all); fewer: None (unknown)."""
    if not 0 < q < 100:
        raise ValueError(f"percentile_spread: q={q} must lie strictly between 0 and 100")
    samples = np.asarray(samples_ms, dtype=np.float64)
    needed = max(MIN_SPREAD_RUNS, blocks) if q == 50 else blocks * TAIL_RUNS_PER_BLOCK / (1 - q / 100)
    if len(samples) < needed - 1e-6:
        return None
    overall = float(np.percentile(samples, q))
    if overall <= 0:
        return None
    values = [float(np.percentile(block, q)) for block in np.array_split(samples, blocks)]
    return (max(values) - min(values)) / overall


def summarize(samples_ms: np.ndarray, bins: int = 40) -> dict:
    samples = np.asarray(samples_ms, dtype=np.float64)
    mean, std = float(samples.mean()), float(samples.std(ddof=1)) if len(samples) > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(samples, [50, 90, 95, 99]))
    # The histogram spans min..p99.9 so one outlier does not squash every other bin into one, and its bins
    # are log-spaced: latency's tail is long, so equal-width bins would put the bulk of the runs in one bin.
    lo = float(samples.min())
    top = max(float(np.percentile(samples, 99.9)), lo * (1 + 1e-6), lo + 1e-9)
    edges = np.geomspace(lo, top, bins + 1) if lo > 0 else np.linspace(lo, top, bins + 1)
    counts, edges = np.histogram(np.clip(samples, None, top), bins=edges)
    return {
        "p50": p50, "p90": p90, "p95": p95, "p99": p99, "mean": mean, "std": std,
        "min": float(samples.min()), "max": float(samples.max()), "cov": std / mean if mean > 0 else 0.0,
        "p50_spread": p50_spread(samples), "runs": int(len(samples)),
        "tail_spread": {f"p{q}": percentile_spread(samples, q) for q in TAIL_PERCENTILES},
        "histogram": {"edges_ms": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def _timed_loop(infer: Callable[[], object], settings: LatencySettings,
                runtime_ms: Callable[[], float] | None = None) -> tuple[np.ndarray, float, float, np.ndarray | None]:
    """Per-run times in ms around the Python call, the wall and process CPU seconds of the loop (for
    utilization), and, given ``runtime_ms``, the runtime's own time of each run (read after the clock stops)."""
    times: list[float] = []
    own: list[float] = []
    clock = time.perf_counter
    started, cpu_started = clock(), time.process_time()
    while True:
        t0 = clock()
        infer()
        times.append((clock() - t0) * 1000.0)
        if runtime_ms is not None:
            own.append(runtime_ms())
        elapsed = clock() - started
        if (len(times) >= settings.runs and elapsed >= settings.min_seconds) or elapsed >= settings.max_seconds:
            break
    return np.asarray(times), clock() - started, time.process_time() - cpu_started, np.asarray(own) if own else None


def empty_call_ms(call: Callable[[], object], runs: int = 5000) -> float:
    """The median time the timed loop records around ``call``, given one that does nothing: the part of every
    latency figure that is the harness itself (clock reads, the list append, the Python call), not the runtime."""
    samples = _timed_loop(call, LatencySettings(runs=runs, min_seconds=0.0, max_seconds=5.0))[0]
    return float(np.median(samples))


PYTHON_CLOCK = "perf_counter around the Python call"


def measure_latency(infer: Callable[[], object], settings: LatencySettings | None = None, *,
                    runtime_ms: Callable[[], float] | None = None, runtime_clock: str | None = None) -> dict:
    """Warm up, then time ``infer`` (one batch-1 inference) until both the run count and the duration are met.

    ``runtime_ms``: the runtime's own time of the last call in ms (named by ``runtime_clock``); when given,
    the statistics are of its figures and ``python_call_p50`` is the median around the Python call."""
    settings = settings or LatencySettings()
    warm_started, warm_runs = time.perf_counter(), 0
    while warm_runs < settings.warmup_runs or time.perf_counter() - warm_started < settings.warmup_s:
        infer()
        warm_runs += 1
    warmup_seconds = time.perf_counter() - warm_started
    best = None
    for repeat in range(1, settings.max_repeats + 1):
        around_call, wall, cpu, own = _timed_loop(infer, settings, runtime_ms)
        stats = summarize(around_call if own is None else own)
        stats.update(wall_seconds=wall, cpu_seconds=cpu, python_call_p50=float(np.median(around_call)),
                     clock=PYTHON_CLOCK if own is None else runtime_clock or "the runtime's own")
        if best is None or _spread(stats) < _spread(best):
            best = {**stats}
        best["repeats"] = repeat
        if stats["p50_spread"] is None or stats["p50_spread"] <= settings.stability_threshold:
            break  # stable, or too few runs to tell (another loop of the same length would not tell either)
    spread = best["p50_spread"]
    best.update(warmup_runs=warm_runs, warmup_seconds=warmup_seconds,
                stable=None if spread is None else spread <= settings.stability_threshold,
                stability_threshold=settings.stability_threshold)
    return best


def _spread(stats: dict) -> float:
    return float("inf") if stats["p50_spread"] is None else stats["p50_spread"]


def settings_dict(settings: LatencySettings) -> dict:
    return asdict(settings)
