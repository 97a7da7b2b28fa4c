"""How much does distillation help a small student? Test accuracy per distillation recipe.

One teacher (examples/mnist.yaml's ResNet, trained once and then loaded from its
weights) is distilled into the same half-width tiny CNN on builtin:mnist5k with
hard labels only, Hinton KD, and KD plus each of logit_mse / fitnet / at / sp /
rkd, over several seeds (the seed changes the student's initial weights and the
shuffle; the data split is pinned). Augmentation is off, so the teacher's outputs
come from edgekd's teacher cache.

    .venv/bin/python benchmarks/kd_gain.py                 # 10 epochs, 3 seeds
    .venv/bin/python benchmarks/kd_gain.py --epochs 2 --seeds 1 --methods hard,kd
    .venv/bin/python benchmarks/kd_gain.py --quick         # every method, 1 epoch, 1 seed, builtin:digits

Writes benchmarks/results/kd_gain.md and kd_gain.json. Run directories (reused:
a finished run is cached) live under --workdir.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    bench_data, bench_parser, command_line, example_config, header, machine_info, markdown_table, mean_std,
    parse_bench_args, results_stem, setup_environment, trained_teacher, write_results,
)

CE, KD = {"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": 4.0}
FEATURES = [{"student": "features.block2", "teacher": "layer2"}]
POOL = [{"student": "pool", "teacher": "pool"}]

# Extra-term weights follow RepDistiller's defaults (Tian et al., 2020) where it has the loss
# (fitnet 100, at 1000, sp 3000, rkd 1 with its built-in 25/50 distance/angle weights).
METHODS: dict[str, dict] = {
    "hard": {"losses": [{"name": "ce", "weight": 1.0}], "features": []},
    "kd": {"losses": [CE, KD], "features": []},
    "kd+logit_mse": {"losses": [CE, KD, {"name": "logit_mse", "weight": 1.0}], "features": []},
    "kd+fitnet": {"losses": [CE, KD, {"name": "fitnet", "weight": 100.0}], "features": FEATURES},
    "kd+at": {"losses": [CE, KD, {"name": "at", "weight": 1000.0}], "features": FEATURES},
    "kd+sp": {"losses": [CE, KD, {"name": "sp", "weight": 3000.0}], "features": FEATURES},
    # RKD on the penultimate embeddings (the pooled features before the classifier), as in the paper
    "kd+rkd": {"losses": [CE, KD, {"name": "rkd", "weight": 1.0}], "features": POOL},
    # not run by default: RKD on the logits (edgekd's fallback without feature pairs) collapses here
    "kd+rkd_logits": {"losses": [CE, KD, {"name": "rkd", "weight": 1.0}], "features": []},
}
DEFAULT_METHODS = ["hard", "kd", "kd+logit_mse", "kd+fitnet", "kd+at", "kd+sp", "kd+rkd"]


def student_config(teacher_spec: dict, method: str, seed: int, epochs: int, width: float, quick: bool) -> dict:
    train = dict(example_config()["distill"]["train"])  # lr 0.02, batch 64
    train["epochs"] = epochs
    return {
        "name": f"kd-gain-{method}",
        "seed": seed,
        "data": {**bench_data(quick), "augment": False},
        "teacher": teacher_spec,
        "student": {"model": "zoo:tiny_cnn", "kwargs": {"width": width}},
        "distill": {**METHODS[method], "train": train, "cache_teacher": True},
    }


def fmt_acc(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def report(info: dict, settings: dict, teacher, runs: list[dict], methods: list[str], seeds: list[int]) -> str:
    base = [r["test_accuracy"] for r in runs if r["method"] == "hard"]
    base_mean = mean_std(base)[0]
    rows = []
    for method in methods:
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        if not mine:
            continue
        m, s = mean_std([r["test_accuracy"] for r in mine])
        vm, vs = mean_std([r["val_accuracy"] for r in mine])
        gain = f"{100 * (m - base_mean):+.2f}" if base and method != "hard" else "-"
        per_seed = ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in mine)
        secs = mean_std([r["seconds"] for r in mine])[0]
        losses = " + ".join(f"{l['weight']:g}·{l['name']}" for l in METHODS[method]["losses"])
        rows.append([method, losses, len(mine), fmt_acc(m, s), gain, fmt_acc(vm, vs), per_seed, f"{secs:.0f}"])
    table = markdown_table(
        ["method", "loss", "seeds", "test acc % (mean ± std)", "Δ vs hard (pp)", "val acc %", "per seed", "s/run"], rows,
        align=["l", "l", "r", "r", "r", "r", "l", "r"],
    )
    tf = teacher.figures
    return "\n".join([
        header("KD gain: student test accuracy per distillation recipe", info, settings),
        f"Teacher ({settings['teacher']}, trained once, then loaded from its weights): "
        f"test accuracy {100 * tf.accuracy:.2f} %, {tf.params:,} params, {tf.macs:,} MACs.",
        f"Student: zoo:tiny_cnn width {settings['student width']}; {runs[0]['params']:,} params, "
        f"{runs[0]['macs']:,} MACs." if runs else "",
        "",
        table,
        "",
        "std is the sample standard deviation over seeds; the test split is the same for every row.",
        "fitnet/at/sp pair student `features.block2` with teacher `layer2` (both 14x14 on MNIST); rkd pairs the pooled "
        "embeddings (student `pool`, teacher `pool`).",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10, help="distillation epochs per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per method")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--width", type=float, default=0.5, help="student width multiplier")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads; 1 avoids OpenMP stalls on a shared machine (tiny models gain little from more)")
    parser.add_argument("--note", default="", help="a line added to the results header")
    args = parse_bench_args(parser, argv, quick={"epochs": 1, "seeds": 1})
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    seeds = list(range(args.seeds))

    setup_environment(args.workdir, args.threads)
    import edgekd  # noqa: E402  (after the environment is set)
    from edgekd.io import read_json
    from rich.console import Console

    info = machine_info()
    started = time.perf_counter()
    teacher, weights, teacher_spec = trained_teacher(args.workdir, args.quick)
    print(f"teacher: {weights} (test acc {teacher.figures.accuracy:.4f})", flush=True)

    quiet = Console(stderr=True, quiet=True)
    runs: list[dict] = []
    settings = {
        "data": f"{bench_data(args.quick)['source']}, split 0.7/0.1/0.2 pinned at seed 0, augment off (teacher cache on)",
        "teacher": "ResNet width 0.25, 1 epoch (--quick)" if args.quick else "examples/mnist.yaml ResNet",
        "student width": args.width,
        "distill": f"{args.epochs} epochs, AdamW lr 0.02, batch 64, cosine with 1 warmup epoch (examples/mnist.yaml)",
        "seeds": ", ".join(map(str, seeds)),
        "command": command_line("kd_gain.py", argv),
    }
    if args.note:
        settings["note"] = args.note
    for seed in seeds:  # seeds outermost: an interrupted run still has every method at the first seeds
        for method in methods:
            cfg = student_config(teacher_spec, method, seed, args.epochs, args.width, args.quick)
            run_dir = args.workdir / f"{method}-s{seed}-e{args.epochs}-w{args.width}"
            t0 = time.perf_counter()
            result = edgekd.run(cfg, run_dir, stages=["distill"], console=quiet)  # data.split_seed stays 0
            rec = result["distill"]
            outcome = result.stages["distill"]
            runs.append({
                "method": method, "seed": seed, "test_accuracy": rec.figures.accuracy,
                "val_accuracy": rec.val_accuracy, "ece": rec.figures.ece,
                "params": rec.figures.params, "macs": rec.figures.macs,
                "best_epoch": rec.train.best_epoch, "final_train_loss": rec.train.final_train_loss,
                "seconds": read_json(run_dir / "distill" / "stage.json")["seconds"],  # also when cached
                "cached": outcome.cached, "teacher_cache": rec.teacher_cache.hit, "run_dir": str(run_dir),
                "losses": cfg["distill"]["losses"], "features": cfg["distill"]["features"],
            })
            print(f"{method:14s} seed {seed}: test acc {rec.figures.accuracy:.4f} "
                  f"({'cached' if outcome.cached else f'{time.perf_counter() - t0:.0f}s'})", flush=True)

    settings["total wall time"] = f"{time.perf_counter() - started:.0f} s"
    markdown = report(info, settings, teacher, runs, methods, seeds)
    raw = {"machine": info, "settings": settings, "teacher": teacher.to_dict(), "runs": runs}
    md, js = write_results(results_stem("kd_gain", args.quick), markdown, raw, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
