"""Does edgekd's profiler agree with the vendors' own latency tools on the same artifacts?

For each OpenVINO IR and LiteRT flatbuffer: edgekd's p50 (the profile stage's own path:
``edgekd.ondevice.bench`` in a fresh process, warm-up >= 2 s, >= 1000 runs, one thread)
against OpenVINO ``benchmark_app`` (-hint latency, one stream, sync, f32) and
``litert-benchmark`` (one thread), measured in alternating rounds; the ratio edgekd / tool
is the median over rounds. Goal: 0.95 to 1.05.

Artifacts: the compiled MNIST student of a demo run (``--run``, default runs/mnist: run
``make demo`` first; skipped when absent), whose batch-1 latency is tens of microseconds
(so harness overhead shows), and a MobileNetV2-style student at 3x224x224 (milliseconds),
built here by the same backends.

    .venv/bin/python benchmarks/profiler_fidelity.py [--rounds 3] [--run runs/mnist]
    .venv/bin/python benchmarks/profiler_fidelity.py --quick   # 1 round of short timings, MobileNetV2 at 3x32x32, no demo run

Writes benchmarks/results/profiler_fidelity.md and .json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import (  # noqa: E402
    DEFAULT_WORKDIR, bench_parser, machine_info, markdown_table, parse_bench_args, results_stem, write_results,
)
from native_tools import benchmark_app, litert_benchmark  # noqa: E402

from edgekd.backends import BACKENDS, CompileSources  # noqa: E402
from edgekd.inputs import image_spec  # noqa: E402

GOAL = (0.95, 1.05)


def edgekd_p50(path: Path, backend: str, data: Path, options: dict[str, Any], timing: dict[str, Any]) -> float:
    """The profile stage's measurement, as a subprocess exactly like runners/local.py starts it (``timing``: runs,
    min_seconds and warmup_s)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([sys.executable, "-m", "edgekd.ondevice.bench", "--artifact", str(path), "--backend", backend,
                        "--data", str(data), "--options", json.dumps(options), "--out", str(out), "--meter", "none",
                        "--runs", str(timing["runs"]), "--min-seconds", str(timing["min_seconds"]),
                        "--warmup-s", str(timing["warmup_s"])], check=True, capture_output=True, timeout=600)
        result = json.loads(out.read_text())
        if result["status"] != "ok":
            raise RuntimeError(result)
        return result["latency_ms"]["p50"]


def mobilenet(size: int):
    """artifact_speed.py's MobileNetV2 (the same weights at 224): width 1.0, ImageNet strides, 10 classes, batch-norm
    statistics from 20 train-mode forwards on random data."""
    import torch

    from edgekd.models import create_model

    torch.manual_seed(0)
    model = create_model("mobilenetv2", num_classes=10, in_channels=3, width=1.0, small_input=False).train()
    with torch.no_grad():
        for _ in range(20):
            model(torch.randn(8, 3, size, size))
    return model.eval()


def mobilenet_artifacts(work: Path, size: int) -> tuple[dict[str, Path], Path]:
    """The MobileNetV2 at 3 x size x size, exported as the export stage does by default (opset 18, static batch 1,
    onnxslim) and built by edgekd's own backends."""
    from edgekd import onnx_export as ox

    shape = (3, size, size)
    model = mobilenet(size)
    fp32_onnx = work / "mbv2_fp32.onnx"
    ox.export(model, image_spec(shape), fp32_onnx, opset=18, dynamic_batch=False)
    ox.simplify(fp32_onnx)
    sources = CompileSources(input=image_spec(shape), fp32_onnx=fp32_onnx, int8_onnx=None, fp32_model=lambda: model, int8_graph=None)
    paths = {
        f"mobilenetv2-{size}/openvino/fp32": BACKENDS.get("openvino")().build(sources, "fp32", work / "ov", {}),
        f"mobilenetv2-{size}/litert/fp32": BACKENDS.get("litert")().build(sources, "fp32", work / "litert", {}),
    }
    data = work / "mbv2.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(8, *shape)).astype(np.float32), y=np.zeros(8, dtype=np.int64))
    return paths, data


def run_artifacts(run: Path | None) -> tuple[dict[str, Path], Path | None]:
    compile_json = run / "compile" / "stage.json" if run is not None else None
    if compile_json is None or not compile_json.is_file():
        return {}, None
    rows = json.loads(compile_json.read_text())["record"]["artifacts"]
    paths = {f"mnist/{r['backend']}/{r['precision']}": run / r["path"] for r in rows
             if r["status"] == "ok" and r["backend"] in ("openvino", "litert") and r["precision"] in ("fp32", "int8")}
    data = run / "profile" / "test.npz"
    return paths, data if data.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, workdir=DEFAULT_WORKDIR / "fidelity")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "mnist",
                        help="a demo run whose compiled artifacts are measured too (--quick: none unless given)")
    parser.add_argument("--size", type=int, default=224, help="MobileNetV2 input height and width")
    parser.add_argument("--runs", type=int, default=1000, help="edgekd's timed runs (at least) and litert-benchmark --num_runs")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="edgekd's timed seconds (at least)")
    parser.add_argument("--warmup", type=float, default=2.0, help="edgekd's warm-up seconds")
    parser.add_argument("--tool-seconds", type=int, default=10, help="benchmark_app -t")
    parser.add_argument("--tool-warmup-runs", type=int, default=200, help="litert-benchmark --warmup_runs")
    args = parse_bench_args(parser, argv, quick={"rounds": 1, "run": None, "size": 32, "runs": 50, "min_seconds": 0.2, "warmup": 0.2,
                                                 "tool_seconds": 1, "tool_warmup_runs": 10})
    args.workdir.mkdir(parents=True, exist_ok=True)
    threads = 1
    timing = {"runs": args.runs, "min_seconds": args.min_seconds, "warmup_s": args.warmup}
    artifacts, run_data = run_artifacts(args.run)
    datasets = {k: run_data for k in artifacts}
    mbv2, mbv2_data = mobilenet_artifacts(args.workdir, args.size)
    artifacts.update(mbv2)
    datasets.update({k: mbv2_data for k in mbv2})
    rows, raw = [], {}
    for name, path in artifacts.items():
        backend = name.split("/")[1]
        options = {"threads": threads, **({"streams": 1, "inference_precision": "f32"} if backend == "openvino" else {})}
        ratios, ours, theirs = [], [], []
        for _ in range(args.rounds):
            mine = edgekd_p50(path, backend, datasets[name], options, timing)
            if backend == "openvino":
                tool = benchmark_app(path, threads, args.tool_seconds)
                tool_p50 = tool.get("median_ms")
            else:
                tool = litert_benchmark(path, threads, args.runs, args.tool_warmup_runs, args.workdir / "lb.json")
                tool_p50 = tool.get("median_ms")
            if tool_p50 is None:
                raise RuntimeError(f"{name}: {tool.get('error')}")
            ours.append(mine)
            theirs.append(tool_p50)
            ratios.append(mine / tool_p50)
            print(f"{name}: edgekd p50 {mine:.4f} ms, tool {tool_p50:.4f} ms, ratio {mine / tool_p50:.3f}", flush=True)
        ratio = statistics.median(ratios)
        tool_name = "benchmark_app -hint latency" if backend == "openvino" else "litert-benchmark"
        within = GOAL[0] <= ratio <= GOAL[1]
        rows.append([name, tool_name, f"{statistics.median(ours):.4f}", f"{statistics.median(theirs):.4f}", f"{ratio:.3f}",
                     f"{min(ratios):.3f}-{max(ratios):.3f}", "yes" if within else "no"])
        raw[name] = {"edgekd_p50_ms": ours, "tool_p50_ms": theirs, "ratios": ratios, "tool": tool_name}
    info = machine_info()
    table = markdown_table(["artifact", "native tool", "edgekd p50 ms", "tool p50 ms", "ratio (median)", "range", "within 0.95-1.05"], rows)
    md = (f"# Profiler fidelity: edgekd p50 against the vendors' tools\n\n"
          f"- **machine**: {info}\n- rounds: {args.rounds}, one thread, batch 1, same artifact file in both tools\n"
          f"- edgekd: >= {args.runs} runs and >= {args.min_seconds:g} s after {args.warmup:g} s warm-up; benchmark_app -t "
          f"{args.tool_seconds}; litert-benchmark {args.runs} runs after {args.tool_warmup_runs} warm-up runs\n\n{table}\n")
    print(md)
    md_path, js_path = write_results(results_stem("profiler_fidelity", args.quick), md,
                                     {"rows": rows, "raw": raw, "machine": info}, args.out)
    print(f"wrote {md_path} and {js_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
