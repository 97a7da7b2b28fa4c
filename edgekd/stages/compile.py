"""Stage ``compile``: one artifact per target, backend and precision, each checked in its own runtime.

Every row ends ok, failed (with the converter's or the check's message), or
not run here (with the reason); one failing artifact never loses the others.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from rich.console import Console

from ..backends import BACKENDS, CompileSources, NotRunnable
from ..metrics import evaluate_logits, predict
from ..ondevice.backend_info import artifact_files
from ..parity import compare
from ..runlog import vendor_output
from ..records import CompiledArtifact, CompileRecord, ExportRecord, QuantizedRecord, StudentRecord
from ..targets import load_target
from . import float_layers
from .base import STAGES, Stage, StageContext

if TYPE_CHECKING:
    from ..mixed_precision import Budget

OK, FAILED, NOT_RUN = "ok", "failed", "not run here"
STUDENT, QUANTIZED, EXPORTED = "prune", "quantize", "export"


def digest(paths: list[Path]) -> tuple[int, str]:
    """Size and sha256 of an artifact's files (``artifact_files``), a package directory's (.mlpackage) file by file."""
    files = [f for path in paths for f in (sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])]
    sha = hashlib.sha256()
    for f in files:
        sha.update(f.read_bytes())
    return sum(f.stat().st_size for f in files), sha.hexdigest()


def int8_limit(config) -> float:
    """INT8 tolerance in output steps: compile's own, else the export's (one tolerance unless set apart)."""
    return config.compile.int8_atol_steps if config.compile.int8_atol_steps is not None else config.export.int8_atol_steps


def first_lines(error: BaseException, limit: int = 3) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: " + " | ".join(line.strip() for line in text.splitlines()[:limit] if line.strip())


@STAGES.register("compile")
class CompileStage(Stage):
    name = "compile"
    record_type = CompileRecord
    requires = ("teacher", STUDENT, QUANTIZED, EXPORTED)
    summary = "build and check one artifact per target, backend and precision"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        targets = [load_target(t, ctx.config.base_dir, key=f"targets[{i}]") for i, t in enumerate(ctx.config.targets)]
        backends = sorted({a.backend for t in targets for a in t.artifacts if a.backend in BACKENDS})
        # A new converter or runtime version (or one installed since) re-runs the stage.
        toolchains = {b: BACKENDS.get(b)().toolchain_version() or BACKENDS.get(b)().unavailable() for b in backends}
        # Only what shapes the artifacts: how a device is reached or its power model re-runs profile, not this.
        artifacts = [{"name": t.name, "artifacts": [a.model_dump(mode="json") for a in t.artifacts]} for t in targets]
        return {"compile": ctx.config.section("compile"), "int8_atol_steps": int8_limit(ctx.config),
                **({"sequence_length": ctx.sequence_length()} if ctx.data.is_text else {}),
                "targets": artifacts, "toolchains": toolchains}

    def run(self, ctx: StageContext, out_dir: Path) -> CompileRecord:
        from .. import onnx_export as ox  # onnx and onnxruntime: imported when compiling, not to plan a run

        cfg, data = ctx.config.compile, ctx.data
        terminal = Console(file=sys.stderr)  # inside vendor_output sys.stderr is the run's log
        export, quant = ctx.record(EXPORTED, ExportRecord).artifacts, ctx.record(QUANTIZED, QuantizedRecord)
        student = ctx.record(STUDENT, StudentRecord).model
        from ..quantize import load_quantized  # torchao: imported when compiling, not to plan a run

        sources = CompileSources(
            input=data.input, sequence=ctx.sequence_length(),
            fp32_onnx=ctx.absolute(export["fp32"].path),
            int8_onnx=ctx.absolute(export["int8"].path) if "int8" in export else None,
            fp32_model=lambda: ctx.load_model(student, key="compile").eval(),
            int8_graph=(lambda: load_quantized(quant, ctx).converted(fold_quantize=False)) if "int8" in export else None,
            int8_graph_folded=(lambda: load_quantized(quant, ctx).converted(fold_quantize=True)) if "int8" in export else None,
            int8_scheme=quant.scheme,
            int8_learned_float=(lambda: load_quantized(quant, ctx).with_learned_weights(ctx.load_model(student, key="compile")))
            if "int8" in export else None,
        )
        # the FP32 student on the validation split, computed once if layers may return to float
        budget = functools.cache(lambda: validation_budget(ctx, sources.fp32_model, cfg.int8_max_accuracy_drop))
        x_check = ctx.artifact_inputs()[: cfg.parity_samples].numpy()
        references = {"fp32": predict(sources.fp32_model(), torch.from_numpy(x_check)).numpy()}
        tolerance = {"fp32": dict(atol=cfg.fp32_atol), "fp16": dict(atol=cfg.fp16_atol)}
        if sources.int8_onnx is not None:
            # the quantized graph itself (ORT's optimizations off), not one runtime's fused integer kernels
            references["int8"] = ox.run_session(ox.session(sources.int8_onnx, optimization="disable"), x_check)
            # whole steps of the output quantizer, as the export checked the QDQ model; SQNR for the transformer scheme
            tolerance["int8"] = (dict(min_sqnr_db=cfg.int8_min_sqnr_db) if sources.int8_scheme == "transformer"
                                 else dict(step=ox.output_scale(sources.int8_onnx), limit_steps=int8_limit(ctx.config)))
        for precision, floor in cfg.min_sqnr_db.model_dump(exclude_none=True).items():
            if precision in tolerance:
                tolerance[precision] = {**tolerance[precision], "min_sqnr_db": floor}

        rows: list[CompiledArtifact] = []
        for i, name in enumerate(ctx.config.targets):
            target = load_target(name, ctx.config.base_dir, key=f"targets[{i}]")
            for spec in target.artifacts:
                backend = BACKENDS.get(spec.backend, key=f"{target.source}: artifacts.backend")()
                for precision in spec.precisions:
                    row = CompiledArtifact(target=target.name, backend=spec.backend, precision=precision, options=spec.options)
                    rows.append(row)
                    with vendor_output():  # converters' progress bars and runtimes' logs go to the run's log
                        self._one(ctx, backend, sources, row, out_dir / target.name / spec.backend, references, tolerance,
                                  budget, terminal)
        return CompileRecord(artifacts=rows)

    def _one(self, ctx, backend, sources, row: CompiledArtifact, out_dir: Path, references, tolerance, budget, terminal) -> None:
        cfg, data = ctx.config.compile, ctx.data
        if row.precision not in backend.precisions:
            row.reason = f"{row.backend} has no precision {row.precision!r}; it offers {', '.join(backend.precisions)}"
            return
        reason = backend.unavailable()
        if reason:
            row.status, row.reason = NOT_RUN, reason
            return
        reference_key = "int8" if row.precision == "int8" else "fp32"
        if reference_key not in references:
            row.status, row.reason = NOT_RUN, "no INT8 model: the quantize stage ran with mode none"
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        row.toolchain = backend.toolchain_version()
        if row.precision == "int8":
            self._clear_float_layers(out_dir, row.precision)
        if row.precision == "int8" and cfg.int8_max_accuracy_drop is not None:
            try:
                sources, references = float_layers.choose(
                    ctx, backend, sources, row, out_dir, references, budget, first_lines=first_lines,
                    progress=lambda text: terminal.print(f"  {row.id}: {text}", highlight=False))
            except NotRunnable as why:  # the runtime that judges the layers is not here: neither is the artifact's
                row.status, row.reason = NOT_RUN, str(why)
                return
        try:
            started = time.perf_counter()
            path = backend.build(sources, row.precision, out_dir, dict(row.options))
            row.compile_seconds = time.perf_counter() - started
            row.path = ctx.relative(path)
            row.size_bytes, row.sha256 = digest(artifact_files(row.backend, path))
            row.inspect = backend.inspect(path)
        except Exception as error:  # a converter failure: keep its message, keep going
            log = out_dir / f"{row.precision}.error.txt"
            log.write_text("".join(traceback.format_exception(error)))
            # converters put the failing operator at the end of pages of text: say where the whole of it is
            row.reason = f"{first_lines(error)} (whole error: {ctx.relative(log)})"
            return
        try:
            runner = backend.load(path, dict(row.options))
        except NotRunnable as why:
            row.status, row.reason = NOT_RUN, str(why)
            return
        except Exception as error:
            row.reason = "load failed: " + first_lines(error)
            return
        if (backend.int8_from_onnx and row.float_layers is not None
                and row.float_layers.status in ("met", "not met", "not needed")):
            from ..mixed_precision import layer_aliases, quantized_layers

            # what the runtime made of it: a layer's integer kernel can need a quantized consumer (ONNX Runtime)
            # every INT8 layer of the export: the sensitivity pass named them all (the float ones have no Q/DQ now)
            layers = [s.layer for s in row.float_layers.sensitivity] or quantized_layers(sources.int8_onnx)
            try:
                row.float_layers.runtime = runner.layer_precisions(layer_aliases(sources.int8_onnx, layers))
            except Exception as error:  # a report, not a check: the artifact stands without it
                row.float_layers.reason += f" (which layers run INT8 is unknown: {first_lines(error)})"
        try:
            x_test = ctx.artifact_inputs().numpy()
            parity = compare(references[reference_key], runner.predict_batched(x_test[: cfg.parity_samples]),
                             min_top1_agreement=cfg.min_top1_agreement, **tolerance[row.precision])
            row.parity = parity
            scored = slice(0, cfg.accuracy_samples)  # the first N of the test split, as the profile stage draws them
            test = evaluate_logits(runner.predict_batched(x_test[scored]), data.y_test[scored], data.num_classes)
            row.accuracy, row.per_class_accuracy = test.accuracy, test.per_class_accuracy
            row.operators = runner.operator_report()
            row.status = OK if parity.ok else FAILED
            row.reason = "" if parity.ok else "parity: " + parity.describe()
        except Exception as error:
            row.reason = "run failed: " + first_lines(error)

    @staticmethod
    def _clear_float_layers(out_dir: Path, precision: str) -> None:
        """A previous run's layers in float (this run may choose none, or not look): nothing of it is published."""
        shutil.rmtree(out_dir / "all-int8", ignore_errors=True)
        shutil.rmtree(out_dir / f"{precision}.float-layers", ignore_errors=True)
        for stale in ("model_int8_float_layers.qdq.onnx", f"{precision}.float-layers.error.txt"):
            (out_dir / stale).unlink(missing_ok=True)

    def describe(self, record: CompileRecord) -> list[tuple[str, str]]:
        c = record.counts()
        return [("artifacts", f"{c[OK]} ok, {c[FAILED]} failed, {c[NOT_RUN]} not run here")]

    def tables(self, record: CompileRecord) -> list[Any]:
        return [artifact_table(record)]


def artifact_table(record: CompileRecord):
    """The end-of-run table: one row per artifact, like a benchmark table."""
    from rich.table import Table

    table = Table(title="compiled artifacts")
    numbers = ("size", "accuracy", "max |diff|", "SQNR dB", "top-1 agree", "compile")
    for column in ("target", "backend", "precision", "status", *numbers, "note"):
        table.add_column(column, justify="right" if column in numbers else "left")
    style = {OK: "green", FAILED: "red", NOT_RUN: "yellow"}
    for row in record.artifacts:
        parity = row.parity
        table.add_row(
            row.target, row.backend, row.precision,
            f"[{style[row.status]}]{row.status}[/]",
            f"{row.size_bytes / 1024:.0f} KiB" if row.size_bytes else "-",
            f"{row.accuracy:.2%}" if row.accuracy is not None else "-",
            f"{parity.max_abs_diff:.2g}" if parity else "-",
            parity.sqnr_text(unit=False) if parity else "-",
            f"{parity.top1_agreement:.1%}" if parity else "-",
            f"{row.compile_seconds:.1f}s" if row.compile_seconds is not None else "-",
            (row.reason or float_note(row))[:70],
        )
    return table



def float_note(row: CompiledArtifact) -> str:
    """The compile table's note on an INT8 artifact's layers returned to float."""
    fl = row.float_layers
    if fl is None:
        return ""
    if fl.status == "not supported":
        return f"all INT8: {row.backend} cannot return layers to float"
    if fl.status == "failed":
        return "returning layers to float failed (float_layers.reason); all-INT8"
    if fl.status == "not needed":
        return (f"all INT8: val {fl.int8_accuracy:.2%}, FP32 {fl.reference_accuracy:.2%}, drop allowed "
                f"{fl.max_accuracy_drop:.2%}; integer kernels {fl.runtime_int8()}")
    return (f"{len(fl.layers)} of {fl.quantized_layers} layers float ({', '.join(fl.names())}; {fl.status}): val "
            f"{fl.int8_accuracy:.2%} -> {fl.accuracy:.2%}; integer kernels {fl.runtime_int8()} (all-INT8: "
            f"{fl.runtime_int8('all_int8_runtime')})")


def validation_budget(ctx: StageContext, fp32_model: Callable[[], torch.nn.Module], max_drop: float) -> Budget:
    """The FP32 student's logits and accuracy on the validation split: what layers in float are judged against."""
    from ..mixed_precision import Budget

    data = ctx.data
    logits = predict(fp32_model(), ctx.artifact_inputs("val")).numpy()
    labels = data.y_val.numpy()
    accuracy = evaluate_logits(logits, labels, data.num_classes).accuracy
    return Budget(max_drop=max_drop, reference_accuracy=accuracy, reference_logits=logits,
                  labels=labels, num_classes=data.num_classes)
