"""Batch-1 latency of edgekd's INT8 artifacts against each toolchain's own INT8 recipe.

Model: the ImageNet-style MobileNetV2 student (``create_model("mobilenetv2", num_classes=10,
small_input=False)``) at 3x224x224, untrained weights with batch-norm statistics from ~20
train-mode forwards on random data. Both sides of each comparison get the same FP32 model
and the same calibration inputs.

(a) OpenVINO, CPU: edgekd's INT8 IR (Int8Quantizer PT2E, minmax observers -> QDQ ONNX ->
    the openvino backend's build) against ``nncf.quantize`` on the FP32 IR.
(b) LiteRT, XNNPACK: the litert backend's ``int8`` build (PT2E graph, fold_quantize=False)
    against litert-torch's PT2EQuantizer recipe (per-channel symmetric, PTQ).

(c) ExecuTorch, XNNPACK: the executorch backend's ``int8`` build (PT2E graph, fold_quantize=True)
    against ExecuTorch's own ``XNNPACKQuantizer`` PTQ recipe (per-channel symmetric), with edgekd's
    LiteRT INT8 .tflite from the same learned scales in the same loop for context. No cross-check
    tool: the executorch wheel ships no benchmark binary.

Timing: one loop for every artifact (time.perf_counter around one synchronous inference on
a pre-set input), warm-up >= 2 s by time, then interleaved rounds (order alternates per
round) of N timed runs; reported: median of all samples, and the median over rounds of the
per-round ratio edgekd / reference. Cross-checks: OpenVINO's ``benchmark_app`` and
``litert-benchmark`` from the venv, runs alternated between the two files.

    .venv/bin/python benchmarks/artifact_speed.py [--threads 1] [--rounds 10] [--runs 100] [--parts executorch]
    .venv/bin/python benchmarks/artifact_speed.py --quick --parts executorch   # a smoke run: few rounds

Writes artifact_speed.md and .json to --out (default benchmarks/results/; artifact_speed_quick.* with --quick,
so a smoke run never replaces a full one); artifacts go to --workdir.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import bench_parser, machine_info, markdown_table, parse_bench_args, results_stem, write_results  # noqa: E402
from native_tools import benchmark_app, litert_benchmark  # noqa: E402

import edgekd  # noqa: E402,F401
from edgekd import onnx_export as ox  # noqa: E402
from edgekd.models import create_model  # noqa: E402
from edgekd.inputs import image_spec  # noqa: E402

SHAPE = (3, 224, 224)
VENV_BIN = Path(sys.executable).parent
GOAL = 1.05


def first_error(error: BaseException, limit: int = 2) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()][:limit]
    return f"{type(error).__name__}: " + " | ".join(lines)


def version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version as v

    try:
        return v(name)
    except PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------- model and data


def build_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("mobilenetv2", num_classes=10, in_channels=3, width=1.0, small_input=False)
    model.train()
    with torch.no_grad():  # batch-norm running statistics from random data, so activations have sane ranges
        for _ in range(20):
            model(torch.randn(8, *SHAPE))
    return model.eval()


def calibration_inputs(n: int, seed: int) -> torch.Tensor:
    """Half Gaussian noise, half smooth structured images (upsampled low-res noise plus gradients)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n - n // 2, *SHAPE, generator=g)
    low = torch.randn(n // 2, 3, 7, 7, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=SHAPE[1:], mode="bilinear", align_corners=False)
    ramp = torch.linspace(-1, 1, SHAPE[2]).view(1, 1, 1, -1) * torch.rand(n // 2, 3, 1, 1, generator=g)
    return torch.cat([noise, 1.5 * smooth + ramp]).float()


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """As the export stage does with its defaults: opset 18, static batch 1, onnxslim."""
    ox.export(model, image_spec(SHAPE), path, opset=18, dynamic_batch=False)
    ox.simplify(path)
    return path


# ---------------------------------------------------------------- timing


class Timed:
    """One artifact: ``step()`` runs one synchronous batch-1 inference on a pre-set input."""

    def __init__(self, name: str, step: Callable[[], Any], info: dict[str, Any] | None = None) -> None:
        self.name, self.step, self.info = name, step, info or {}
        self.samples: list[list[float]] = []  # per round, milliseconds

    def warm(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.step()

    def round(self, runs: int, rewarm_s: float) -> None:
        self.warm(rewarm_s)
        step, out = self.step, []
        for _ in range(runs):
            t0 = time.perf_counter()
            step()
            out.append((time.perf_counter() - t0) * 1e3)
        self.samples.append(out)

    def summary(self) -> dict[str, Any]:
        flat = [t for r in self.samples for t in r]
        return {
            "p50_ms": statistics.median(flat),
            "p10_ms": float(np.percentile(flat, 10)),
            "p90_ms": float(np.percentile(flat, 90)),
            "mean_ms": statistics.fmean(flat),
            "round_p50_ms": [statistics.median(r) for r in self.samples],
            "n": len(flat),
        }


def interleaved(entries: list[Timed], reference: str, rounds: int, runs: int, warmup_s: float, rewarm_s: float) -> dict[str, Any]:
    """Warm every artifact, then ``rounds`` rounds of ``runs`` timed calls each, the order reversed every round."""
    for t in entries:
        t.warm(warmup_s)
    for r in range(rounds):
        for t in entries if r % 2 == 0 else entries[::-1]:
            t.round(runs, rewarm_s)
    summaries = {t.name: t.summary() for t in entries}
    ref = summaries[reference]
    ratios = {}
    for name, ours in summaries.items():
        if name == reference:
            continue
        per_round = [a / b for a, b in zip(ours["round_p50_ms"], ref["round_p50_ms"])]
        ratios[name] = {"ratio_p50": ours["p50_ms"] / ref["p50_ms"], "ratio_per_round": per_round,
                        "ratio_median_of_rounds": statistics.median(per_round)}
    return {"reference": reference, "summaries": summaries, "ratios": ratios}


# ---------------------------------------------------------------- OpenVINO


def ov_config(threads: int) -> dict:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.num_streams: 1,
        props.inference_num_threads: threads,
        hints.inference_precision: ov.Type.f32,
    }


def ov_timed(name: str, xml: Path, threads: int, x: np.ndarray) -> Timed:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", ov_config(threads))
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x)))
    precisions: dict[str, int] = {}
    layers: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if layer in ("Input", "Output", "Parameter", "Result", "Constant"):
            continue
        prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        precisions[prec] = precisions.get(prec, 0) + 1
        if layer == "Convolution" or layer.startswith("FullyConnected") or layer == "MatMul":
            layers[f"{layer}:{prec}"] = layers.get(f"{layer}:{prec}", 0) + 1
    info = {
        "path": str(xml),
        "bin_bytes": xml.with_suffix(".bin").stat().st_size,
        "compiled_properties": {
            "performance_mode": str(compiled.get_property(hints.performance_mode)),
            "num_streams": str(compiled.get_property(props.num_streams)),
            "inference_num_threads": compiled.get_property(props.inference_num_threads),
            "inference_precision": str(compiled.get_property(hints.inference_precision)),
        },
        "runtime_precision_per_layer": precisions,
        "conv_fc_layers_by_precision": layers,
    }
    return Timed(name, request.infer, info)


def build_openvino(model: torch.nn.Module, calib: torch.Tensor, work: Path) -> dict[str, Path]:
    import nncf
    import openvino as ov

    from edgekd.backends import BACKENDS, CompileSources
    from edgekd.quantize import prepare

    fp32_onnx = export_onnx(model, work / "student_fp32.onnx")
    student = prepare(model, image_spec(SHAPE), observer="minmax")
    student.calibrate(calib, batch_size=8)
    student.freeze_observers()
    student.eval()
    int8_onnx = export_onnx(student.converted(fold_quantize=True), work / "student_int8_qdq.onnx")
    sources = CompileSources(
        input=image_spec(SHAPE), fp32_onnx=fp32_onnx, int8_onnx=int8_onnx,
        fp32_model=lambda: model, int8_graph=lambda: student.converted(fold_quantize=False),
    )
    backend = BACKENDS.get("openvino")()
    out = work / "openvino"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"edgekd_int8": backend.build(sources, "int8", out, {}), "fp32": backend.build(sources, "fp32", out, {})}
    ov_fp32 = ov.convert_model(str(fp32_onnx))
    dataset = nncf.Dataset([np.ascontiguousarray(calib[i : i + 1].numpy()) for i in range(len(calib))])
    quantized = nncf.quantize(ov_fp32, dataset, subset_size=len(calib))
    paths["nncf_int8"] = out / "nncf_int8.xml"
    ov.save_model(quantized, str(paths["nncf_int8"]), compress_to_fp16=False)
    return paths


# ---------------------------------------------------------------- LiteRT


def litert_timed(name: str, path: Path, threads: int, x: np.ndarray) -> Timed:
    """``set_tensor`` + ``invoke`` on an input already in the model's input dtype (quantized once, untimed)."""
    from edgekd.backends.litert.runtime import LiteRtModel

    runner = LiteRtModel(path, {"threads": threads})  # for its interpreter and operator report
    interp, detail = runner.interpreter, runner.input
    if detail["dtype"] == np.float32:
        data = np.ascontiguousarray(x, dtype=np.float32)
    else:
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        data = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])
    data, idx = data.reshape(detail["shape"]), detail["index"]

    def step() -> None:
        interp.set_tensor(idx, data)
        interp.invoke()

    report = runner.operator_report()
    info = {"path": str(path), "bytes": path.stat().st_size, "input_dtype": np.dtype(detail["dtype"]).name,
            "output_dtype": np.dtype(runner.output["dtype"]).name,
            "ops": report["ops"], "delegate": report["delegate"], "delegate_partitions": report["delegate_partitions"],
            "delegated_nodes": f"{report['delegated_nodes']}/{report['total_nodes']}", "fallback_ops": report["fallback_op_counts"]}
    return Timed(name, step, info)


def litert_runner_timed(name: str, path: Path, threads: int, x: np.ndarray) -> Timed:
    """edgekd's LiteRtModel.predict: float32 in and out, int8 IO (de)quantized in numpy inside the call."""
    from edgekd.backends.litert.runtime import LiteRtModel

    runner = LiteRtModel(path, {"threads": threads})
    data = np.ascontiguousarray(x, dtype=np.float32)
    return Timed(name, lambda: runner.predict(data), {"path": str(path)})


def edgekd_sources(model: torch.nn.Module, calib: torch.Tensor, work: Path):
    """The compile sources edgekd's INT8 artifacts are built from: one calibrated student, its scales learned once."""
    from edgekd.backends import CompileSources
    from edgekd.quantize import prepare

    student = prepare(model, image_spec(SHAPE), observer="minmax")
    student.calibrate(calib, batch_size=8)
    student.freeze_observers()
    student.eval()
    return CompileSources(
        input=image_spec(SHAPE), fp32_onnx=work / "student_fp32.onnx", int8_onnx=work / "student_int8_qdq.onnx",
        fp32_model=lambda: model, int8_graph=lambda: student.converted(fold_quantize=False),
        int8_graph_folded=lambda: student.converted(fold_quantize=True),
    )


def reference_ptq(model: torch.nn.Module, quantizer, calib: torch.Tensor, *, fold_quantize: bool) -> torch.nn.Module:
    """A toolchain's own PT2E static PTQ recipe with ``quantizer``: export, prepare, calibrate, convert."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = prepare_pt2e(torch.export.export(model.eval(), (torch.zeros(1, *SHAPE),)).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calib)):  # batch 1: the graph was captured with a static batch of 1
            graph(calib[i : i + 1])
    return convert_pt2e(graph, fold_quantize=fold_quantize)


def build_litert(model: torch.nn.Module, calib: torch.Tensor, work: Path) -> dict[str, Any]:
    """Both .tflite files; a failure on either side is recorded as its error string."""
    out = work / "litert"
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {}
    try:
        from edgekd.backends import BACKENDS

        paths["edgekd_int8"] = BACKENDS.get("litert")().build(edgekd_sources(model, calib, work), "int8", out, {})
    except Exception as error:
        traceback.print_exc()
        paths["edgekd_int8"] = first_error(error)
    try:
        paths["litert_torch_int8"] = litert_torch_reference(model, calib, out / "litert_torch_pt2e_int8.tflite")
    except Exception as error:
        traceback.print_exc()
        paths["litert_torch_int8"] = first_error(error)
    return paths


def litert_torch_reference(model: torch.nn.Module, calib: torch.Tensor, path: Path) -> Path:
    """litert-torch's documented PT2E static PTQ recipe, per-channel symmetric."""
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    sample = (torch.zeros(1, *SHAPE),)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    graph = reference_ptq(model, quantizer, calib, fold_quantize=False)
    edge = litert_torch.convert(graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(path))
    return path


# ---------------------------------------------------------------- ExecuTorch


def executorch_timed(name: str, path: Path, threads: int, x: np.ndarray) -> Timed:
    """``Method.execute`` on a pre-made torch tensor (edgekd's ExecuTorchModel.bind), delegation from the build."""
    from edgekd.backends.executorch.runtime import ExecuTorchModel

    runner = ExecuTorchModel(path, {"threads": threads})
    report = runner.operator_report()
    info = {"path": str(path), "pte_bytes": path.stat().st_size, "delegate": report.get("delegate"),
            "delegate_partitions": report.get("delegate_partitions"),
            "delegated_nodes": f"{report.get('delegated_nodes')}/{report.get('total_nodes')}",
            "fallback_ops": report.get("fallback_op_counts")}
    return Timed(name, runner.bind(np.ascontiguousarray(x, dtype=np.float32)), info)


def build_executorch(model: torch.nn.Module, calib: torch.Tensor, work: Path) -> dict[str, Any]:
    """edgekd's INT8 .pte and .tflite from one set of learned scales, and ExecuTorch's own PTQ .pte."""
    out = work / "executorch"
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {}
    try:
        from edgekd.backends import BACKENDS

        sources = edgekd_sources(model, calib, work)
        paths["edgekd_int8"] = BACKENDS.get("executorch")().build(sources, "int8", out, {})
        paths["edgekd_litert_int8"] = BACKENDS.get("litert")().build(sources, "int8", out, {})
    except Exception as error:
        traceback.print_exc()
        paths.setdefault("edgekd_int8", first_error(error))
    try:
        paths["xnnpack_quantizer_int8"] = executorch_reference(model, calib, out / "xnnpack_quantizer_ptq_int8.pte")
    except Exception as error:
        traceback.print_exc()
        paths["xnnpack_quantizer_int8"] = first_error(error)
    return paths


def executorch_reference(model: torch.nn.Module, calib: torch.Tensor, path: Path) -> Path:
    """ExecuTorch's documented XNNPACK PTQ recipe: XNNPACKQuantizer (per-channel symmetric), lowered as edgekd lowers."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from executorch.exir import to_edge_transform_and_lower
    
    from edgekd.backends.executorch.backend import delegation_report
    from edgekd.backends.executorch.runtime import operators_path
    from edgekd.io import write_bytes, write_json

    sample = (torch.zeros(1, *SHAPE),)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = reference_ptq(model, quantizer, calib, fold_quantize=True)
    lowered = to_edge_transform_and_lower(torch.export.export(graph, sample), partitioner=[XnnpackPartitioner()])
    write_json(operators_path(path), delegation_report(lowered.exported_program().graph_module))
    write_bytes(path, lowered.to_executorch().buffer)
    return path


# ---------------------------------------------------------------- report


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def cross_check(pair: tuple[str, str], results: list[dict[str, dict]]) -> dict[str, Any]:
    """Median over alternated repeats of each tool's median, and the ratio of those medians."""
    out: dict[str, Any] = {"repeats": results}
    for name in pair:
        values = [r[name].get("median_ms") for r in results if "median_ms" in r.get(name, {})]
        errors = [r[name]["error"] for r in results if "error" in r.get(name, {})]
        out[name] = statistics.median(values) if values else None
        if errors:
            out[f"{name}_error"] = errors[0]
    paired = [r[pair[0]]["median_ms"] / r[pair[1]]["median_ms"] for r in results
              if "median_ms" in r.get(pair[0], {}) and "median_ms" in r.get(pair[1], {})]
    if paired:  # each repeat runs both files back to back: the paired ratio cancels most of the load drift
        out["ratio_per_repeat"] = paired
        out["ratio"] = statistics.median(paired)
        out["ratio_of_medians"] = out[pair[0]] / out[pair[1]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, workdir=Path("/tmp/edgekd-artifact-speed"))
    parser.add_argument("--threads", type=int, default=1, help="inference threads for every runtime (1 or 2)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per artifact per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per artifact before round 1")
    parser.add_argument("--rewarm", type=float, default=0.3, help="seconds of warm-up before each round")
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--tool-seconds", type=int, default=10, help="benchmark_app -t")
    parser.add_argument("--tool-runs", type=int, default=300, help="litert-benchmark --num_runs")
    parser.add_argument("--tool-repeats", type=int, default=4, help="alternated cross-check runs per file")
    parser.add_argument("--parts", nargs="+", default=["openvino", "litert", "executorch"], choices=["openvino", "litert", "executorch"])
    parser.add_argument("--seed", type=int, default=0)
    # --quick: 3 rounds of 20 runs, short warm-ups, one tool repeat
    args = parse_bench_args(parser, argv, quick={"rounds": 3, "runs": 20, "warmup": 0.5, "rewarm": 0.1, "tool_repeats": 1,
                                                 "tool_seconds": 2, "tool_runs": 50})

    logging.getLogger("nncf").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    info.update(threads=args.threads, versions={p: version(p) for p in (
        "openvino", "nncf", "ai-edge-litert", "litert-torch", "executorch", "torchao", "torch", "onnx", "onnxslim")})

    model = build_model(args.seed)
    calib = calibration_inputs(args.calib, args.seed + 1)
    x = calibration_inputs(2, args.seed + 2)[1:2].numpy()  # a structured image not in the calibration set
    raw: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "sections": {}}

    if "openvino" in args.parts:
        print("[openvino] building ...", flush=True)
        paths = build_openvino(model, calib, work)
        print("[openvino] timing ...", flush=True)
        entries = [ov_timed(k, paths[k], args.threads, x) for k in ("edgekd_int8", "nncf_int8", "fp32")]
        loop = interleaved(entries, "nncf_int8", args.rounds, args.runs, args.warmup, args.rewarm)
        tool = []
        for r in range(args.tool_repeats):
            order = ("edgekd_int8", "nncf_int8") if r % 2 == 0 else ("nncf_int8", "edgekd_int8")
            tool.append({k: benchmark_app(paths[k], args.threads, args.tool_seconds) for k in order})
        raw["sections"]["openvino"] = {
            "runtime": "OpenVINO CPU", "ours": "edgekd_int8", "reference": "nncf_int8",
            "labels": {"edgekd_int8": "edgekd INT8 IR", "nncf_int8": "nncf.quantize INT8 IR", "fp32": "FP32 IR (context)"},
            "loop": loop, "tool_name": "benchmark_app", "tool": cross_check(("edgekd_int8", "nncf_int8"), tool),
            "artifacts": {t.name: t.info for t in entries},
        }
        print(json.dumps(loop["ratios"], indent=1), flush=True)

    if "litert" in args.parts:
        print("[litert] building ...", flush=True)
        paths = build_litert(model, calib, work)
        section: dict[str, Any] = {
            "runtime": "LiteRT XNNPACK", "ours": "edgekd_int8", "reference": "litert_torch_int8",
            "labels": {"edgekd_int8": "edgekd INT8 .tflite", "litert_torch_int8": "litert-torch PT2E INT8 .tflite",
                       "edgekd_int8_runner": "edgekd INT8 via LiteRtModel.predict (numpy IO quantize, context)"},
            "build": {k: str(v) for k, v in paths.items()}, "tool_name": "litert-benchmark",
        }
        raw["sections"]["litert"] = section
        ok = {k: v for k, v in paths.items() if isinstance(v, Path)}
        entries = [litert_timed(k, v, args.threads, x) for k, v in ok.items()]
        if "edgekd_int8" in ok:
            entries.append(litert_runner_timed("edgekd_int8_runner", ok["edgekd_int8"], args.threads, x))
        section["artifacts"] = {t.name: t.info for t in entries}
        if len(ok) == 2:
            print("[litert] timing ...", flush=True)
            section["loop"] = interleaved(entries, "litert_torch_int8", args.rounds, args.runs, args.warmup, args.rewarm)
            tool = []
            for r in range(args.tool_repeats):
                order = ("edgekd_int8", "litert_torch_int8") if r % 2 == 0 else ("litert_torch_int8", "edgekd_int8")
                tool.append({k: litert_benchmark(ok[k], args.threads, args.tool_runs, 50, work / f"lb_{k}.json") for k in order})
            section["tool"] = cross_check(("edgekd_int8", "litert_torch_int8"), tool)
            print(json.dumps(section["loop"]["ratios"], indent=1), flush=True)

    if "executorch" in args.parts:
        print("[executorch] building ...", flush=True)
        paths = build_executorch(model, calib, work)
        section = {
            "runtime": "ExecuTorch XNNPACK", "ours": "edgekd_int8", "reference": "xnnpack_quantizer_int8",
            "labels": {"edgekd_int8": "edgekd INT8 .pte", "xnnpack_quantizer_int8": "XNNPACKQuantizer PTQ INT8 .pte",
                       "edgekd_litert_int8": "edgekd INT8 .tflite, LiteRT XNNPACK (same scales, context)"},
            "build": {k: str(v) for k, v in paths.items()},
            "tool_name": "none (the executorch wheel has no benchmark binary)", "tool": {},
        }
        raw["sections"]["executorch"] = section
        ok = {k: v for k, v in paths.items() if isinstance(v, Path)}
        entries = [executorch_timed(k, ok[k], args.threads, x) for k in ("edgekd_int8", "xnnpack_quantizer_int8") if k in ok]
        if "edgekd_litert_int8" in ok:
            entries.append(litert_timed("edgekd_litert_int8", ok["edgekd_litert_int8"], args.threads, x))
        section["artifacts"] = {t.name: t.info for t in entries}
        if "edgekd_int8" in ok and "xnnpack_quantizer_int8" in ok:
            print("[executorch] timing ...", flush=True)
            section["loop"] = interleaved(entries, "xnnpack_quantizer_int8", args.rounds, args.runs, args.warmup, args.rewarm)
            print(json.dumps(section["loop"]["ratios"], indent=1), flush=True)

    write_report(raw, info, args)
    return 0


def write_report(raw, info, args) -> None:
    table = []
    notes = []
    for section in raw["sections"].values():
        labels, ours, ref = section["labels"], section["ours"], section["reference"]
        loop = section.get("loop")
        if loop is None:  # a build failed: its error goes in the table instead of numbers
            cells = {k: (v if not v.endswith((".tflite", ".xml", ".pte")) else "built") for k, v in section["build"].items()}
            table.append([section["runtime"], f"{labels[ours]}: {cells.get(ours)}", f"{labels[ref]}: {cells.get(ref)}",
                          "-", "-", "-", "-", "-", "not measured"])
            continue
        s, r = loop["summaries"], loop["ratios"]
        tool = section["tool"]
        if tool.get("ratio"):
            tool_cell = (f"{fmt(tool[ours])} / {fmt(tool[ref])}; paired ratio {tool['ratio']:.3f} "
                         f"({min(tool['ratio_per_repeat']):.3f}-{max(tool['ratio_per_repeat']):.3f})")
        else:
            tool_cell = "; ".join(f"{k}: {v}" for k, v in tool.items() if k.endswith("_error"))
        ratio = r[ours]["ratio_median_of_rounds"]
        table.append([
            section["runtime"], labels[ours], labels[ref], fmt(s[ours]["p50_ms"]), fmt(s[ref]["p50_ms"]),
            f"{r[ours]['ratio_p50']:.3f}",
            f"{ratio:.3f} ({min(r[ours]['ratio_per_round']):.3f}-{max(r[ours]['ratio_per_round']):.3f})",
            f"{section['tool_name']}: {tool_cell}", f"{'meets' if ratio <= GOAL else 'misses'} (<= {GOAL})",
        ])
        for name in s:
            if name not in (ours, ref):
                extra = f", ratio to reference {r[name]['ratio_median_of_rounds']:.3f}" if name in r else ""
                notes.append(f"- {section['runtime']}, {labels[name]}: p50 {s[name]['p50_ms']:.2f} ms "
                             f"(p10 {s[name]['p10_ms']:.2f}, p90 {s[name]['p90_ms']:.2f}){extra}")
    details = []
    for section in raw["sections"].values():
        for name, art in section.get("artifacts", {}).items():
            if "pte_bytes" in art:
                details.append(f"- `{name}`: {art['pte_bytes'] / 1e6:.2f} MB; {art['delegate']} partitions "
                               f"{art['delegate_partitions']}, delegated nodes {art['delegated_nodes']}, fallback {art['fallback_ops'] or 'none'}")
            elif "compiled_properties" in art:
                details.append(f"- `{name}`: weights {art['bin_bytes'] / 1e6:.2f} MB; compiled as {art['compiled_properties']}; "
                               f"conv/FC layers by runtime precision {art['conv_fc_layers_by_precision']}")
            elif "ops" in art:
                details.append(f"- `{name}`: {art['bytes'] / 1e6:.2f} MB, input {art['input_dtype']}, output {art['output_dtype']}; "
                               f"{art['delegate']} partitions {art['delegate_partitions']}, delegated nodes {art['delegated_nodes']}, "
                               f"fallback {art['fallback_ops'] or 'none'}; ops {art['ops']}")
        tool = section.get("tool", {})
        for repeat in tool.get("repeats", [])[:1]:
            for name, result in repeat.items():
                if "compiled_properties" in result:
                    details.append(f"- {section['tool_name']} on `{name}` printed {result['compiled_properties']}")
    v = info["versions"]
    md = [
        "# INT8 artifact speed: edgekd against each toolchain's own INT8 recipe",
        "",
        f"- **date**: {info['date']}",
        f"- **CPU**: {info['cpu']} ({info['logical_cpus']} logical CPUs, shared with other jobs; 1-min load average at start "
        f"{info['load_average_1min_at_start']}), AVX-512 VNNI + BF16",
        f"- **inference threads**: {args.threads} everywhere (OpenVINO INFERENCE_NUM_THREADS, LiteRT num_threads)",
        "- **versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; edgekd {info['edgekd']}, python {info['python']}",
        "- **model**: edgekd MobileNetV2 (width 1.0, ImageNet strides, 10 classes), batch 1 x 3x224x224, untrained weights, "
        "batch-norm statistics from 20 train-mode forwards on random data",
        f"- **calibration**: the same {args.calib} inputs (half Gaussian noise, half smooth structured images) on both sides; "
        "edgekd: `prepare(model, image_spec((3,224,224)), observer=\"minmax\")` -> `calibrate` -> `freeze_observers`",
        "- **(a) OpenVINO** CPU plugin, PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1, INFERENCE_PRECISION_HINT=f32 (all read back "
        "from the compiled models below). edgekd: `converted(fold_quantize=True)` -> `onnx_export.export` (opset 18, static "
        "batch) + onnxslim, as the export stage does by default -> `BACKENDS[\"openvino\"].build(..., \"int8\")`. Reference: the FP32 "
        "ONNX from the same export -> `ov.convert_model` -> `nncf.quantize(model, nncf.Dataset(same inputs), subset_size=32)`, "
        "otherwise defaults (preset performance, fast bias correction).",
        "- **(b) LiteRT**: `ai_edge_litert` Interpreter, default XNNPACK delegate, timed `set_tensor` + `invoke` on an input already "
        "in the model's input dtype. edgekd: `BACKENDS[\"litert\"].build(..., \"int8\")` from `converted(fold_quantize=False)`. "
        "Reference: litert-torch `PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))`, "
        "`torch.export` -> torchao `prepare_pt2e` -> calibration -> `convert_pt2e(fold_quantize=False)` -> "
        "`litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))`.",
        "- **(c) ExecuTorch**: `executorch.runtime` with the XNNPACK delegate, timed `Method.execute` on a pre-made tensor. "
        "edgekd: `BACKENDS[\"executorch\"].build(..., \"int8\")` from `converted(fold_quantize=True)`; the LiteRT row beside it is "
        "edgekd's .tflite from the same calibrated student. Reference: `XNNPACKQuantizer().set_global("
        "get_symmetric_quantization_config(is_per_channel=True))`, torchao `prepare_pt2e` -> calibration -> `convert_pt2e` -> "
        "`to_edge_transform_and_lower(XnnpackPartitioner())`.",
        f"- **loop**: the same Python loop for every artifact: warm-up {args.warmup:g} s each, then {args.rounds} interleaved rounds "
        f"(order reversed every round) of {args.runs} timed batch-1 calls, each round after a {args.rewarm:g} s re-warm. "
        "p50 = median of all samples; per-round ratio = median over rounds of (edgekd round p50 / reference round p50), range in brackets.",
        f"- **cross-check**: OpenVINO `benchmark_app -hint latency -api sync -t {args.tool_seconds} -infer_precision f32` with "
        f"NUM_STREAMS=1, INFERENCE_NUM_THREADS={args.threads} via `-load_config` (benchmark_app refuses `-nstreams`/`-nthreads` "
        "together with `-hint latency`: \"fine tune options ... set -hint option to none\"); `litert-benchmark --num_threads "
        f"{args.threads} --num_runs {args.tool_runs} --warmup_runs 50` (ai-edge-litert's CompiledModel API, CPU); "
        f"{args.tool_repeats} repeats, each running both files back to back (order alternating); medians of the tool's medians, "
        "and the median over repeats of the paired ratio (range in brackets).",
        "",
        markdown_table(
            ["runtime", "edgekd", "reference", "edgekd p50 ms", "ref p50 ms", "ratio of p50s", "per-round ratio",
             "cross-check median ms edgekd / ref; paired ratio", "goal"],
            table, align=["l", "l", "l", "r", "r", "r", "r", "l", "l"],
        ),
        "",
        *notes,
        "",
        "Artifacts:",
        "",
        *details,
        "",
        f"Raw per-round numbers: {results_stem('artifact_speed', args.quick)}.json beside this file.",
    ]
    path_md, _ = write_results(results_stem("artifact_speed", args.quick), "\n".join(md) + "\n", raw, args.out)
    print("\n".join(md))
    print(f"wrote {path_md}")


if __name__ == "__main__":
    raise SystemExit(main())
