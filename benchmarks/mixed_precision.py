"""Accuracy-aware mixed precision on MNIST-5k: a model full INT8 breaks, and the layers returned to float.

The student is a user's own model (tests/fixtures/outlier_net.py): a small CNN whose head reads, beside its 32
features, one input that always sits at 1000 (the "massive activations" of large transformers, Sun et al.
2024). One INT8 scale per tensor must cover 1000, so the head's other inputs round to zero. The example's
teacher (examples/mnist.yaml) is distilled into it, then quantized by PTQ and by QAD, and compiled for ONNX
Runtime and OpenVINO (layers fed float in the QDQ ONNX model) and LiteRT and ExecuTorch (in the PT2E graph) with
``compile.int8_max_accuracy_drop``. Per quantization mode and runtime the table
shows the validation accuracy (which chooses the layers) of FP32, all-INT8 and the chosen mix, the layers
returned to float, how many layers the runtime runs as integer kernels (from its own graph, where its API says:
ONNX Runtime and OpenVINO), the test accuracy
(which chose nothing) of the three, and their latency measured in one profile run (the all-INT8 artifact is
profiled beside the mixed one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from common import (RESULTS, STUDY_DISTILL, bench_data, bench_parser, command_line, example_config, header,
                    machine_info, markdown_table, parse_bench_args, results_stem, setup_environment, trained_teacher,
                    write_results)
from edgekd.records import FloatLayers

MODEL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "outlier_net.py"
PROFILE = {"warmup_s": 1.0, "runs": 1000, "min_seconds": 1.0, "native_tool": False, "energy": {"meter": "none"}}


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--max-drop", type=float, default=0.005, help="compile.int8_max_accuracy_drop")
    parser.add_argument("--modes", default="ptq,qad")
    parser.add_argument("--backends", default="onnxruntime,openvino,litert,executorch")
    args = parse_bench_args(parser, argv, {"modes": "ptq", "backends": "onnxruntime,litert"})
    backends = args.backends.split(",")
    setup_environment(args.workdir, None)
    work = args.workdir / "mixed_precision"
    work.mkdir(parents=True, exist_ok=True)
    _, _, teacher = trained_teacher(args.workdir, args.quick)

    import edgekd

    example = example_config()
    shutil.copy(MODEL, work / "outlier_net.py")
    options = {"openvino": {"threads": 1, "streams": 1, "inference_precision": "f32"}}
    (work / "cpu.yaml").write_text(yaml.safe_dump({"name": "cpu", "artifacts": [
        {"backend": b, "precisions": ["fp32", "int8"], "options": options.get(b, {"threads": 1})} for b in backends]}))
    rows, raw = [], {}
    for mode in args.modes.split(","):
        cfg = {"name": f"mixed-{mode}", "seed": 0, "data": bench_data(args.quick), "teacher": teacher,
               "student": {"model": "python:./outlier_net.py:OutlierNet"},
               "distill": {**STUDY_DISTILL, "train": {**STUDY_DISTILL["train"], "epochs": 4 if args.quick else 20}},
               "prune": {"enabled": False},
               "quantize": {"mode": mode, "calibration_size": 256,
                            **({"train": {**example["quantize"]["train"], "epochs": 1}} if args.quick else {})},
               # PyTorch's fake quantization and ONNX Runtime round 1000 x a weight apart by tens of output steps
               "export": {"int8_atol_steps": 60}, "compile": {"int8_max_accuracy_drop": args.max_drop},
               "targets": ["cpu.yaml"], "profile": PROFILE}
        config = work / f"mixed-{mode}.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # training stages come from the cache; the layers are chosen and every artifact timed again
        result = edgekd.run(config, work / f"run-{mode}", force="compile")
        artifacts = {a["id"]: a for a in result.report["artifacts"]}
        raw[mode] = artifacts
        for backend in backends:
            fp32, int8 = artifacts[f"cpu/{backend}/fp32"], artifacts[f"cpu/{backend}/int8"]
            fl = FloatLayers.model_validate(int8["float_layers"]) if int8.get("float_layers") else None
            cost = int8.get("float_layers_cost") or {}
            all_int8_latency = cost.get("all_int8_latency_ms") or int8["latency_ms"]  # no float layers: the same artifact
            # each layer by PyTorch module, with where its float weights came from
            chosen = ", ".join(f"{name} ({fl.weights.get(layer, '?')})" for layer, name in zip(fl.layers, fl.names())) if fl else ""
            rows.append([
                mode, backend, _pct(fl and fl.reference_accuracy), _pct(fl and fl.int8_accuracy),
                f"{len(fl.layers)} of {fl.quantized_layers}: {chosen or '-'}" if fl else "-",
                _pct(fl and fl.accuracy), fl.status if fl else "-",
                f"{fl.runtime_int8('all_int8_runtime')} / {fl.runtime_int8()}" if fl else "-",
                _pct(fp32["accuracy"]), _pct(cost.get("all_int8_accuracy", int8["accuracy"])), _pct(int8["accuracy"]),
                _ms(fp32["latency_ms"]["p95"]), _ms(all_int8_latency["p95"]), _ms(int8["latency_ms"]["p95"]),
                "-" if cost.get("p95_added_ms") is None else f"{cost['p95_added_ms']:+.4f}",
            ])
    table = markdown_table(
        ["quantize", "runtime", "val FP32", "val all-INT8", "layers returned to float", "val chosen", "budget",
         "integer kernels all-INT8 / chosen", "test FP32", "test all-INT8", "test chosen", "p95 ms FP32", "p95 ms all-INT8", "p95 ms chosen", "p95 added ms"],
        rows, ["l", "l", "r", "r", "l", "r", "l", "l", "r", "r", "r", "r", "r", "r", "r"])
    info = machine_info()
    extra = {"command": command_line("mixed_precision.py", argv), "student": "tests/fixtures/outlier_net.py (OutlierNet)",
             "budget": f"compile.int8_max_accuracy_drop {args.max_drop} (validation split, against the FP32 student)"}
    text = header("Accuracy-aware mixed precision: the layers returned to float", info, extra) + "\n" + table + "\n"
    print(text)
    write_results(results_stem("mixed_precision", args.quick), text, {"info": info, **extra, "artifacts": raw},
                  args.out if args.out else RESULTS)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
