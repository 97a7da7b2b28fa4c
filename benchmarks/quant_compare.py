"""PTQ against QAD: accuracy of the INT8 QDQ ONNX model in ONNX Runtime, over seeds.

For each seed one FP32 student is distilled (teacher trained once and shared),
then quantized twice from that same student: calibration only (ptq) and
quantization-aware distillation (qad). Writes benchmarks/results/quant_compare.md and .json.

    .venv/bin/python benchmarks/quant_compare.py [--seeds 0 1 2] [--workdir runs/bench-quant]
    .venv/bin/python benchmarks/quant_compare.py --quick    # 1 seed, 1 epoch each, builtin:digits
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT, STUDY_DISTILL, bench_parser, command_line, example_config, header, machine_info, markdown_table,
    parse_bench_args, results_stem, setup_environment, teacher_run_config, write_results,
)

MODELS = ["fp32", "ptq", "qad"]


def base_config(distill_epochs: int, qad_epochs: int, quick: bool) -> dict:
    base = example_config()
    base["prune"] = {"enabled": False}
    teacher_run = teacher_run_config(quick)
    base["data"] = {**teacher_run["data"], "augment": False}  # teacher cache on: the comparison is about quantization
    base["teacher"] = teacher_run["teacher"]
    base["distill"] = copy.deepcopy(STUDY_DISTILL)
    base["distill"]["train"]["epochs"] = distill_epochs
    quantize = base["quantize"]
    quantize["train"] = {**quantize["train"], "epochs": qad_epochs}
    if quick:  # the shipped digits set; one epoch is ~20 steps: freeze observers and BN inside it, as a full run does
        quantize.update(calibration=str(ROOT / "calibration" / "digits-128"),
                        freeze_observers_after=10, freeze_batch_norm_after=15)
    return base


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, workdir=ROOT / "runs" / "bench-quant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--distill-epochs", type=int, default=20)
    parser.add_argument("--qad-epochs", type=int, default=example_config()["quantize"]["train"]["epochs"])
    args = parse_bench_args(parser, argv, quick={"seeds": [0], "distill_epochs": 1, "qad_epochs": 1})

    setup_environment(args.workdir, None)
    import edgekd

    info = machine_info()
    started = time.perf_counter()
    base = base_config(args.distill_epochs, args.qad_epochs, args.quick)
    teacher_weights = None
    accuracy: dict[str, list[float]] = {name: [] for name in MODELS}
    for seed in args.seeds:
        cfg = {**base, "seed": seed}
        if teacher_weights:
            cfg["teacher"] = {**base["teacher"], "weights": str(teacher_weights)}
        for mode in ("ptq", "qad"):
            cfg["quantize"] = {**base["quantize"], "mode": mode}
            result = edgekd.run(cfg, args.workdir / f"seed{seed}", stages=["export"])
            accuracy[mode].append(result["export"].artifacts["int8"].accuracy)
        accuracy["fp32"].append(result["export"].artifacts["fp32"].accuracy)
        teacher_weights = teacher_weights or (args.workdir / f"seed{seed}" / "teacher" / "member0.safetensors")

    rows = []
    for name, values in accuracy.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append([name, f"{statistics.mean(values):.2%}", f"{std:.2%}", ", ".join(f"{v:.2%}" for v in values)])
    gap = statistics.mean(accuracy["qad"]) - statistics.mean(accuracy["ptq"])
    settings = {
        "data": f"{base['data']['source']}, test split of the pinned 0.7/0.1/0.2 split, augment off",
        "student": "zoo:tiny_cnn", "seeds": args.seeds,
        "training": f"distill {args.distill_epochs} epochs, QAD {args.qad_epochs} epochs",
        "calibration": f"the shipped set {Path(base['quantize']['calibration']).name} (the same images for both)",
        "command": command_line("quant_compare.py", argv),
        "total wall time": f"{time.perf_counter() - started:.0f} s",
    }
    markdown = "\n".join([
        header("PTQ vs QAD: INT8 QDQ ONNX accuracy in ONNX Runtime", info, settings),
        markdown_table(["model", "mean accuracy", "std", "per seed"], rows, align=["l", "r", "r", "l"]),
        "", f"QAD minus PTQ: {gap:+.2%} (goal: QAD does not lose to PTQ).", "",
    ])
    md, js = write_results(results_stem("quant_compare", args.quick), markdown,
                           {"machine": info, "settings": settings, "accuracy": accuracy}, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
