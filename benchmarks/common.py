"""Shared helpers for the benchmarks: machine description, the fixed teacher, Markdown tables.

Run the benchmarks from the repository root, e.g. ``.venv/bin/python benchmarks/kd_gain.py``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLE = ROOT / "examples" / "mnist.yaml"
DEFAULT_WORKDIR = Path(os.environ.get("EDGEKD_BENCH_DIR", "/tmp/edgekd-bench"))
# --quick: the data and teacher of tests/conftest.py's tiny config (8x8 digits, quarter-width ResNet)
QUICK_DATA = "builtin:digits"
QUICK_TEACHER_WIDTH = 0.25


# ---------------------------------------------------------------- command line


def bench_parser(doc: str, workdir: Path = DEFAULT_WORKDIR) -> argparse.ArgumentParser:
    """The options every benchmark has: --quick, --workdir and --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on builtin:digits with a tiny teacher, one seed/round and short timings, so a "
                             "change that breaks the benchmark fails tests/test_benchmarks.py; writes <stem>_quick.md/.json")
    parser.add_argument("--workdir", type=Path, default=workdir,
                        help="run folders and caches (--quick: WORKDIR/quick, so quick and full runs never share a cached stage)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md/.json results")
    return parser


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None, quick: dict[str, Any]) -> argparse.Namespace:
    """Parse ``argv``; with --quick, ``quick`` replaces the defaults (options given on the command line still win)."""
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick, workdir=parser.get_default("workdir") / "quick")
        args = parser.parse_args(argv)
    return args


def results_stem(stem: str, quick: bool) -> str:
    """Quick runs write ``<stem>_quick``: they never overwrite a published table, whatever --out says."""
    return f"{stem}_quick" if quick else stem


def command_line(script: str, argv: list[str] | None) -> str:
    return f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


# ---------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import edgekd

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "edgekd": edgekd.__version__,
        "load_average_1min_at_start": round(load, 2),
    }


def header(title: str, info: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    lines = [f"# {title}", ""]
    for key, value in {**info, **(extra or {})}.items():
        lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"


def setup_environment(workdir: Path, threads: int | None) -> None:
    """Fix the thread count and keep the teacher cache inside ``workdir`` (unless EDGEKD_CACHE_DIR is set)."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGEKD_CACHE_DIR", str(workdir / "cache"))
    if threads:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- the teacher


def example_config() -> dict[str, Any]:
    """examples/mnist.yaml, its relative paths (calibration set, budgets file) made absolute so that the config
    runs from any folder, as edgekd resolves them against the YAML's own folder."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    for section, key in (("quantize", "calibration"), ("gate", "budgets")):
        if isinstance(cfg.get(section, {}).get(key), str):
            cfg[section][key] = str((EXAMPLE.parent / cfg[section][key]).resolve())
    return cfg


def bench_data(quick: bool) -> dict[str, Any]:
    """The data section: examples/mnist.yaml's (builtin:mnist5k, pinned split) without augmentation (each study
    turns on its own), or builtin:digits for --quick."""
    data = {**copy.deepcopy(example_config()["data"]), "augment": False}
    if quick:
        data["source"] = QUICK_DATA
    return data


# The teacher the studies were run with: examples/mnist.yaml's until 2026-12-04 (a full-width ResNet, 6 epochs;
# 98.40% on MNIST-5k's test split). Pinned so that their results still say how to reproduce them; the example now
# trains a half-width ResNet for longer (demo_recipe.py compares the two).
STUDY_TEACHER: dict[str, Any] = {"model": "zoo:resnet", "train": {"epochs": 6, "lr": 0.003, "batch_size": 128},
                                 "augment": True, "calibrate_temperature": False}
# examples/mnist.yaml's distill section until 2026-12-04 (DIST, no augmentation), pinned for the same reason: the
# studies built on the example's recipe (quant_compare.py, prune_sweep.py, mixed_precision.py) keep it.
STUDY_DISTILL: dict[str, Any] = {
    "losses": [{"name": "ce", "weight": 1.0}, {"name": "dist", "weight": 2.3, "temperature": 3.16}],
    "train": {"epochs": 20, "lr": 0.0288, "batch_size": 64}, "cache_teacher": True}


def teacher_run_config(quick: bool = False, source: str | None = None, epochs: int | None = None,
                       teacher: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run config that trains ``teacher`` (a teacher section; default STUDY_TEACHER) on examples/mnist.yaml's
    data, on ``source`` when given, for ``epochs`` instead of its own when given; --quick: a quarter-width ResNet
    trained for one epoch on builtin:digits."""
    teacher = copy.deepcopy(teacher or STUDY_TEACHER)
    if epochs:
        teacher["train"] = {**teacher["train"], "epochs": epochs}
    if quick:
        teacher.update(kwargs={"width": QUICK_TEACHER_WIDTH}, augment=False, train={**teacher["train"], "epochs": 1})
    data = bench_data(quick)
    if source:
        data["source"] = source
    return {"name": "bench-teacher", "seed": 0, "data": data, "teacher": teacher}


def trained_teacher(workdir: Path, quick: bool = False, source: str | None = None,
                    epochs: int | None = None, tag: str = "", teacher: dict[str, Any] | None = None,
                    ) -> tuple[Any, Path, dict[str, Any]]:
    """Train (or reuse: the stage is cached in ``workdir/teacher``, ``workdir/teacher-<source>`` for another data
    source, with ``tag`` appended to the folder's name) the studies' teacher, or the teacher section ``teacher``
    (``quick``: the tiny one; ``epochs``: trained that long instead; give another teacher, or one of another length,
    its own ``tag`` so it does not replace a cached one).

    Returns the teacher record (``edgekd.records.TeacherRecord``), its weights file, and the teacher spec to put in
    other configs so they load these weights instead of training.
    """
    import edgekd

    cfg = teacher_run_config(quick, source, epochs, teacher)
    run_dir = workdir / (("teacher" if not source else "teacher-" + source.replace(":", "-").replace("/", "-")) + tag)
    # wait=True: benchmarks run side by side share this teacher; the second waits for the first to train it
    result = edgekd.run(cfg, run_dir, stages=["teacher"], wait=True)
    record = result["teacher"]
    member = record.members[0]
    weights = (run_dir / member.weights).resolve()
    spec = {"model": member.model, "kwargs": dict(member.kwargs), "weights": str(weights), "augment": False}
    return record, weights, spec


def timing_teacher(workdir: Path, num_classes: int, subdir: str, quick: bool = False) -> tuple[Path, dict[str, Any], str]:
    """The teacher for timing benchmarks: kd_gain's trained one when ``workdir`` holds it, else random weights
    (timing does not depend on the weights' values). Returns its weights file, teacher spec and a note."""
    if (workdir / "teacher" / "teacher" / "stage.json").exists():
        _, weights, spec = trained_teacher(workdir, quick)  # kd_gain's teacher (cached stage)
        return weights, spec, f"the studies' ResNet (common.STUDY_TEACHER) trained by kd_gain.py ({weights})"
    from edgekd.models import create_model, save_weights

    kwargs = {"width": QUICK_TEACHER_WIDTH} if quick else {}
    weights = workdir / subdir / "random_resnet.safetensors"
    torch.manual_seed(0)
    save_weights(create_model("resnet", num_classes=num_classes, in_channels=1, **kwargs), weights)
    spec = {"model": "zoo:resnet", "kwargs": kwargs, "weights": str(weights), "augment": False}
    name = f"zoo:resnet width {QUICK_TEACHER_WIDTH}" if quick else "zoo:resnet"
    return weights, spec, f"{name} with random weights (no trained teacher in --workdir; timing is unaffected)"


# ---------------------------------------------------------------- numbers and tables


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = list(values)
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of a minus mean of b, and the standard error of that difference (independent samples)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return ma - mb, math.sqrt(sa**2 / len(a) + sb**2 / len(b))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    align = list(align or ["l"] + ["r"] * (len(headers) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    out = ["| " + " | ".join(map(str, headers)) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    out += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(out)


def write_results(stem: str, markdown: str, raw: dict[str, Any], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md.write_text(markdown)
    js.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return md, js
