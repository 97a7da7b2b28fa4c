"""The compile stage's accuracy-aware mixed precision (``compile.int8_max_accuracy_drop``) for one INT8 artifact.

``edgekd.mixed_precision.choose_float_layers`` picks the layers; how a choice is applied depends on what the
backend builds INT8 from:

- the QDQ ONNX model (ONNX Runtime, OpenVINO, TensorRT): the layers are fed float activations and weights
  there (``edgekd.mixed_precision``);
- the converted PT2E graph (LiteRT, ExecuTorch): the same, in the graph (``edgekd.quantize.float_layers``).
"""

from __future__ import annotations

import copy
import shutil
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..backends import CompileSources, NotRunnable
from ..metrics import predict as torch_predict
from ..records import CompiledArtifact, FloatLayers


@dataclass
class LayerSource:
    """The INT8 layers of one kind of INT8 source, and how to build sources with some of them in float."""

    layers: list[str]
    modules: dict[str, str]  # layer -> its PyTorch module, where known
    with_float: Callable[[list[str], Path], tuple[CompileSources, dict[str, str]]]  # sources, weights' origin per layer
    reference: Callable[[CompileSources, np.ndarray], np.ndarray]  # the mixed model's own output: parity's reference
    aliases: Callable[[list[str]], dict[str, list[str]]] | None = None  # names a runtime may give each layer


def onnx_layers(sources: CompileSources) -> LayerSource:
    from .. import onnx_export as ox
    from ..mixed_precision import layer_aliases, module_names, quantized_layers, with_float_layers

    layers = quantized_layers(sources.int8_onnx)

    def with_float(chosen: list[str], folder: Path):
        # a float layer takes the FP32 student's weights and bias back where they pair: under QAD the learned INT8
        # values, trained around the very quantizers being removed, did worse in float (mixed_precision.md)
        target = folder / "model_int8_float_layers.qdq.onnx"
        weights = with_float_layers(sources.int8_onnx, chosen, target, sources.fp32_onnx)
        return replace(sources, int8_onnx=target, int8_float_layers=tuple(chosen)), weights

    def reference(mixed: CompileSources, x: np.ndarray) -> np.ndarray:
        # its own QDQ model, float layers included, as a plain graph (ORT's optimizations off)
        return ox.run_session(ox.session(mixed.int8_onnx, optimization="disable"), x)

    return LayerSource(layers, module_names(sources.int8_onnx, sources.fp32_onnx, layers), with_float, reference,
                       aliases=lambda chosen: layer_aliases(sources.int8_onnx, chosen))


def graph_layers(sources: CompileSources) -> LayerSource:
    from ..quantize import float_layers as fl

    graph = sources.int8_graph()
    model = sources.fp32_model()
    student = model.state_dict()
    # torchao folds batch norm into the conv before it, under the conv's own names: those no longer pair
    folded_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())

    def with_float(chosen: list[str], folder: Path):
        mixed = fl.with_float_layers(graph, chosen)
        weights = fl.take_student_weights(mixed, chosen, student, convs_folded=folded_bn)
        built = replace(sources, int8_graph=lambda: copy.deepcopy(mixed), int8_graph_folded=lambda: fl.folded(mixed),
                        int8_float_layers=tuple(chosen))
        return built, weights

    def reference(mixed: CompileSources, x: np.ndarray) -> np.ndarray:
        return torch_predict(mixed.int8_graph(), torch.from_numpy(x)).numpy()

    layers = fl.quantized_layers(graph)
    return LayerSource(layers, fl.module_names(graph, layers), with_float, reference)


def layer_source(backend, name: str, sources: CompileSources) -> LayerSource | str:
    """How this backend's INT8 layers return to float, or why they cannot."""
    if backend.int8_from_onnx:
        return onnx_layers(sources)
    if not backend.int8_from_pt2e or sources.int8_graph is None:
        return (f"{name} builds INT8 from neither the QDQ ONNX model nor the PT2E graph (e.g. weights only, from the "
                "FP32 model): it has no INT8 activations to return to float")
    if sources.int8_scheme != "full":
        return (f"{name} builds this INT8 model as dynamic-range weights from the learned float model "
                f"(scheme {sources.int8_scheme}): there are no INT8 activations to return to float")
    return graph_layers(sources)


def choose(ctx, backend, sources: CompileSources, row: CompiledArtifact, out_dir: Path, references: dict[str, Any],
           budget, progress: Callable[[str], None], first_lines: Callable[[BaseException], str]):
    """The sources and references with the INT8 model whose most sensitive layers are back in float, or unchanged
    where the budget holds without (or the search failed: an optional repair never costs the all-INT8 artifact);
    the choice is in ``row.float_layers``. ``budget``: the FP32 student's validation figures."""
    from ..mixed_precision import choose_float_layers

    max_drop = ctx.config.compile.int8_max_accuracy_drop
    full_dir, scratch = out_dir / "all-int8", out_dir / f"{row.precision}.float-layers"
    builds = iter(range(1_000_000))
    all_int8: dict[str, Any] = {}
    try:
        found = layer_source(backend, row.backend, sources)
        if isinstance(found, str):
            row.float_layers = FloatLayers(max_accuracy_drop=max_drop, reason=found)
            return sources, references
        x_val = ctx.artifact_inputs("val").numpy()

        def predict(float_layers: list[str]) -> np.ndarray:
            # the all-INT8 artifact is built once, where the profile stage times it against the choice
            folder = scratch / str(next(builds)) if float_layers else full_dir
            folder.mkdir(parents=True)
            built = found.with_float(float_layers, folder)[0] if float_layers else sources
            path = backend.build(built, "int8", folder, dict(row.options))
            model = backend.load(path, dict(row.options))
            if not float_layers:
                all_int8["path"] = path
                if found.aliases is not None:
                    all_int8["runtime"] = model.layer_precisions(found.aliases(found.layers))
            return model.predict_batched(x_val)

        record = choose_float_layers(found.layers, budget(), predict, modules=found.modules, progress=progress)
        record.max_accuracy_drop = max_drop
        record.all_int8_runtime = all_int8.get("runtime", {})
        if record.layers:
            mixed, record.weights = found.with_float(record.layers, out_dir)
            record.full_int8 = ctx.relative(all_int8["path"])
    except NotRunnable:
        raise
    except Exception as error:
        log = out_dir / f"{row.precision}.float-layers.error.txt"
        log.write_text("".join(traceback.format_exception(error)))
        row.float_layers = FloatLayers(max_accuracy_drop=max_drop, status="failed", reason=(
            f"{first_lines(error)} (whole error: {ctx.relative(log)}); the artifact is all-INT8"))
        shutil.rmtree(full_dir, ignore_errors=True)
        return sources, references
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    row.float_layers = record
    if not record.layers:
        shutil.rmtree(full_dir, ignore_errors=True)  # the artifact is this one: built again where it belongs
        return sources, references
    x_check = ctx.artifact_inputs()[: ctx.config.compile.parity_samples].numpy()
    return mixed, {**references, "int8": found.reference(mixed, x_check)}

