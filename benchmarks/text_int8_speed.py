"""INT8 against FP32 latency of a BERT-style encoder at sequence 128, batch 1: ONNX Runtime and OpenVINO.

Models (accuracy is not the point here, speed is): the MiniLM-sized encoder (hf:all-minilm-l6-v2's weights, 6
layers, hidden 384, 12 heads, with an untrained 2-class head) and a 2-layer student of the same width (zoo:bert,
FFN 1536, initialised from it). Per model, all from one FP32 PyTorch model:

  fp32              ``edgekd.onnx_export.export`` (opset 18, batch 1, sequence axis dynamic) + onnxslim
  int8 edgekd       edgekd's PT2E path: ``edgekd.quantize.prepare(model, spec, observer="minmax")``, calibrated on
                    real tokenized Rotten Tomatoes training texts, ``converted(fold_quantize=True)`` exported to QDQ
                    ONNX the same way (the scales every edgekd INT8 artifact is built from); with the transformer
                    scheme (auto for these models) ONNX Runtime runs it with uint8 activations, as edgekd's
                    onnxruntime backend builds it
  int8 ORT dynamic  reference: ONNX Runtime's own ``quantize_dynamic`` (QInt8 weights) of the FP32 ONNX, ORT only

each run in ONNX Runtime (``edgekd.ondevice.runtimes.load("onnxruntime", ..., {"threads": 1})``) and OpenVINO
(``load("openvino", ..., {"threads": 1, "streams": 1, "inference_precision": "f32"})``, the IR from
``ov.convert_model`` reshaped to a static [1, 128] so ``benchmark_app`` takes it too).

Timing: one loop for every artifact (artifact_speed.py's ``Timed``: ``Model.bind`` on a pre-staged input, one real
test text right-padded to 128 tokens), warm-up by time, then interleaved rounds (order reversed every round); the
INT8/FP32 speed-up is the median over rounds of (FP32 round p50 / INT8 round p50) in the same runtime. Cross-check:
OpenVINO's ``benchmark_app`` on the two IRs, runs alternated. Agreement: top-1 of each artifact against the FP32
PyTorch model on --agreement real test texts (batch 1 each, padded to 128).

    .venv/bin/python benchmarks/text_int8_speed.py [--threads 1] [--rounds 10] [--runs 50]
    .venv/bin/python benchmarks/text_int8_speed.py --quick     # tiny hf BERT, few runs

Writes text_int8_speed.md and .json to --out (text_int8_speed_quick.* with --quick); artifacts go to --workdir.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from artifact_speed import Timed, first_error, interleaved, version  # noqa: E402
from common import (  # noqa: E402
    bench_parser, command_line, machine_info, markdown_table, parse_bench_args, results_stem, write_results,
)
from native_tools import VENV_BIN, benchmark_app  # noqa: E402
from text_distill import QUICK_FFN, QUICK_HEADS, QUICK_HIDDEN, quick_text_inputs, sentiment_config  # noqa: E402

ANCHOR = 3.8  # the often-quoted INT8 DistilBERT speed-up on CPU
PRECISIONS = {"fp32": "fp32", "int8": "int8 (edgekd PT2E QDQ)", "dynamic": "int8 (ORT quantize_dynamic, reference)"}
RUNTIMES = {"onnxruntime": "ONNX Runtime CPU", "openvino": "OpenVINO CPU"}


# ---------------------------------------------------------------- data and models


def text_context(quick: bool, workdir: Path):
    """A StageContext over examples/sentiment.yaml's data and teacher (--quick: the tiny hf BERT and CSV), for its
    DataBundle (input spec, tokenized texts) and its model loading."""
    from edgekd.config import parse_config
    from edgekd.context import StageContext

    if quick:
        hf, reviews = quick_text_inputs(workdir / "inputs")
        cfg = {"name": "text-int8-speed", "data": {"source": f"text:{reviews}", "text_column": "review",
                                                   "label_column": "sentiment", "max_length": 128},
               "teacher": {"model": f"hf:{hf}"}}
    else:
        example = sentiment_config()
        cfg = {"name": "text-int8-speed", "data": example["data"],
               "teacher": {"model": example["teacher"]["model"], "kwargs": example["teacher"].get("kwargs", {})}}
    return StageContext(config=parse_config(cfg, base_dir=ROOT), run_dir=workdir / "context")


def build_models(ctx, quick: bool) -> dict[str, torch.nn.Module]:
    """The hf encoder with a fresh 2-class head, and a 2-layer zoo:bert of its width initialised from it."""
    from edgekd.models.bert import init_from_teacher
    from edgekd.records import ModelRef

    member = ctx.config.teacher.members[0]
    torch.manual_seed(0)
    encoder = ctx.load_model(ModelRef(model=member.model, kwargs=member.kwargs), key="teacher").eval()
    width = ({"hidden": QUICK_HIDDEN, "heads": QUICK_HEADS, "ffn": QUICK_FFN} if quick
             else {"hidden": 384, "heads": 12, "ffn": 1536, "pooling": "mean"})
    student = ctx.load_model(ModelRef(model="zoo:bert", kwargs={"layers": 2, **width}), key="student")
    init_from_teacher(student, encoder)
    name = f"{encoder.num_layers}L h{encoder.hidden_size} ({member.model.split(':', 1)[1].rsplit('/', 1)[-1]})"
    return {name: encoder, f"2L h{student.hidden_size} student": student.eval()}


# ---------------------------------------------------------------- artifacts


def export_onnx(model: torch.nn.Module, spec, path: Path) -> Path:
    from edgekd import onnx_export as ox

    ox.export(model, spec, path, opset=18, dynamic_batch=False)
    ox.simplify(path)
    return path


def static_ir(onnx_path: Path, sequence: int) -> Path:
    """OpenVINO IR at a static [1, sequence] (benchmark_app needs one); FP32 weights kept as they are."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.reshape({model.input(0).get_any_name(): ov.PartialShape([1, sequence])})
    xml = onnx_path.with_suffix(".xml")
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def build_artifacts(model: torch.nn.Module, spec, calib: torch.Tensor, sequence: int, work: Path) -> dict[str, Any]:
    """runtime/precision -> file (or the error that stopped it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgekd.backends.onnxruntime.backend import as_uint8
    from edgekd.quantize import prepare

    work.mkdir(parents=True, exist_ok=True)
    onnx: dict[str, Any] = {"fp32": export_onnx(model, spec, work / "fp32.onnx")}
    try:
        student = prepare(model, spec, observer="minmax")
        student.calibrate(calib, batch_size=16)
        student.freeze_observers()
        student.eval()
        onnx["int8"] = export_onnx(student.converted(fold_quantize=True), spec, work / "int8_qdq.onnx")
    except Exception as error:
        traceback.print_exc()
        onnx["int8"] = first_error(error)
    paths: dict[str, Any] = {f"onnxruntime/{k}": v for k, v in onnx.items()}
    if isinstance(onnx["int8"], Path) and student.scheme == "transformer":
        # as edgekd's onnxruntime backend builds it: activations re-encoded as uint8 (exact), which ORT needs to
        # fuse every INT8 linear on x86
        paths["onnxruntime/int8"] = as_uint8(onnx["int8"], work / "int8_qdq_uint8_activations.onnx")
    try:
        quantize_dynamic(str(onnx["fp32"]), str(work / "ort_dynamic_int8.onnx"), weight_type=QuantType.QInt8)
        onnx["dynamic"] = work / "ort_dynamic_int8.onnx"
    except Exception as error:
        traceback.print_exc()
        onnx["dynamic"] = first_error(error)
    paths["onnxruntime/dynamic"] = onnx["dynamic"]
    for precision in ("fp32", "int8"):
        source = onnx[precision]
        try:
            paths[f"openvino/{precision}"] = static_ir(source, sequence) if isinstance(source, Path) else source
        except Exception as error:
            traceback.print_exc()
            paths[f"openvino/{precision}"] = first_error(error)
    return paths


def load_runtime(key: str, path: Path, threads: int):
    from edgekd.ondevice.runtimes import load

    if key.startswith("openvino/"):
        return load("openvino", path, {"threads": threads, "streams": 1, "inference_precision": "f32"})
    return load("onnxruntime", path, {"threads": threads})


# ---------------------------------------------------------------- one model


def measure(name: str, model, ctx, args, work: Path) -> dict[str, Any]:
    from edgekd.inputs import fit_length

    data, spec, seq = ctx.data, ctx.data.input, args.sequence
    g = torch.Generator().manual_seed(args.seed)
    calib = data.x_train[torch.randperm(len(data.x_train), generator=g)[: args.calib]]
    texts = fit_length(data.x_test[: args.agreement], spec, seq).numpy().astype(np.int64)
    x = texts[:1]  # one real test text right-padded to the sequence length (padding is computed, then masked)
    print(f"[{name}] building ...", flush=True)
    paths = build_artifacts(model, spec, calib, seq, work)
    with torch.no_grad():
        reference = model(torch.from_numpy(texts)).argmax(1).numpy()
    entries, agreement, info = [], {}, {}
    for key, path in paths.items():
        if not isinstance(path, Path):
            continue
        runner = load_runtime(key, path, args.threads)
        agreement[key] = float((runner.predict_batched(texts).argmax(1) == reference).mean())
        entries.append(Timed(key, runner.bind(x)))
        info[key] = {"path": str(path), "bytes": path.stat().st_size + (path.with_suffix(".bin").stat().st_size
                                                                       if path.suffix == ".xml" else 0)}
        if key.startswith("openvino/"):
            info[key]["runtime_precision_per_layer"] = runner.operator_report().get("runtime_precision_per_layer")
    section: dict[str, Any] = {"paths": {k: str(v) for k, v in paths.items()}, "agreement": agreement,
                               "artifacts": info}
    if "onnxruntime/fp32" not in agreement:
        return section
    print(f"[{name}] timing {len(entries)} artifacts ...", flush=True)
    loop = interleaved(entries, "onnxruntime/fp32", args.rounds, args.runs, args.warmup, args.rewarm)
    summaries, speedups = loop["summaries"], {}
    for key in summaries:
        runtime, precision = key.split("/")
        base = summaries.get(f"{runtime}/fp32")
        if precision == "fp32" or base is None:
            continue
        per_round = [f / q for f, q in zip(base["round_p50_ms"], summaries[key]["round_p50_ms"])]
        speedups[key] = {"median_of_rounds": statistics.median(per_round), "per_round": per_round,
                         "ratio_of_p50s": base["p50_ms"] / summaries[key]["p50_ms"]}
    section.update(loop=loop, speedups=speedups, tool=cross_check(paths, args))
    return section


def cross_check(paths: dict[str, Any], args) -> dict[str, Any]:
    """benchmark_app on the FP32 and INT8 IRs, alternated; medians of its medians and the paired speed-up."""
    ir = {k: paths.get(f"openvino/{k}") for k in ("fp32", "int8")}
    if not (VENV_BIN / "benchmark_app").exists():
        return {"error": f"{VENV_BIN / 'benchmark_app'} not found"}
    if not all(isinstance(p, Path) for p in ir.values()):
        return {"error": "an OpenVINO IR was not built"}
    repeats = []
    for r in range(args.tool_repeats):
        order = ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")
        repeats.append({k: benchmark_app(ir[k], args.threads, args.tool_seconds) for k in order})
    out: dict[str, Any] = {"repeats": repeats}
    for k in ir:
        values = [r[k]["median_ms"] for r in repeats if "median_ms" in r[k]]
        out[k] = statistics.median(values) if values else None
        if not values:
            out["error"] = repeats[0][k].get("error")
    paired = [r["fp32"]["median_ms"] / r["int8"]["median_ms"] for r in repeats
              if "median_ms" in r["fp32"] and "median_ms" in r["int8"]]
    if paired:
        out["speedup"] = statistics.median(paired)
    return out


# ---------------------------------------------------------------- report


def write_report(raw: dict[str, Any], info: dict[str, Any], args) -> str:
    rows, notes = [], []
    for model, section in raw["models"].items():
        summaries = section.get("loop", {}).get("summaries", {})
        tool = section.get("tool", {})
        for key, path in section["paths"].items():
            runtime, precision = key.split("/")
            label = [model, RUNTIMES[runtime], PRECISIONS[precision]]
            if key not in summaries:
                rows.append([*label, "-", "-", "-", "-", "-"])
                notes.append(f"- {model}, {RUNTIMES[runtime]} {PRECISIONS[precision]}: not measured: {path}")
                continue
            s = section["speedups"].get(key)
            speed = f"{s['median_of_rounds']:.2f}x" if s else "-"
            spread = f"{min(s['per_round']):.2f}–{max(s['per_round']):.2f}" if s else "-"
            bench = "-"
            if runtime == "openvino" and tool.get(precision) is not None:
                bench = f"{tool[precision]:.2f}"
            rows.append([*label, f"{summaries[key]['p50_ms']:.2f}", speed, spread,
                         f"{100 * section['agreement'][key]:.1f}%", bench])
        if tool.get("speedup"):
            notes.append(f"- {model}: benchmark_app INT8/FP32 speed-up {tool['speedup']:.2f}x "
                         f"(median of {len(tool['repeats'])} paired repeats)")
        elif tool.get("error"):
            notes.append(f"- {model}: benchmark_app cross-check not run: {tool['error']}")
        for key, art in section.get("artifacts", {}).items():
            if art.get("runtime_precision_per_layer"):
                notes.append(f"- {model}, `{key}` layers by OpenVINO runtime precision: {art['runtime_precision_per_layer']}")
    v = info["versions"]
    md = [
        "# Text INT8 speed: INT8 against FP32 at sequence 128, batch 1, ONNX Runtime and OpenVINO",
        "",
        f"- **date**: {info['date']}",
        f"- **CPU**: {info['cpu']} ({info['logical_cpus']} logical CPUs; 1-min load average at start "
        f"{info['load_average_1min_at_start']})",
        f"- **inference threads**: {args.threads} (ORT intra_op_num_threads; OpenVINO INFERENCE_NUM_THREADS, "
        "NUM_STREAMS 1, INFERENCE_PRECISION_HINT f32, PERFORMANCE_HINT latency)",
        "- **versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; edgekd {info['edgekd']}",
        f"- **input**: batch 1 x {args.sequence} int64 token ids: one real test text right-padded with the pad id "
        "(every position is computed; the model masks padding in attention)",
        f"- **models**: {'; '.join(raw['models'])} (weights untrained where they are new: speed, not accuracy)",
        f"- **calibration**: {args.calib} tokenized training texts, minmax observers",
        f"- **loop**: warm-up {args.warmup:g} s each, then {args.rounds} interleaved rounds (order reversed every "
        f"round) of {args.runs} timed calls, each after a {args.rewarm:g} s re-warm; p50 = median of all samples",
        f"- **command**: {command_line('text_int8_speed.py', raw['argv'])}",
        "",
        markdown_table(
            ["model", "runtime", "precision", "p50 ms", "INT8/FP32 speed-up", "per-round range",
             "top-1 agreement vs FP32", "benchmark_app p50 ms"],
            rows, align=["l", "l", "l", "r", "r", "r", "r", "r"],
        ),
        "",
        "Notes:",
        f"- Anchor: INT8 DistilBERT is often quoted at {ANCHOR}x faster than FP32 on CPU; the speed-up column is this "
        f"machine's answer at batch 1, sequence {args.sequence}, {args.threads} thread(s).",
        "- INT8/FP32 speed-up: median over rounds of (same runtime's FP32 round p50 / INT8 round p50); > 1 is faster.",
        "- Agreement: top-1 of each artifact against the FP32 PyTorch model on "
        f"{args.agreement} real test texts, one at a time, padded to {args.sequence}.",
        "- OpenVINO IRs: `ov.convert_model` of the same ONNX files (as edgekd's openvino backend builds them), reshaped "
        f"to a static [1, {args.sequence}] so that benchmark_app runs them; ORT runs the ONNX files with the sequence "
        "axis dynamic. ORT's dynamic quantization is the reference row in ORT only (not converted for OpenVINO).",
        *notes,
        "",
        f"Raw per-round numbers: {results_stem('text_int8_speed', args.quick)}.json beside this file.",
    ]
    text = "\n".join(md) + "\n"
    write_results(results_stem("text_int8_speed", args.quick), text, raw, args.out)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, workdir=Path("/tmp/edgekd-text-int8-speed"))
    parser.add_argument("--threads", type=int, default=1, help="inference threads for both runtimes")
    parser.add_argument("--sequence", type=int, default=128, help="tokens per input (at most data.max_length, 128)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per artifact per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per artifact before round 1")
    parser.add_argument("--rewarm", type=float, default=0.3, help="seconds of warm-up before each round")
    parser.add_argument("--calib", type=int, default=128, help="calibration texts")
    parser.add_argument("--agreement", type=int, default=200, help="test texts for top-1 agreement")
    parser.add_argument("--tool-seconds", type=int, default=10, help="benchmark_app -t")
    parser.add_argument("--tool-repeats", type=int, default=4, help="alternated benchmark_app runs per IR")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_bench_args(parser, argv, quick={"rounds": 2, "runs": 10, "warmup": 0.2, "rewarm": 0.05, "calib": 16,
                                                 "agreement": 20, "tool_seconds": 1, "tool_repeats": 1})
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, args.threads))
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    info.update(threads=args.threads, versions={p: version(p) for p in ("onnxruntime", "openvino", "torch", "torchao",
                                                                          "onnx", "onnxslim")})
    started = time.perf_counter()
    ctx = text_context(args.quick, args.workdir)
    if args.sequence > ctx.data.input.max_sizes.get("sequence", args.sequence):
        parser.error(f"--sequence {args.sequence} exceeds data.max_length {ctx.data.input.max_sizes['sequence']}")
    raw: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                           "argv": argv if argv is not None else sys.argv[1:], "models": {}}
    for name, model in build_models(ctx, args.quick).items():
        folder = args.workdir / name.split(" ")[0]
        raw["models"][name] = measure(name, model, ctx, args, folder)
    raw["seconds"] = time.perf_counter() - started
    print(write_report(raw, info, args))
    print(f"wrote {args.out / results_stem('text_int8_speed', args.quick)}.md ({raw['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
