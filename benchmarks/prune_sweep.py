"""Pruning ratio sweep on the MobileNetV2-style student: MACs, accuracy after recovery, ONNX Runtime latency.

One MobileNetV2 student is distilled once; each ratio prunes it (one step),
recovers it by distillation and exports FP32 ONNX, whose batch-1 latency is
measured in ONNX Runtime (1 thread, all ratios measured in this one process).
Writes benchmarks/results/prune_sweep.md.

    python benchmarks/prune_sweep.py [--ratios 0.2 0.3 0.4 0.5 0.6 0.7]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

import edgekd
from edgekd import onnx_export as ox

ROOT = Path(__file__).resolve().parents[1]


def p50_latency_ms(path: Path, input_shape, runs: int = 400) -> float:
    sess = ox.session(path, threads=1)
    x = np.zeros((1, *input_shape), dtype=np.float32)
    name = sess.get_inputs()[0].name
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:  # warm up by time
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-prune")
    parser.add_argument("--recovery-epochs", type=int, default=3)
    parser.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of this")
    args = parser.parse_args()

    cfg = yaml.safe_load((ROOT / "examples" / "mnist.yaml").read_text())
    cfg["student"] = {"model": "zoo:mobilenetv2", "kwargs": {"width": 0.5}}
    cfg["data"]["augment"] = False
    cfg["distill"]["train"] = {"epochs": 10, "lr": 0.01, "batch_size": 64}
    cfg["quantize"] = {"mode": "none"}
    rows = []
    cfg["prune"] = {"enabled": False}
    base = edgekd.run(cfg, args.out, stages=["export"])
    input_shape = base["distill"].input_shape

    def keep(result, ratio: float) -> Path:
        # One run directory (teacher and student are distilled once); keep each ratio's ONNX file aside.
        kept = args.out / "sweep" / f"fp32_ratio{ratio}_round{args.round_to}.onnx"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / result["export"].artifacts["fp32"].path, kept)
        return kept

    rows.append({"ratio": 0.0, "macs": base["distill"].figures.macs, "params": base["distill"].figures.params,
                 "accuracy": base["export"].artifacts["fp32"].accuracy, "onnx": keep(base, 0.0)})
    for ratio in args.ratios:
        cfg["prune"] = {"ratio": ratio, "steps": 1, "round_to": args.round_to,
                        "recovery": {"epochs": args.recovery_epochs, "lr": 0.005, "batch_size": 64}}
        result = edgekd.run(cfg, args.out, stages=["export"])
        rows.append({"ratio": ratio, "macs": result["prune"].figures.macs, "params": result["prune"].figures.params,
                     "accuracy": result["export"].artifacts["fp32"].accuracy, "onnx": keep(result, ratio)})
    for row in rows:  # measured last, back to back, so every ratio sees the same machine state
        row["p50_ms"] = p50_latency_ms(row["onnx"], input_shape)
    base_latency, base_macs = rows[0]["p50_ms"], rows[0]["macs"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    lines = [
        "# Pruning sweep: MobileNetV2-style student (width 0.5) on MNIST-5k",
        "",
        f"{datetime.date.today()}, {cpu}, ONNX Runtime CPU, 1 thread, batch 1, p50 of 400 runs after 1 s warm-up. "
        f"One pruning step with L2 importance, round_to {args.round_to}, {args.recovery_epochs} epochs of recovery distillation.",
        "",
        "| ratio | MACs | params | MACs vs unpruned | accuracy | ORT p50 (ms) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['ratio']:.1f} | {row['macs']:,} | {row['params']:,} | {row['macs'] / base_macs:.2f}x | {row['accuracy']:.2%} "
            f"| {row['p50_ms']:.3f} | {base_latency / row['p50_ms']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = "prune_sweep" if args.round_to is None else f"prune_sweep_round{args.round_to}"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps([{k: str(v) if k == "onnx" else v for k, v in r.items()} for r in rows], indent=2))
    print(text)


if __name__ == "__main__":
    main()
