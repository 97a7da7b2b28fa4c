"""Which teacher and distillation recipe should the demo use? The demo's own student and pruning, over seeds.

kd_gain.py compares recipes on a smaller student with a longer budget; this benchmark asks the demo's question:
with a teacher trained as the demo would train it, examples/mnist.yaml's width-1.0 student and its pruning with
recovery, how accurate is the demo student after each distillation recipe, and how long do the two training stages
take? Every (teacher, recipe) pair runs the example's distill and prune stages with only the recipe's distill (and
data.augment, prune.recovery) keys replaced, for --seeds seeds, with the demo's thread count (results differ in the
last test image or three between thread counts: floating-point sums run in another order).

Teachers (--teachers):
  r1-6ep      full-width ResNet, 6 epochs (common.STUDY_TEACHER): the example's teacher until 2026-12-04
  example     examples/mnist.yaml's teacher as it is

Recipes (--recipes):
  example     examples/mnist.yaml's distill and prune sections as they are
  dist        DIST, ce + dist (T 3.16, w 2.3), 20 epochs, no augmentation, recovery 6 epochs: the example's
              recipe until 2026-12-04, spelled out so that the table keeps its baseline when the example changes
  fm-20-v2    function matching (kd alone, T 3.5, lr 0.0288) on 2 cached shifted views, 20 epochs, recovery 6
  fm-30-v4    function matching on 4 cached shifted views, 30 epochs, recovery 10 epochs

The baseline row is dist with r1-6ep: the demo until 2026-12-04. Function matching is kd_gain.py's winner (its
"Patience" section: 226 epochs on a width-0.5 student with a 20-epoch teacher); the fm rows ask whether a demo-sized
version of it (the demo must stay within 5 minutes) beats DIST on the demo's student, and with which teacher.

    .venv/bin/python benchmarks/demo_recipe.py                  # both teachers, dist and both fm recipes, 5 seeds
    .venv/bin/python benchmarks/demo_recipe.py --teachers example --recipes dist,example --seeds 3
    .venv/bin/python benchmarks/demo_recipe.py --quick          # digits, tiny teacher, 1 seed, 2 epochs

Writes benchmarks/results/demo_recipe.md and demo_recipe.json; run folders (cached) live under --workdir.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    STUDY_DISTILL, STUDY_TEACHER, bench_parser, command_line, difference, example_config, header, machine_info,
    markdown_table, mean_std, parse_bench_args, results_stem, setup_environment, trained_teacher, write_results,
)

SHIFTS = {"shift": 2}


def _fm(epochs: int, views: int, recovery_epochs: int) -> dict[str, Any]:
    return {"data.augment": SHIFTS,
            "distill": {"losses": [{"name": "kd", "weight": 1.0, "temperature": 3.5}],
                        "train": {"epochs": epochs, "lr": 0.0288, "batch_size": 64},
                        "cache_teacher": True, "teacher_views": views},
            "prune.recovery.epochs": recovery_epochs}


# Each recipe: the keys it replaces in examples/mnist.yaml (dotted, as edgekd.search.set_key takes them).
RECIPES: dict[str, dict[str, Any]] = {
    "example": {},
    "dist": {"data.augment": False, "distill": STUDY_DISTILL, "prune.recovery.epochs": 6},
    "fm-20-v2": _fm(20, 2, recovery_epochs=6),
    "fm-30-v4": _fm(30, 4, recovery_epochs=10),
}
# Each teacher: its teacher section.
TEACHERS: dict[str, dict[str, Any]] = {"r1-6ep": STUDY_TEACHER, "example": example_config()["teacher"]}
BASELINE = ("r1-6ep", "dist")


def recipe_config(name: str, teacher_spec: dict[str, Any], quick: bool) -> dict[str, Any]:
    """examples/mnist.yaml's data, teacher (loaded from its weights), student, distill and prune sections with
    ``name``'s keys replaced; --quick: digits and 2 epochs wherever the example trains."""
    from edgekd.search import set_key

    example = example_config()
    cfg = {key: copy.deepcopy(example[key]) for key in ("name", "data", "student", "distill", "prune")}
    cfg["teacher"] = teacher_spec
    for key, value in RECIPES[name].items():
        set_key(cfg, key, copy.deepcopy(value))
    if quick:
        cfg["data"]["source"] = "builtin:digits"
        cfg["distill"]["train"]["epochs"] = 2
        cfg["prune"]["recovery"]["epochs"] = 1
    return cfg


def _choices(parser, option: str, given: str, allowed: dict) -> list[str]:
    chosen = [c.strip() for c in given.split(",") if c.strip()]
    if not chosen or any(c not in allowed for c in chosen):
        parser.error(f"{option}: choose from {list(allowed)}, got {given!r}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--teachers", default=",".join(TEACHERS), help=f"comma list of {', '.join(TEACHERS)}")
    parser.add_argument("--recipes", default="dist,fm-20-v2,fm-30-v4", help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--seeds", type=int, default=5, help="runs per pair (seeds 0..N-1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the demo uses torch's default: "
                                                              "one per core, 2 here)")
    args = parse_bench_args(parser, argv, quick={"seeds": 1, "teachers": "r1-6ep", "recipes": "dist,example"})
    teachers = _choices(parser, "--teachers", args.teachers, TEACHERS)
    recipes = _choices(parser, "--recipes", args.recipes, RECIPES)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")

    setup_environment(args.workdir, args.threads)
    import edgekd  # noqa: E402  (after the environment is set)
    from edgekd.io import read_json
    from rich.console import Console

    info = machine_info()
    started = time.perf_counter()
    quiet = Console(stderr=True, quiet=True)
    teacher_accuracy, results = {}, {}
    for teacher_name in teachers:
        # the studies' teacher keeps the folders it shares with kd_gain.py and had before teachers were compared
        suffix = "" if TEACHERS[teacher_name] is STUDY_TEACHER else f"-{teacher_name}"
        teacher, weights, teacher_spec = trained_teacher(args.workdir, args.quick, teacher=TEACHERS[teacher_name],
                                                         tag=suffix)
        teacher_accuracy[teacher_name] = 100 * teacher.figures.accuracy
        print(f"teacher {teacher_name}: {weights} (test acc {teacher_accuracy[teacher_name]:.2f}%)", flush=True)
        for name in recipes:
            config = recipe_config(name, teacher_spec, args.quick)
            runs = []
            for seed in range(args.seeds):
                run_dir = args.workdir / "demo_recipe" / f"{name}{suffix}-s{seed}"
                result = edgekd.run({**config, "seed": seed}, run_dir, stages=["distill", "prune"], console=quiet)
                distilled, pruned = result["distill"], result["prune"]
                runs.append({"seed": seed, "distill_accuracy": distilled.figures.accuracy,
                             "pruned_accuracy": pruned.figures.accuracy, "macs": pruned.figures.macs,
                             "teacher_views": distilled.teacher_cache.views,
                             "seconds": sum(read_json(run_dir / stage / "stage.json")["seconds"] for stage in ("distill", "prune")),
                             "run_dir": str(run_dir)})
                print(f"{teacher_name:8s} {name:9s} seed {seed}: distilled {100 * runs[-1]['distill_accuracy']:.2f}, "
                      f"pruned {100 * runs[-1]['pruned_accuracy']:.2f} ({runs[-1]['seconds']:.0f}s)", flush=True)
            results[f"{teacher_name}/{name}"] = {"teacher": teacher_name, "recipe": name, "overrides": RECIPES[name],
                                                 "config": config, "runs": runs}

    def accs(pair: str, key: str) -> list[float]:
        return [100 * r[key] for r in results[pair]["runs"]]

    baseline = "/".join(BASELINE)
    rows = []
    for pair, found in results.items():
        distilled, pruned = mean_std(accs(pair, "distill_accuracy")), mean_std(accs(pair, "pruned_accuracy"))
        delta = "-"
        if pair != baseline and baseline in results:
            d, se = difference(accs(pair, "pruned_accuracy"), accs(baseline, "pruned_accuracy"))
            delta = f"{d:+.2f} ± {se:.2f}"
        rows.append([found["teacher"], found["recipe"], f"{distilled[0]:.2f} ± {distilled[1]:.2f}",
                     f"{pruned[0]:.2f} ± {pruned[1]:.2f}", delta, ", ".join(f"{a:.2f}" for a in accs(pair, "pruned_accuracy")),
                     f"{found['runs'][0]['macs']:,}", f"{mean_std([r['seconds'] for r in found['runs']])[0]:.0f}"])
    settings = {
        "teachers": "; ".join(f"{n}: test accuracy {a:.2f}%" for n, a in teacher_accuracy.items()) +
                    (" (--quick: ResNet width 0.25, 1 epoch, digits)" if args.quick else ""),
        "student": "examples/mnist.yaml's, distilled then pruned with recovery (the demo student)",
        "seeds": f"0..{args.seeds - 1}, {args.threads} torch thread(s)",
        "command": command_line("demo_recipe.py", argv),
        "total wall time": f"{time.perf_counter() - started:.0f} s",
    }
    markdown = "\n".join([
        header("Demo recipe: the demo student's test accuracy per teacher and distillation recipe", info, settings),
        markdown_table(["teacher", "recipe", "distilled acc % (mean ± std)", "pruned acc % (mean ± std)",
                        f"Δ pruned vs {baseline} (pp ± SE)", "pruned, per seed", "pruned MACs", "s/run (distill + prune)"],
                       rows, ["l", "l", "r", "r", "r", "l", "r", "r"]),
        "",
        "Teachers: " + "; ".join(f"`{n}` {TEACHERS[n]}" for n in teachers),
        "",
        "Recipes: " + "; ".join(f"`{n}` {RECIPES[n] or 'examples/mnist.yaml as it is'}" for n in recipes),
        "",
    ])
    md, js = write_results(results_stem("demo_recipe", args.quick), markdown,
                           {"machine": info, "settings": settings, "teachers": {n: TEACHERS[n] for n in teachers},
                            "pairs": results}, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
