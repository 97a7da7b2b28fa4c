"""What does edgekd's trainer cost over a hand-written PyTorch KD loop? And what does the teacher cache save?

Both sides train the same student (zoo:tiny_cnn, same initial weights) from the
same ResNet teacher on the same builtin:mnist5k tensors, batch size, optimizer
(AdamW, cosine schedule with warmup) and loss (0.1 CE + 0.9 KD at T=4). Variants:

* edgekd, live teacher      ``edgekd.run(..., stages=["distill"], force="distill")``, ``cache_teacher: false``
* hand-written, live teacher the loop below, the teacher run on every batch
* edgekd, cached teacher    ``cache_teacher: true`` (augmentation off), cache built in the warm-up round
* hand-written, precomputed the teacher's train-split logits computed once, held in memory
* edgekd, augmented, live    ``data.augment: {shift: 2}``: the teacher runs on every augmented batch (consistent)
* edgekd, augmented, views   the same with ``distill.teacher_views: 8``: the teacher's outputs on 8 fixed
                             views per sample, cached in the warm-up round (consistent at the cache's speed)
* edgekd, mixup, live / views  the same two with ``data.augment: {shift: 2, mixup: 1.0}``: each fixed view
                             keeps its mixing partner and weight, so mixed views are cached too

Per-epoch time is the batch loop only: edgekd's ``metrics.jsonl`` ``seconds``
field and the same span timed around the hand-written loop; the first epoch of
every run is dropped (allocator / oneDNN warm-up). A short warm-up run builds the
teacher cache first. Variants alternate within each repeat (order reversed on odd
repeats); medians over all kept epochs are reported.

    .venv/bin/python benchmarks/train_overhead.py                    # 4 repeats x 3 epochs
    .venv/bin/python benchmarks/train_overhead.py --repeats 2 --epochs 2
    .venv/bin/python benchmarks/train_overhead.py --quick            # 1 repeat x 2 epochs on builtin:digits
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    bench_data, bench_parser, command_line, header, machine_info, markdown_table, parse_bench_args, results_stem,
    setup_environment, timing_teacher, write_results,
)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LR, BATCH, WARMUP_EPOCHS, WEIGHT_DECAY, T = 0.02, 64, 1.0, 1e-4, 4.0
VARIANTS = ["edgekd-live", "hand-live", "edgekd-cached", "hand-cached", "edgekd-aug-live", "edgekd-aug-views",
            "edgekd-mixup-live", "edgekd-mixup-views"]
VIEW_VARIANTS = ("edgekd-aug-views", "edgekd-mixup-views")  # cached views: built in the warm-up round
CACHED_VARIANTS = ("edgekd-cached", *VIEW_VARIANTS)
VIEWS = 8


# ---------------------------------------------------------------- the hand-written loop


def kd_loss(student_logits, teacher_logits, targets):
    ce = F.cross_entropy(student_logits, targets)
    kd = F.kl_div(
        F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits / T, dim=1),
        reduction="batchmean", log_target=True,
    ) * T * T
    return 0.1 * ce + 0.9 * kd


def handwritten(student, teacher, data, epochs: int, seed: int, precomputed: bool) -> list[float]:
    """Minimal KD training; returns the seconds of each epoch's batch loop."""
    x_train, y_train = data.x_train, data.y_train
    n = len(x_train)
    steps = math.ceil(n / BATCH)
    opt = torch.optim.AdamW(student.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    total, warmup = steps * epochs, int(round(WARMUP_EPOCHS * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
    )
    teacher.eval()
    if precomputed:
        with torch.no_grad():
            cached = torch.cat([teacher(x_train[i : i + 256]) for i in range(0, n, 256)])
    times = []
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen)
        student.train()
        start = time.perf_counter()
        for b in range(steps):
            idx = order[b * BATCH : (b + 1) * BATCH]
            x, y = x_train[idx], y_train[idx]
            logits = student(x)
            if precomputed:
                t = cached[idx]
            else:
                with torch.no_grad():
                    t = teacher(x)
            loss = kd_loss(logits, t, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------- edgekd


def edgekd_config(teacher_spec: dict, source: str, epochs: int, seed: int, width: float, variant: str) -> dict:
    augment = ({"shift": 2} if variant.startswith("edgekd-aug") else
               {"shift": 2, "mixup": 1.0} if variant.startswith("edgekd-mixup") else False)
    return {
        "name": "overhead",
        "seed": seed,
        "data": {"source": source, "augment": augment},
        "teacher": teacher_spec,
        "student": {"model": "zoo:tiny_cnn", "kwargs": {"width": width}},
        "distill": {
            "losses": [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": T}],
            "train": {"epochs": epochs, "batch_size": BATCH, "lr": LR, "warmup_epochs": WARMUP_EPOCHS,
                      "weight_decay": WEIGHT_DECAY, "optimizer": "adamw"},
            "cache_teacher": variant in CACHED_VARIANTS,
            "teacher_views": VIEWS if variant in VIEW_VARIANTS else 0,
        },
    }


def edgekd_run(cfg: dict, run_dir: Path, console) -> tuple[list[float], dict]:
    import edgekd
    from edgekd.io import read_json

    result = edgekd.run(cfg, run_dir, stages=["distill"], force="distill", console=console)
    rows = _metrics(run_dir / "distill" / "metrics.jsonl")
    assert not result.stages["distill"].cached
    stage = read_json(run_dir / "distill" / "stage.json")
    return [r["seconds"] for r in rows], {"stage_seconds": stage["seconds"], "teacher_cache": result["distill"].teacher_cache.to_dict(),
                                          "test_accuracy": result["distill"].figures.accuracy}


def _metrics(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    parser.add_argument("--repeats", type=int, default=4, help="timed rounds over all variants")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every variant")
    parser.add_argument("--width", type=float, default=0.5, help="student width multiplier")
    parser.add_argument("--goal", type=float, default=1.05, help="acceptable edgekd / hand-written ratio")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--stem", default="train_overhead", help="results file name (without .md/.json)")
    args = parse_bench_args(parser, argv, quick={"epochs": 2, "repeats": 1})
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is dropped)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        parser.error(f"--variants: choose from {VARIANTS}")

    setup_environment(args.workdir, args.threads)
    from rich.console import Console

    from edgekd.data import prepare_data
    from edgekd.models import create_model, load_model

    info = machine_info()
    quiet = Console(stderr=True, quiet=True)
    source = bench_data(args.quick)["source"]
    data = prepare_data(source, seed=0)

    weights, spec, teacher_note = timing_teacher(args.workdir, data.num_classes, "overhead", args.quick)

    def fresh_student(seed: int):
        torch.manual_seed(seed)  # as the distill stage does, so both sides start from the same weights
        return create_model("tiny_cnn", num_classes=data.num_classes, in_channels=1, width=args.width)

    def fresh_teacher():
        return load_model(spec["model"], kwargs=spec.get("kwargs"), weights=weights, num_classes=data.num_classes,
                          in_channels=1).eval()

    seed = 0
    run_root = args.workdir / "overhead"
    samples: dict[str, list[float]] = {v: [] for v in variants}
    per_repeat: dict[str, list[float]] = {v: [] for v in variants}  # median kept epoch of each run
    extra: dict[str, list[dict]] = {v: [] for v in variants}

    def one(variant: str, epochs: int) -> list[float]:
        if variant.startswith("edgekd"):
            times, meta = edgekd_run(edgekd_config(spec, source, epochs, seed, args.width, variant), run_root / variant, quiet)
            if variant in CACHED_VARIANTS and meta["teacher_cache"].get("used") is not True:
                raise RuntimeError(f"teacher cache not used: {meta['teacher_cache']}")
        else:
            times = handwritten(fresh_student(seed), fresh_teacher(), data, epochs, seed, variant == "hand-cached")
            meta = {}
        extra[variant].append(meta)
        return times

    started = time.perf_counter()
    print("warm-up (builds the teacher caches; not counted)", flush=True)
    for cached in CACHED_VARIANTS:
        if cached in variants:
            one(cached, 1)
            extra[cached].clear()
    for r in range(args.repeats):
        order = variants if r % 2 == 0 else variants[::-1]
        for variant in order:
            times = one(variant, args.epochs)
            samples[variant].extend(times[1:])
            per_repeat[variant].append(statistics.median(times[1:]))
            print(f"repeat {r + 1}/{args.repeats} {variant:14s} epochs {[round(t, 3) for t in times]}", flush=True)

    med = {v: statistics.median(s) for v, s in samples.items()}
    rows = []
    for v in variants:
        s = sorted(samples[v])
        q1, q3 = (statistics.quantiles(s, n=4)[0], statistics.quantiles(s, n=4)[2]) if len(s) >= 2 else (s[0], s[0])
        stage = [m["stage_seconds"] for m in extra[v] if m]
        rows.append([v, f"{med[v]:.3f}", f"{q1:.3f} – {q3:.3f}", f"{min(s):.3f}", len(s),
                     f"{statistics.median(stage):.1f}" if stage else "-"])
    table = markdown_table(["variant", "median s/epoch", "IQR", "min", "epochs timed", "edgekd stage wall s (median)"], rows)

    def paired(a: str, b: str) -> float:
        """Median over repeats of run-a / run-b: each pair ran back to back, under similar machine load."""
        return statistics.median(x / y for x, y in zip(per_repeat[a], per_repeat[b]))

    def ratio_row(label: str, a: str, b: str, goal: bool = True) -> list[str]:
        p, m, lo = paired(a, b), med[a] / med[b], min(samples[a]) / min(samples[b])
        verdict = ("met" if p <= args.goal else "NOT met") if goal else ""
        return [label, f"{p:.3f}", f"{m:.3f}", f"{lo:.3f}", verdict]

    comparisons = [
        ("edgekd / hand-written, live teacher", "edgekd-live", "hand-live", True),
        ("edgekd / hand-written, cached vs precomputed teacher", "edgekd-cached", "hand-cached", True),
        ("edgekd live / edgekd cached (cache speed-up)", "edgekd-live", "edgekd-cached", False),
        ("hand live / hand precomputed", "hand-live", "hand-cached", False),
        ("augmented: live teacher / cached views (views speed-up)", "edgekd-aug-live", "edgekd-aug-views", False),
        ("augmented cached views / plain cache (cost of consistent teaching)", "edgekd-aug-views", "edgekd-cached", False),
        ("mixup: live teacher / cached views (views speed-up)", "edgekd-mixup-live", "edgekd-mixup-views", False),
        ("mixup cached views / shift-only cached views (cost of mixing)", "edgekd-mixup-views", "edgekd-aug-views", False),
    ]
    comparisons = [c for c in comparisons if c[1] in variants and c[2] in variants]
    paired_ratios = {f"{a}/{b}": paired(a, b) for _, a, b, _ in comparisons}
    ratios = markdown_table(
        ["comparison", "paired median ratio", "ratio of medians", "ratio of minima", f"goal ≤ {args.goal} (paired)"],
        [ratio_row(label, a, b, goal) for label, a, b, goal in comparisons],
        align=["l", "r", "r", "r", "l"],
    )
    settings = {
        "torch.set_num_threads": args.threads,
        "data": f"{source}, split seed 0, {len(data.x_train)} training images {tuple(data.input_shape)}, augment off (edgekd-aug-*: shifts of up to 2 px; edgekd-mixup-*: shifts and mixup, Beta(1, 1))",
        "teacher": teacher_note,
        "student": f"zoo:tiny_cnn width {args.width}",
        "training": f"batch {BATCH}, AdamW lr {LR} wd {WEIGHT_DECAY}, cosine with {WARMUP_EPOCHS:g} warmup epoch, loss 0.1 CE + 0.9 KD (T={T:g})",
        "protocol": f"{args.repeats} repeats x {args.epochs} epochs per variant, first epoch of each run dropped, "
                    "variants interleaved (order reversed on odd repeats), after 1-epoch warm-up runs that build the teacher caches (plain and views)",
        "command": command_line("train_overhead.py", argv),
        "total wall time": f"{time.perf_counter() - started:.0f} s",
    }
    markdown = "\n".join([
        header("Training overhead: edgekd trainer vs a hand-written PyTorch KD loop", info, settings),
        table, "", ratios, "",
        "s/epoch is the batch loop only (forward, teacher, loss, backward, optimizer and scheduler steps); edgekd "
        "additionally validates and writes a checkpoint after every epoch, outside this span (see the stage wall time).",
        "The machine is shared (2 cores, other jobs running), so absolute times are noisy. The paired ratio takes, "
        "for each repeat, the two runs that ran back to back and divides their median epoch times; its median over "
        "repeats is the headline figure.",
        "",
    ])
    raw = {"machine": info, "settings": settings, "epoch_seconds": samples, "run_medians": per_repeat, "medians": med,
           "paired_ratios": paired_ratios, "edgekd_runs": extra}
    md, js = write_results(results_stem(args.stem, args.quick), markdown, raw, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
