"""Pruning ratio sweep on the MobileNetV2-style student: MACs, accuracy after recovery, ONNX Runtime latency.

One MobileNetV2 student is distilled once; each ratio prunes it (one step),
recovers it by distillation and exports FP32 ONNX, whose batch-1 latency is
measured in ONNX Runtime (1 thread, all ratios measured in this one process).
Writes benchmarks/results/prune_sweep.md and .json (prune_sweep_round<N>.* with --round-to N).

    .venv/bin/python benchmarks/prune_sweep.py [--ratios 0.2 0.3 0.4 0.5 0.6 0.7] [--round-to 8]
    .venv/bin/python benchmarks/prune_sweep.py --quick    # one ratio, 1 epoch each, builtin:digits, 50 timed runs
"""

from __future__ import annotations

import copy
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT, STUDY_DISTILL, bench_parser, command_line, example_config, header, machine_info, markdown_table,
    parse_bench_args, results_stem, setup_environment, teacher_run_config, write_results,
)


def p50_latency_ms(path: Path, input_shape, runs: int, warmup_s: float) -> float:
    from edgekd import onnx_export as ox

    sess = ox.session(path, threads=1)
    x = np.zeros((1, *input_shape), dtype=np.float32)
    name = sess.get_inputs()[0].name
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:  # warm up by time
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def sweep_config(distill_epochs: int, quick: bool) -> dict:
    cfg = example_config()
    teacher_run = teacher_run_config(quick)
    cfg["data"] = {**teacher_run["data"], "augment": False}
    cfg["teacher"] = teacher_run["teacher"]
    cfg["student"] = {"model": "zoo:mobilenetv2", "kwargs": {"width": 0.5}}
    cfg["distill"] = {**copy.deepcopy(STUDY_DISTILL), "train": {"epochs": distill_epochs, "lr": 0.01, "batch_size": 64}}
    cfg["quantize"] = {"mode": "none"}
    cfg["prune"] = {"enabled": False}
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, workdir=ROOT / "runs" / "bench-prune")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--distill-epochs", type=int, default=10)
    parser.add_argument("--recovery-epochs", type=int, default=3)
    parser.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of this")
    parser.add_argument("--runs", type=int, default=400, help="timed ONNX Runtime runs per ratio")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per ratio")
    args = parse_bench_args(parser, argv, quick={"ratios": [0.5], "distill_epochs": 1, "recovery_epochs": 1,
                                                 "runs": 50, "warmup": 0.1})

    setup_environment(args.workdir, None)
    import edgekd

    info = machine_info()
    started = time.perf_counter()
    cfg = sweep_config(args.distill_epochs, args.quick)
    rows = []
    base = edgekd.run(cfg, args.workdir, stages=["export"])
    input_shape = base["distill"].inputs[0].fixed_shape()[1:]  # (C, H, W) of the student's one input

    def keep(result, ratio: float) -> Path:
        # One run directory (teacher and student are distilled once); keep each ratio's ONNX file aside.
        kept = args.workdir / "sweep" / f"fp32_ratio{ratio}_round{args.round_to}.onnx"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.workdir / result["export"].artifacts["fp32"].path, kept)
        return kept

    rows.append({"ratio": 0.0, "macs": base["distill"].figures.macs, "params": base["distill"].figures.params,
                 "accuracy": base["export"].artifacts["fp32"].accuracy, "onnx": keep(base, 0.0)})
    for ratio in args.ratios:
        cfg["prune"] = {"ratio": ratio, "steps": 1, "round_to": args.round_to,
                        "recovery": {"epochs": args.recovery_epochs, "lr": 0.005, "batch_size": 64}}
        result = edgekd.run(cfg, args.workdir, stages=["export"])
        rows.append({"ratio": ratio, "macs": result["prune"].figures.macs, "params": result["prune"].figures.params,
                     "accuracy": result["export"].artifacts["fp32"].accuracy, "onnx": keep(result, ratio)})
    for row in rows:  # measured last, back to back, so every ratio sees the same machine state
        row["p50_ms"] = p50_latency_ms(row["onnx"], input_shape, args.runs, args.warmup)
    base_latency, base_macs = rows[0]["p50_ms"], rows[0]["macs"]
    table = markdown_table(
        ["ratio", "MACs", "params", "MACs vs unpruned", "accuracy", "ORT p50 (ms)", "speed-up"],
        [[f"{r['ratio']:.1f}", f"{r['macs']:,}", f"{r['params']:,}", f"{r['macs'] / base_macs:.2f}x", f"{r['accuracy']:.2%}",
          f"{r['p50_ms']:.3f}", f"{base_latency / r['p50_ms']:.2f}x"] for r in rows],
    )
    settings = {
        "data": f"{cfg['data']['source']}, pinned 0.7/0.1/0.2 split, augment off",
        "student": f"zoo:mobilenetv2 width 0.5, distilled {args.distill_epochs} epochs",
        "pruning": f"one step with L2 importance, round_to {args.round_to}, {args.recovery_epochs} epochs of recovery distillation",
        "latency": f"ONNX Runtime CPU, 1 thread, batch 1, p50 of {args.runs} runs after {args.warmup:g} s warm-up",
        "command": command_line("prune_sweep.py", argv),
        "total wall time": f"{time.perf_counter() - started:.0f} s",
    }
    markdown = "\n".join([header("Pruning sweep: MobileNetV2-style student (width 0.5)", info, settings), table, ""])
    stem = "prune_sweep" if args.round_to is None else f"prune_sweep_round{args.round_to}"
    raw = {"machine": info, "settings": settings, "rows": [{**r, "onnx": str(r["onnx"])} for r in rows]}
    md, js = write_results(results_stem(stem, args.quick), markdown, raw, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
