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

Writes benchmarks/results/profiler_fidelity.md and .json.
"""

from __future__ import annotations

import argparse
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

from common import machine_info, markdown_table, write_results  # noqa: E402
from native_tools import benchmark_app, litert_benchmark  # noqa: E402

from edgekd.backends import BACKENDS, CompileSources  # noqa: E402

GOAL = (0.95, 1.05)


def edgekd_p50(path: Path, backend: str, data: Path, options: dict[str, Any]) -> float:
    """The profile stage's measurement, as a subprocess exactly like runners/local.py starts it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([sys.executable, "-m", "edgekd.ondevice.bench", "--artifact", str(path), "--backend", backend,
                        "--data", str(data), "--options", json.dumps(options), "--out", str(out), "--meter", "none",
                        "--runs", "1000", "--min-seconds", "3", "--warmup-s", "2"], check=True, capture_output=True, timeout=600)
        result = json.loads(out.read_text())
        if result["status"] != "ok":
            raise RuntimeError(result)
        return result["latency_ms"]["p50"]


def mobilenet_artifacts(work: Path) -> tuple[dict[str, Path], Path]:
    """The MobileNetV2 of artifact_speed.py (same weights), built by edgekd's own backends."""
    from artifact_speed import SHAPE, build_model, export_onnx

    model = build_model(0)
    fp32_onnx = export_onnx(model, work / "mbv2_fp32.onnx")
    sources = CompileSources(input_shape=SHAPE, fp32_onnx=fp32_onnx, int8_onnx=None, fp32_model=lambda: model, int8_graph=None)
    paths = {
        "mobilenetv2-224/openvino/fp32": BACKENDS.get("openvino")().build(sources, "fp32", work / "ov", {}),
        "mobilenetv2-224/litert/fp32": BACKENDS.get("litert")().build(sources, "fp32", work / "litert", {}),
    }
    data = work / "mbv2.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(8, *SHAPE)).astype(np.float32), y=np.zeros(8, dtype=np.int64))
    return paths, data


def run_artifacts(run: Path) -> tuple[dict[str, Path], Path | None]:
    compile_json = run / "compile" / "stage.json"
    if not compile_json.is_file():
        return {}, None
    rows = json.loads(compile_json.read_text())["record"]["artifacts"]
    paths = {f"mnist/{r['backend']}/{r['precision']}": run / r["path"] for r in rows
             if r["status"] == "ok" and r["backend"] in ("openvino", "litert") and r["precision"] in ("fp32", "int8")}
    data = run / "profile" / "test.npz"
    return paths, data if data.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "mnist")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgekd-bench/fidelity"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    threads = 1
    artifacts, run_data = run_artifacts(args.run)
    datasets = {k: run_data for k in artifacts}
    mbv2, mbv2_data = mobilenet_artifacts(args.workdir)
    artifacts.update(mbv2)
    datasets.update({k: mbv2_data for k in mbv2})
    rows, raw = [], {}
    for name, path in artifacts.items():
        backend = name.split("/")[1]
        options = {"threads": threads, **({"streams": 1, "inference_precision": "f32"} if backend == "openvino" else {})}
        ratios, ours, theirs = [], [], []
        for _ in range(args.rounds):
            mine = edgekd_p50(path, backend, datasets[name], options)
            if backend == "openvino":
                tool = benchmark_app(path, threads, 10)
                tool_p50 = tool.get("median_ms")
            else:
                tool = litert_benchmark(path, threads, 1000, 200, args.workdir / "lb.json")
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
          f"- **machine**: {info}\n- rounds: {args.rounds}, one thread, batch 1, same artifact file in both tools\n\n{table}\n")
    print(md)
    write_results("profiler_fidelity", md, {"rows": rows, "raw": raw, "machine": info})


if __name__ == "__main__":
    main()
