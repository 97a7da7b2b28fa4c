"""Builds ExecuTorch programs: torch.export, lowered to XNNPACK, written as a .pte (see the package's docstring)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelError
from ...io import read_json, write_bytes, write_json
from ..base import BACKENDS, Backend, CompileSources, first_line, package_version
from .runtime import operators_path

# get_delegation_info counts the ``getitem`` that unpacks each delegate's outputs as a non-delegated
# node; it is plumbing, not an operator that runs on the portable kernels.
PLUMBING = {"getitem"}


class _Float16(torch.nn.Module):
    """The student in float16 behind a float32 boundary, so the program's IO is float32 like every artifact's."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half() if x.is_floating_point() else x).float()  # token ids stay integers


def delegation_report(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    """Delegated and portable-kernel nodes by op type, as ExecuTorch's own devtools count them."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    ops = {op: {"delegated": row.delegated, "portable": row.non_delegated}
           for op, row in sorted(info.delegation_by_operator.items()) if op not in PLUMBING}
    fallback = {op: n["portable"] for op, n in ops.items() if n["portable"]}
    delegated = sum(n["delegated"] for n in ops.values())
    return {
        "delegate": "XNNPACK" if info.num_delegated_subgraphs else None,
        "delegate_partitions": info.num_delegated_subgraphs,
        "delegated_nodes": delegated,
        "total_nodes": delegated + sum(fallback.values()),
        "ops": ops,
        "fallback_ops": sorted(fallback),
        "fallback_op_counts": fallback,
    }


@BACKENDS.register("executorch")
class ExecuTorchBackend(Backend):
    name = "executorch"
    precisions = ("fp32", "fp16", "int8")
    suffix = ".pte"
    int8_from_pt2e = True

    def unavailable(self) -> str | None:
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
            from executorch.exir import to_edge_transform_and_lower  # noqa: F401
        except ImportError as error:
            return f"executorch is not installed or does not import (pip install executorch): {first_line(error)}"
        return None

    def toolchain_version(self) -> str:
        return package_version("executorch")

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if precision not in self.precisions:
            raise ValueError(f"executorch: unknown precision {precision!r}; expected one of {', '.join(self.precisions)}")
        if precision == "int8":
            if sources.int8_graph_folded is None:
                raise ValueError("no INT8 model: the quantize stage ran with mode none")
            import executorch.kernels.quantized  # noqa: F401  out variants for quantize ops left outside XNNPACK

            if sources.int8_scheme == "transformer":
                model = _dynamic_int8(sources.int8_learned_float(), sources.example())
            else:
                model = sources.int8_graph_folded()
        else:
            model = sources.fp32_model().eval()
            if precision == "fp16":
                model = _Float16(model).eval()
        example = (sources.example(),)
        try:
            lowered = to_edge_transform_and_lower(torch.export.export(model, example), partitioner=[XnnpackPartitioner()])
            operators = delegation_report(lowered.exported_program().graph_module)
            if precision == "int8":
                operators["precision"] = ("int8 dynamic (int8 weights, activations quantized per token at run time)"
                                          if sources.int8_scheme == "transformer" else "int8 (static, learned scales)")
            program = lowered.to_executorch()
        except Exception as error:
            raise ModelError(f"executorch {precision}: lowering to XNNPACK failed: {first_line(error)}") from error
        path = Path(out_dir) / f"model_{precision}{self.suffix}"
        write_bytes(path, program.buffer)
        write_json(operators_path(path), operators)
        crash = _runtime_crash(path, example[0])
        if crash:
            os.replace(path, path.with_name(path.name + ".failed"))  # kept for a bug report, never looks built
            verb = "aborts on" if crash.startswith("signal") else "cannot load or run"
            raise ModelError(f"executorch {precision}: the ExecuTorch runtime {verb} this program ({crash}); "
                             "the artifact is not kept")
        return path

    def inspect(self, path: Path) -> dict[str, Any]:
        """File size and the delegation the build recorded (the delegated part of a .pte is an opaque blob)."""
        report = operators_path(path)
        operators = read_json(report) if report.is_file() else {}
        return {
            "file_bytes": Path(path).stat().st_size,
            "delegate": operators.get("delegate"),
            "delegate_partitions": operators.get("delegate_partitions"),
            "delegated_nodes": operators.get("delegated_nodes"),
            "total_nodes": operators.get("total_nodes"),
            **({"precision": operators["precision"]} if "precision" in operators else {}),
        }


# Loads, runs and unloads a program in a child process: some programs (an INT8 BERT encoder with
# executorch 1.4.1) corrupt the heap when unloaded, which would abort the whole run from inside the check.
_PROBE = """
import sys, numpy as np
from edgekd.ondevice.runtimes import load
model = load("executorch", sys.argv[1], {"threads": 1})
model.predict(np.ones([int(d) for d in sys.argv[3].split(",")], dtype=sys.argv[2]))
del model
"""


def _dynamic_int8(model: torch.nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """XNNPACK's dynamic INT8 (per-channel int8 weights, per-token activations quantized at run time)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    prepared = prepare_pt2e(torch.export.export(model.eval(), (example,)).module(), quantizer)
    prepared(example)  # dynamic: nothing is calibrated, the weight observers read the weights
    return convert_pt2e(prepared)


def _runtime_crash(path: Path, example: torch.Tensor) -> str | None:
    """Why the runtime died loading, running or unloading ``path`` in a child process; None when it did not."""
    dtype = "float32" if example.is_floating_point() else "int64"
    shape = ",".join(str(int(d)) for d in example.shape)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path), dtype, shape], capture_output=True, text=True,
                              timeout=300)
    except subprocess.TimeoutExpired:
        return "no answer within 300 s"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip() and "cpuinfo" not in line]
    signal = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
    return f"{signal}: {lines[-1].strip() if lines else 'no message'}"
