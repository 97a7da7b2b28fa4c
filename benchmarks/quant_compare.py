"""PTQ against QAD: accuracy of the INT8 QDQ ONNX model in ONNX Runtime, over seeds.

For each seed one FP32 student is distilled (teacher trained once and shared),
then quantized twice from that same student: calibration only (ptq) and
quantization-aware distillation (qad). Writes benchmarks/results/quant_compare.md.

    python benchmarks/quant_compare.py [--seeds 0 1 2] [--out runs/bench-quant]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
from pathlib import Path

import torch
import yaml

import edgekd

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-quant")
    parser.add_argument("--distill-epochs", type=int, default=20)
    args = parser.parse_args()

    base = yaml.safe_load((ROOT / "examples" / "mnist.yaml").read_text())
    base["prune"] = {"enabled": False}
    base["quantize"]["calibration"] = str(ROOT / "calibration" / "mnist5k-256")  # the YAML's path is relative to examples/
    base["data"]["augment"] = False  # teacher cache on: the comparison is about quantization, not the student
    base["distill"]["train"]["epochs"] = args.distill_epochs
    teacher_weights = None
    rows: dict[str, list[float]] = {"fp32": [], "ptq": [], "qad": []}
    for seed in args.seeds:
        cfg = {**base, "seed": seed}
        if teacher_weights:
            cfg["teacher"] = {**base["teacher"], "weights": str(teacher_weights)}
        for mode in ("ptq", "qad"):
            cfg["quantize"] = {**base["quantize"], "mode": mode}
            result = edgekd.run(cfg, args.out / f"seed{seed}", stages=["export"])
            rows[mode].append(result["export"].artifacts["int8"].accuracy)
        rows["fp32"].append(result["export"].artifacts["fp32"].accuracy)
        teacher_weights = teacher_weights or (args.out / f"seed{seed}" / "teacher" / "member0.safetensors")

    lines = [
        "# PTQ vs QAD: INT8 QDQ ONNX accuracy in ONNX Runtime",
        "",
        f"{datetime.date.today()}, {machine()}. MNIST-5k test split (1,000 images), tiny_cnn student, "
        f"seeds {args.seeds}, distill {args.distill_epochs} epochs, QAD {base['quantize']['train']['epochs']} epochs, "
        "calibration: the shipped set calibration/mnist5k-256 (the same 256 images for both).",
        "",
        "| model | mean accuracy | std | per seed |",
        "|---|---|---|---|",
    ]
    for name, values in rows.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {name} | {statistics.mean(values):.2%} | {std:.2%} | {', '.join(f'{v:.2%}' for v in values)} |")
    gap = statistics.mean(rows["qad"]) - statistics.mean(rows["ptq"])
    lines += ["", f"QAD minus PTQ: {gap:+.2%} (goal: QAD does not lose to PTQ)."]
    text = "\n".join(lines) + "\n"
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quant_compare.md").write_text(text)
    (out / "quant_compare.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
