"""edgekd search on MNIST-5k: budgets the default config fails, and what the search finds within N trials.

1. The default pipeline (examples/mnist.yaml, with the search's shorter profile) runs once, on host-cpu's
   runtimes named by --backends: per runtime, the p95 of its FP32 artifact (the default student's).
2. Budgets: per runtime, p95 at most --latency-fraction (60%) of that; accuracy at most --max-drop (0.3 points)
   below the default FP32 student's (min_accuracy). The default config fails the latency budget by construction.
3. ``edgekd search`` with the default space (student width x0.5/0.75/1, prune off/0.2/0.4, quantize
   none/ptq/qad) and --trials N. The default run's stages go to the search's stage store, so the trial that
   repeats the default config reuses them.
4. ``edgekd run best.yaml`` into a fresh folder: the chosen artifact's accuracy again.

Prints and saves a table per runtime: the default's p95 and accuracy, the budgets, the best candidate found,
whether it passes, and the rerun's accuracy; plus the search's wall time and trials run or reused.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from common import (RESULTS, bench_parser, command_line, example_config, header, machine_info, markdown_table,
                    parse_bench_args, results_stem, setup_environment)

# The trials' profile: shorter than the example's (2 s warm-up, 1,000 runs / 2 s) to fit 30 trials in the time.
PROFILE = {"warmup_s": 1.0, "runs": 500, "min_seconds": 1.0, "repeats": 2, "native_tool": False}
HOST = Path(__file__).resolve().parents[1] / "targets" / "host-cpu.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--backends", default="onnxruntime,openvino,litert,executorch",
                        help="host-cpu runtimes to search (comma-separated)")
    parser.add_argument("--latency-fraction", type=float, default=0.6)
    parser.add_argument("--max-drop", type=float, default=0.003)
    args = parse_bench_args(parser, argv, {"trials": 3, "backends": "onnxruntime"})
    setup_environment(args.workdir, None)
    work = args.workdir / "search_mnist"
    work.mkdir(parents=True, exist_ok=True)

    backends = args.backends.split(",")
    host = yaml.safe_load(HOST.read_text())
    host["name"] = "host-cpu"
    host["artifacts"] = [a for a in host["artifacts"] if a["backend"] in backends]
    target = work / "host-cpu-search.yaml"
    target.write_text(yaml.safe_dump(host, sort_keys=False))

    cfg = example_config()
    cfg.pop("gate", None)
    cfg.update(targets=[str(target)], profile={**cfg.get("profile", {}), **PROFILE})
    if args.quick:
        cfg["data"]["source"] = "builtin:digits"
        cfg["teacher"].update(kwargs={"width": 0.25}, train={**cfg["teacher"]["train"], "epochs": 1})
        cfg["distill"]["train"]["epochs"] = 2
        cfg["prune"].update(steps=1, recovery={**cfg["prune"]["recovery"], "epochs": 1})
        cfg["quantize"].pop("calibration", None)
        cfg["quantize"]["train"]["epochs"] = 1
    config = work / "mnist-search.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    import edgekd
    from edgekd.search import search

    out = work / "search"
    for stale in (out / "study.db", out / "claims", *out.glob("trial-*")):  # a fresh study; stages/ stays a cache
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    started = time.perf_counter()
    default = edgekd.run(config, work / "default", stage_store=out / "stages")
    default_seconds = time.perf_counter() - started
    student_accuracy = default.report["student"]["accuracy"]
    fp32 = {a["backend"]: a for a in default.report["artifacts"] if a["precision"] == "fp32" and a["status"] == "ok"}
    limits = {b: round(args.latency_fraction * fp32[b]["latency_ms"]["p95"], 5) for b in backends}
    min_accuracy = round(student_accuracy - args.max_drop, 6)
    budgets = work / "budgets.yaml"
    budgets.write_text(yaml.safe_dump({"budgets": [
        {"target": "*", "min_accuracy": min_accuracy, "allow_unstable_latency": True},
        *({"target": "*", "backend": b, "max_latency_ms": {"p95": limits[b]}} for b in backends)]}, sort_keys=False))

    started = time.perf_counter()
    result = search(config, budgets, trials=args.trials, out=out, seed=0)
    search_seconds = time.perf_counter() - started
    complete = [t for t in result.trials if t["state"] == "COMPLETE"]
    reused = sum(t["duplicate_of"] is not None for t in complete)

    rerun_accuracy = {}
    best = result.configs.get("host-cpu")
    if best is not None:
        rerun = edgekd.run(best, work / "rerun")
        rerun_accuracy = {a["id"]: a["accuracy"] for a in rerun.report["artifacts"]}

    rows = []
    for b in backends:
        c = result.runtimes.get(f"host-cpu/{b}")
        d = fp32[b]
        rows.append([b, f"{d['latency_ms']['p95']:.4f}", f"{d['accuracy']:.2%}", f"{limits[b]:.4f}",
                     f"{min_accuracy:.2%}",
                     "-" if c is None else f"{c['trial']} ({c['precision']})",
                     "-" if c is None else _choices(result, c["trial"]),
                     "-" if c is None or c["p95_ms"] is None else f"{c['p95_ms']:.4f}",
                     "-" if c is None or c["accuracy"] is None else f"{c['accuracy']:.2%}",
                     "-" if c is None else ("pass" if c["passed"] else f"fail: {(c['binding'] or {}).get('budget')}"),
                     _rerun(c, rerun_accuracy, result)])
    table = markdown_table(
        ["runtime", "default FP32 p95 ms", "default accuracy", "p95 budget ms", "min accuracy", "best trial",
         "choices", "its p95 ms", "its accuracy", "budgets", "best.yaml rerun accuracy"], rows,
        ["l", "r", "r", "r", "r", "r", "l", "r", "r", "l", "r"])
    info = machine_info()
    extra = {"command": command_line("search_mnist.py", argv), "trials complete": f"{len(complete)} ({reused} reused "
             f"an earlier trial's result)", "search wall time": f"{search_seconds / 60:.1f} min",
             "default run": f"{default_seconds / 60:.1f} min (teacher included)",
             "verdict": " / ".join(result.verdict())}
    text = header("edgekd search on MNIST-5k: budgets the default config fails", info, extra) + "\n" + table + "\n"
    print(text)
    stem = results_stem("search_mnist", args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps({
        "info": info, **extra, "limits_ms": limits, "min_accuracy": min_accuracy, "student_accuracy": student_accuracy,
        "runtimes": result.runtimes, "trials": result.trials, "rerun_accuracy": rerun_accuracy}, indent=1, default=str))


def _choices(result, trial: int) -> str:
    row = next(t for t in result.trials if t["number"] == trial)
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row["settings"].items() if not k.startswith("prune.target"))


def _rerun(c, rerun_accuracy: dict, result) -> str:
    if c is None or c["id"] not in rerun_accuracy:
        return "-"
    chosen = result.chosen.get("host-cpu")
    if chosen is None or chosen["trial"] != c["trial"]:
        return "(another trial chosen)"
    value = rerun_accuracy[c["id"]]
    return f"{value:.2%}" + (" (same)" if value == c["accuracy"] else " (differs)")


if __name__ == "__main__":
    main()
