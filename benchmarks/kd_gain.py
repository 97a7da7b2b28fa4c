"""Does distillation beat hard labels when both are tuned fairly? Test accuracy per recipe, after equal tuning.

For each data set (builtin:mnist5k, builtin:digits) and student size (tiny CNN width 0.5, 6,274 parameters;
width 0.25, 1,702), every recipe gets the same search budget (--trials Optuna trials, seeded, scored on the
validation split; edgekd.search.tune) over learning rate, epochs, its temperature and loss weight, and
augmentation (off, or random shifts; a teacher then sees the student's very views, cached per sample:
distill.teacher_views, "consistent teaching"). Each recipe's best setting is then trained with --seeds seeds
and scored on the test split, which the search never saw. --patience F trains those test runs for F times the
best setting's epochs, every recipe alike (Beyer et al.'s "patient": distillation keeps gaining from epochs a
hard-label run would not use; the search stays within --epochs).

  hard   hard labels only                       [ce]
  kd     Hinton KD                              [(1 - w) ce + w kd, T]
  dkd    Decoupled KD (Zhao et al., 2022)       [ce + dkd (alpha 1, beta, T)]
  dist   DIST (Huang et al., 2022)              [ce + w dist (T)]
  fm     function matching (Beyer et al., 2022) [kd (T), no hard labels]

--augments chooses what the search may pick: off, shifts, mixup (shifts plus mixup with Beta(1, 1) weights: Beyer
et al.'s consistent teaching on mixed images; a teacher sees the student's very mixed views, cached as fixed views
with fixed partners). Hard labels draw fresh shifts and mixes every epoch (no teacher to cache), which if anything
favours them.

The teacher is the ResNet examples/mnist.yaml trained until 2026-12-04 (common.STUDY_TEACHER: full width, 6 epochs),
trained once per data set and loaded from its weights.

    .venv/bin/python benchmarks/kd_gain.py                      # 12 trials per recipe, 5 seeds, both data sets
    .venv/bin/python benchmarks/kd_gain.py --data builtin:mnist5k --widths 0.5 --recipes hard,kd
    .venv/bin/python benchmarks/kd_gain.py --quick              # digits, tiny teacher, 2 trials, 2 seeds

Writes benchmarks/results/kd_gain.md and kd_gain.json. Studies (SQLite, resumable) and run folders (cached)
live under --workdir.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    STUDY_DISTILL, STUDY_TEACHER, bench_data, bench_parser, command_line, difference, header, machine_info,
    markdown_table, mean_std, parse_bench_args, results_stem, setup_environment, trained_teacher, write_results,
)

DATA = ["builtin:mnist5k", "builtin:digits"]
WIDTHS = [0.5, 0.25]
# The teacher's epochs are given for MNIST-5k's 3,500 training images; on digits' 1,257 the same epochs are a third
# of the optimizer steps (6 left it at 90% test accuracy, below a student trained alone: a KD study needs a
# teacher better than its student), so there it trains for the same number of steps.
TRAIN_IMAGES = {"builtin:mnist5k": 3500, "builtin:digits": 1257}
TEACHER_EPOCHS = STUDY_TEACHER["train"]["epochs"]  # 6
VIEWS = 8  # cached augmented views per training sample (consistent teaching at the cache's speed)
AUGMENTS = {"off": False, "shifts": {"shift": 2}, "mixup": {"shift": 2, "mixup": 1.0}}

RECIPES: dict[str, list[dict]] = {
    "hard": [{"name": "ce", "weight": 1.0}],
    "kd": [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": 4.0}],
    "dkd": [{"name": "ce", "weight": 1.0}, {"name": "dkd", "weight": 1.0, "alpha": 1.0, "beta": 8.0, "temperature": 4.0}],
    "dist": [{"name": "ce", "weight": 1.0}, {"name": "dist", "weight": 1.0, "temperature": 1.0}],
    "fm": [{"name": "kd", "weight": 1.0, "temperature": 1.0}],
}


def teacher_epochs(source: str, mnist_epochs: int) -> int:
    """The teacher's epochs on ``source`` for as many optimizer steps as ``mnist_epochs`` on MNIST-5k."""
    mnist = TRAIN_IMAGES["builtin:mnist5k"]
    return round(mnist_epochs * mnist / TRAIN_IMAGES.get(source, mnist))


def search_space(recipe: str, epochs: tuple[int, int], augments: list[str] = ("off", "shifts"), views: int = VIEWS):
    """The same budget for every recipe: learning rate, epochs and augmentation, plus its own temperature and
    loss weight. Augmentation for a recipe with a teacher comes with ``views`` cached teacher views; hard labels
    draw fresh views each epoch (no teacher to cache), which if anything favours them."""
    from edgekd.search import Options, Range

    teacher = recipe != "hard"
    options = {name: {"data.augment": AUGMENTS[name],
                      "distill.teacher_views": views if teacher and AUGMENTS[name] else 0} for name in augments}
    space = [
        Range("distill.train.lr", 3e-3, 5e-2, log=True),
        Range("distill.train.epochs", epochs[0], epochs[1], integer=True),
        Options("augment", options),
    ]
    if recipe == "kd":
        space += [Range("distill.losses.1.temperature", 1.0, 8.0),
                  Range("distill.losses.1.weight", 0.5, 1.0, complement="distill.losses.0.weight")]
    elif recipe == "dkd":
        space += [Range("distill.losses.1.temperature", 1.0, 8.0), Range("distill.losses.1.beta", 0.5, 8.0, log=True)]
    elif recipe == "dist":
        space += [Range("distill.losses.1.temperature", 1.0, 4.0), Range("distill.losses.1.weight", 0.5, 4.0, log=True)]
    elif recipe == "fm":
        space += [Range("distill.losses.0.temperature", 1.0, 4.0)]
    return space


def base_config(teacher_spec: dict, source: str, recipe: str, width: float) -> dict:
    train = dict(STUDY_DISTILL["train"])  # batch 64, cosine with warm-up
    data = {**bench_data(False), "source": source}
    return {
        "name": f"kd-gain-{recipe}", "seed": 0, "data": data, "teacher": teacher_spec,
        "student": {"model": "zoo:tiny_cnn", "kwargs": {"width": width}},
        "distill": {"losses": copy.deepcopy(RECIPES[recipe]), "train": train, "cache_teacher": True},
    }


def patient(config: dict, factor: float) -> dict:
    """``config`` trained ``factor`` times as many epochs."""
    longer = copy.deepcopy(config)
    longer["distill"]["train"]["epochs"] = round(config["distill"]["train"]["epochs"] * factor)
    return longer


def short(settings: dict[str, Any]) -> str:
    names = {"distill.train.lr": "lr", "distill.train.epochs": "epochs", "distill.losses.1.temperature": "T",
             "distill.losses.0.temperature": "T", "distill.losses.1.weight": "w", "distill.losses.1.beta": "beta"}
    parts = [f"{names[k]} {v:.3g}" if isinstance(v, float) else f"{names[k]} {v}" for k, v in settings.items() if k in names]
    augment, views = settings.get("data.augment"), settings.get("distill.teacher_views")
    if augment:
        parts.append(("shifts + mixup" if augment.get("mixup") else "shifts") + (f" + {views} teacher views" if views else ""))
    else:
        parts.append("no aug")
    return ", ".join(parts)


def section(source: str, width: float, teacher, results: dict[str, dict]) -> list[str]:
    """One table: every recipe of one data set and student width."""
    hard = results.get("hard")
    rows = []
    for recipe, found in results.items():
        accs = [r["test_accuracy"] for r in found["runs"]]
        m, s = mean_std(accs)
        if hard and recipe != "hard":
            d, se = difference(accs, [r["test_accuracy"] for r in hard["runs"]])
            gain, verdict = f"{100 * d:+.2f} ± {100 * se:.2f}", ("yes" if d > 2 * se else "no")
        else:
            gain, verdict = "-", "-"
        rows.append([recipe, short(found["best"]), f"{100 * found['val']:.2f}", f"{100 * m:.2f} ± {100 * s:.2f}", gain,
                     verdict, ", ".join(f"{100 * a:.2f}" for a in accs), f"{mean_std([r['seconds'] for r in found['runs']])[0]:.0f}"])
    first = next(iter(results.values()))["runs"][0] if results else None
    size = f"; {first['params']:,} params, {first['macs']:,} MACs" if first else ""
    return [
        f"## {source}, tiny CNN width {width}{size}",
        "",
        f"Teacher: test accuracy {100 * teacher.figures.accuracy:.2f} %, {teacher.figures.params:,} params.",
        "",
        markdown_table(["recipe", "best setting (search)", "val acc % (best trial)", "test acc % (mean ± std)",
                        "Δ vs hard (pp ± SE)", "> 2 SE", "per seed", "s/run"], rows,
                       align=["l", "l", "r", "r", "r", "c", "l", "r"]),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--data", default=",".join(DATA), help="comma list of data sources")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="comma list of student width multipliers")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--trials", type=int, default=12, help="search trials per recipe (the same budget for each)")
    parser.add_argument("--seeds", type=int, default=5, help="test runs at each recipe's best setting (seeds 0..N-1)")
    parser.add_argument("--epochs", default="5,20", help="the searched epoch range, MIN,MAX")
    parser.add_argument("--augments", default="off,shifts", help=f"comma list of the augmentations the search may pick: {', '.join(AUGMENTS)}")
    parser.add_argument("--views", type=int, default=VIEWS, help="cached teacher views per training sample when augmentation is on")
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_EPOCHS,
                        help="the teacher's epochs on MNIST-5k (examples/mnist.yaml: 6); digits: as many optimizer steps")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads; 1 avoids OpenMP stalls on a shared machine (tiny models gain little from more)")
    parser.add_argument("--patience", type=float, default=1.0,
                        help="the test runs train F times each recipe's best epochs (every recipe alike; default 1)")
    parser.add_argument("--note", default="", help="a line added to the results header")
    args = parse_bench_args(parser, argv, quick={"trials": 2, "seeds": 2, "epochs": "1,2", "data": "builtin:digits",
                                                 "widths": "0.5"})
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    augments = [a.strip() for a in args.augments.split(",") if a.strip()]
    if not augments or any(a not in AUGMENTS for a in augments):
        parser.error(f"--augments: choose from {list(AUGMENTS)}, got {args.augments!r}")
    if not 1 <= args.views <= 64:
        parser.error(f"--views must be 1..64, got {args.views}")
    if args.patience < 1:
        parser.error(f"--patience must be at least 1 (a multiple of the searched epochs), got {args.patience}")
    if args.teacher_epochs < 1:
        parser.error(f"--teacher-epochs must be at least 1, got {args.teacher_epochs}")
    # a teacher of another length, and the studies it teaches, get folders of their own (none cached is reused)
    tag = "" if args.teacher_epochs == TEACHER_EPOCHS else f"-e{args.teacher_epochs}"
    # another search space gets study folders of its own (a study resumes only the space it began with)
    space_tag = "" if (augments, args.views) == (["off", "shifts"], VIEWS) else f"-{'-'.join(augments)}-v{args.views}"
    sources = [d.strip() for d in args.data.split(",") if d.strip()]
    widths = [float(w) for w in args.widths.split(",") if w.strip()]
    epochs = tuple(int(e) for e in args.epochs.split(","))

    setup_environment(args.workdir, args.threads)
    import edgekd  # noqa: E402  (after the environment is set)
    from edgekd.io import read_json
    from edgekd.search import tune
    from rich.console import Console

    info = machine_info()
    started = time.perf_counter()
    quiet = Console(stderr=True, quiet=True)
    settings = {
        "data": ", ".join(sources) + ", split 0.7/0.1/0.2 pinned at seed 0",
        "teacher": "ResNet width 0.25, 1 epoch (--quick)" if args.quick else
                   "examples/mnist.yaml ResNet, one per data set, trained " +
                   ", ".join(f"{teacher_epochs(s, args.teacher_epochs)} epochs on {s}" for s in sources) +
                   f" (as many optimizer steps as {args.teacher_epochs} epochs on MNIST-5k)",
        "search": f"{args.trials} Optuna TPE trials per recipe (seed 0), scored on validation accuracy; lr 3e-3..5e-2 "
                  f"(log), epochs {epochs[0]}..{epochs[1]}, augmentation {' or '.join(augments)} (shifts: up to 2 px; "
                  f"mixup: shifts and Beta(1, 1) mixup; a teacher's views cached, {args.views} per sample), plus each "
                  "recipe's temperature and loss weight",
        "test": f"the best setting trained with seeds 0..{args.seeds - 1} (seed 0 is the search's own run, reused)"
                if args.patience == 1 else
                f"the best setting with {args.patience:g}x its epochs, trained with seeds 0..{args.seeds - 1}",
        "command": command_line("kd_gain.py", argv),
    }
    if args.note:
        settings["note"] = args.note
    lines, raw = [], []
    for source in sources:
        teacher, weights, teacher_spec = trained_teacher(args.workdir, args.quick, source,
                                                         None if args.quick else teacher_epochs(source, args.teacher_epochs), tag)
        print(f"teacher for {source}: {weights} (test acc {teacher.figures.accuracy:.4f})", flush=True)
        for width in widths:
            results: dict[str, dict] = {}
            for recipe in recipes:
                folder = args.workdir / f"{source.replace(':', '-')}-w{width}-{recipe}-e{epochs[0]}-{epochs[1]}{tag and '-teacher' + tag}{space_tag}"
                t0 = time.perf_counter()
                tuned = tune(base_config(teacher_spec, source, recipe, width), search_space(recipe, epochs, augments, args.views),
                             trials=args.trials, workdir=folder / "search", seed=0, console=quiet)
                config = patient(tuned.config, args.patience)
                runs = []
                for seed in range(args.seeds):
                    run_dir = folder / "search" / (f"best-s{seed}" if args.patience == 1 else f"best-x{args.patience:g}-s{seed}")
                    result = edgekd.run({**config, "seed": seed}, run_dir, stages=["distill"], console=quiet)
                    rec = result["distill"]
                    runs.append({"seed": seed, "test_accuracy": rec.figures.accuracy, "val_accuracy": rec.val_accuracy,
                                 "params": rec.figures.params, "macs": rec.figures.macs,
                                 "seconds": read_json(run_dir / "distill" / "stage.json")["seconds"],
                                 "run_dir": str(run_dir)})
                best = dict(tuned.best)
                if args.patience != 1:
                    best["distill.train.epochs"] = config["distill"]["train"]["epochs"]
                results[recipe] = {"best": best, "val": tuned.score, "runs": runs, "trials": tuned.trials, "config": config}
                accs = ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in runs)
                print(f"{source} w{width} {recipe:5s}: best {short(tuned.best)} (val {100 * tuned.score:.2f}); "
                      f"test {accs} ({time.perf_counter() - t0:.0f}s)", flush=True)
            lines += section(source, width, teacher, results)
            raw.append({"data": source, "width": width, "teacher": teacher.to_dict(), "recipes": results})

    settings["total wall time"] = f"{time.perf_counter() - started:.0f} s"
    markdown = "\n".join([
        header("KD gain: tuned recipes against tuned hard labels", info, settings),
        *lines,
        "Δ vs hard: difference of the mean test accuracies with its standard error (sqrt(s1²/n1 + s2²/n2)); "
        "\"> 2 SE\" says whether the recipe beats hard labels by more than two standard errors. std is the sample "
        "standard deviation over seeds; the test split is pinned and never seen by the search.",
        "",
    ])
    md, js = write_results(results_stem("kd_gain", args.quick), markdown,
                           {"machine": info, "settings": settings, "studies": raw}, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
