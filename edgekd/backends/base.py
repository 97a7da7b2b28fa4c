"""The converter side of a backend: build an artifact for one precision, inspect it, load it.

A backend is one folder, ``edgekd/backends/<name>/``:

* ``__init__.py`` declares it (``edgekd.ondevice.backend_info.declare``: the modules that provide its
  runtime, its pip packages, an optional device tool) and imports nothing heavier;
* ``runtime.py`` is its loaded artifact, an ``edgekd.ondevice.runtimes.Model`` registered in ``RUNTIMES``
  (standard library, numpy and the vendor runtime only: it is copied to devices);
* ``backend.py`` subclasses ``Backend`` and registers it in ``BACKENDS`` (it may import torch);
* ``tool.py`` (optional) drives the device tool it declared, registered in ``DEVICE_TOOLS``.

No list names the folders: the registries discover them on first lookup. The compile stage gives a
backend a ``CompileSources`` (the verified ONNX files and the PyTorch models they came from) and
gets back a file that ``load`` turns into a ``Model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..ondevice.runtimes import Model, Unavailable, first_line, load, package_version
from ..registry import Registry, discover

if TYPE_CHECKING:  # torch only for the annotations: importing a backend's declaration must stay light
    import torch

    from ..records import InputSpec

__all__ = ["BACKENDS", "DEVICE_TOOLS", "Backend", "CompileSources", "DeviceTool", "Model", "NotRunnable", "first_line",
           "package_version"]

# Raised by ``Backend.load`` where the runtime does not exist here (the artifact is still built and checked).
NotRunnable = Unavailable


@dataclass
class CompileSources:
    """What backends build from. Everything comes from upstream stage records, never from their files directly."""

    input: "InputSpec"  # the one model input (float32 NCHW image, or int64 token ids)
    fp32_onnx: Path  # verified FP32 ONNX (export stage)
    int8_onnx: Path | None  # verified QDQ ONNX with the learned scales (export stage), None without quantization
    fp32_model: Callable[[], "torch.nn.Module"]  # the FP32 PyTorch student, built on demand
    int8_graph: Callable[[], "torch.fx.GraphModule"] | None  # converted PT2E graph (QDQ ops, weights not folded)
    int8_graph_folded: Callable[[], "torch.fx.GraphModule"] | None = None  # the same with int8 weights folded (ExecuTorch)
    # ``transformer``: only linear inputs are INT8 and their outputs float, which LiteRT and XNNPACK cannot run as
    # integer kernels; they build dynamic-range INT8 from the learned weights instead (edgekd.quantize.quantizer)
    int8_scheme: str = "full"
    int8_learned_float: Callable[[], "torch.nn.Module"] | None = None  # learned weights at their INT8 values, float
    int8_float_layers: tuple[str, ...] = ()  # layers the INT8 model has back in float (compile.int8_max_accuracy_drop)
    metadata: dict[str, Any] = field(default_factory=dict)
    sequence: int | None = None  # text: the length fixed-shape artifacts are built for (profile.sequence_length)

    def example(self) -> "torch.Tensor":
        """The batch-1 input a fixed-shape artifact is traced with (ids of ``sequence`` tokens for text)."""
        from ..inputs import example_input

        return example_input(self.input, 1, **({"sequence": self.sequence} if self.sequence else {}))


class Backend(ABC):
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    suffix: ClassVar[str]
    # INT8 is built from ``CompileSources.int8_onnx`` (QDQ ONNX): layers return to float by rewiring that model
    # (edgekd.mixed_precision), so compile.int8_max_accuracy_drop applies
    int8_from_onnx: ClassVar[bool] = False
    # INT8 is built from ``CompileSources.int8_graph``/``int8_graph_folded`` (the converted PT2E graph): layers return
    # to float by rewiring that graph (edgekd.quantize.float_layers)
    int8_from_pt2e: ClassVar[bool] = False

    def unavailable(self) -> str | None:
        """Why this backend cannot build here (a missing package), or None."""
        return None

    def toolchain_version(self) -> str:
        return ""

    @abstractmethod
    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        """Write the artifact for ``precision`` under ``out_dir`` (atomically) and return its path."""

    def load(self, path: Path, options: dict[str, Any]) -> Model:
        """The artifact in its own runtime (the backend's registered ``Model``); NotRunnable says why it cannot run here."""
        return load(self.name, path, options)

    def inspect(self, path: Path) -> dict[str, Any]:
        """Static checks of the artifact (inputs, outputs, op types, precision) that need no runtime."""
        return {}


BACKENDS: Registry[type[Backend]] = Registry("backend", plugins=lambda: discover(__package__, "backend"))


class DeviceTool(ABC):
    """A device's own benchmark (benchmark_app, trtexec, ...) that a target's ``device.tool`` names."""

    counts_runs_only = False  # no duration option: given the run counts edgekd's benchmark took (runners.base.tool_settings)

    @abstractmethod
    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        """The tool's command line (``path``: the tool; ``artifact``: the artifact's path on the device)."""

    @abstractmethod
    def parse(self, output: str, stability_threshold: float | None = None) -> dict[str, Any]:
        """Its printed statistics as a latency dict (see ``edgekd.runners.base.tool_latency``); ValueError without them."""

    def peak_memory_mb(self, output: str) -> float | None:
        return None

    def local_command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any],
                      extra: list[str]) -> list[str]:
        """The command on this machine (the local runner's tool beside edgekd), where a driver may look at the
        installed tool; ``command`` is what a device runs."""
        return self.command(path, artifact, options, settings, extra)

    def shown(self, command: list[str]) -> str:
        """The command as a user would type it to repeat the measurement."""
        return " ".join(command)


DEVICE_TOOLS: Registry[type[DeviceTool]] = Registry("device tool", plugins=lambda: discover(__package__, "tool"))
