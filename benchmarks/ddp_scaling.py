"""Distillation throughput on 1 and 2 processes (torchrun, gloo, CPU), with the teacher cache on and off.

Every variant distills the same student (zoo:tiny_cnn width 0.5) from the same ResNet teacher on
builtin:mnist5k (3,500 training images, 28x28), global batch 64, 0.1 CE + 0.9 KD, one thread per
process:

* 1 process      ``python -m edgekd distill CONFIG --force distill`` (the single-process path)
* 2 processes    ``torchrun --standalone --nproc_per_node 2 -m edgekd distill CONFIG --force distill``
                 (DDP over gloo, 32 images per process per step)

each with ``cache_teacher: true`` (teacher outputs read from the cache, built in a warm-up run that is
not timed) and ``false`` (the live teacher runs on every batch, on each process's share).

Samples per second = training images / seconds of one epoch's batch loop, from rank 0's
``metrics.jsonl`` (``seconds``): rank 0 waits for the other process at every gradient all-reduce, so
this is the whole job's rate. The first epoch of every run is dropped (warm-up); medians over the kept
epochs of all repeats are reported, with the speed-up paired per repeat (the two runs of a repeat ran
back to back). The stage wall time (process start-up excluded, validation and checkpoints included)
comes from ``stage.json``.

The machine is shared (2 cores), so every run is guarded: before it starts, the script waits (up to
``--quiet-wait`` s) until the other processes on the machine leave both cores idle for a second; during
it, it measures how many cores the *other* processes used (all CPU time from /proc/stat minus this run's
own); a run during which they used more than ``--max-other`` cores is discarded and repeated (at most
``--attempts`` times). The table reports that figure for the runs it kept.

    .venv/bin/python benchmarks/ddp_scaling.py                   # 2 repeats x 3 epochs, 3-4 minutes when the machine is quiet
    .venv/bin/python benchmarks/ddp_scaling.py --repeats 3 --epochs 4
    .venv/bin/python benchmarks/ddp_scaling.py --quick          # 1 repeat x 2 epochs on builtin:digits, no waiting
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    bench_data, bench_parser, command_line, header, machine_info, markdown_table, parse_bench_args, results_stem,
    setup_environment, timing_teacher, write_results,
)

import torch  # noqa: E402
import yaml  # noqa: E402

LR, BATCH, T = 0.02, 64, 4.0
VARIANTS = [(1, True), (2, True), (1, False), (2, False)]  # (processes, teacher cache)


def label(procs: int, cache: bool) -> str:
    return f"{procs} process{'es' if procs > 1 else ''}, cache {'on' if cache else 'off'}"


def config(teacher_spec: dict, source: str, epochs: int, width: float, cache: bool) -> dict:
    return {
        "name": "ddp-scaling",
        "seed": 0,
        "data": {"source": source, "augment": False},
        "teacher": teacher_spec,
        "student": {"model": "zoo:tiny_cnn", "kwargs": {"width": width}},
        "distill": {
            "losses": [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": T}],
            "train": {"epochs": epochs, "batch_size": BATCH, "lr": LR, "warmup_epochs": 0},
            "cache_teacher": cache,
        },
    }


def command(procs: int, config_path: Path, out: Path) -> list[str]:
    args = ["distill", str(config_path), "--out", str(out), "--force", "distill"]
    if procs == 1:
        return [sys.executable, "-m", "edgekd", *args]
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={procs}", "-m", "edgekd", *args]


def busy_seconds() -> float:
    """CPU seconds spent by every process on the machine since boot (all cores; /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # torchrun waits for its workers: they count too
    return usage.ru_utime + usage.ru_stime


def wait_until_quiet(limit: float, max_busy: float = 0.15) -> float:
    """Wait until the machine's cores are (nearly) idle for a second; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = busy_seconds()
        time.sleep(1.0)
        if busy_seconds() - before <= max_busy:
            break
    return time.monotonic() - started


def run(procs: int, config_path: Path, out: Path, env: dict[str, str]) -> dict:
    started, busy, ours = time.perf_counter(), busy_seconds(), children_seconds()
    job = subprocess.run(command(procs, config_path, out), env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    other_cores = max(0.0, (busy_seconds() - busy) - (children_seconds() - ours)) / wall
    if job.returncode != 0:
        raise RuntimeError(f"{' '.join(command(procs, config_path, out))} failed ({job.returncode}):\n{job.stderr[-4000:]}")
    rows = [json.loads(line) for line in (out / "distill" / "metrics.jsonl").read_text().splitlines()]
    stage = json.loads((out / "distill" / "stage.json").read_text())
    world = rows[0].get("world_size", 1)
    if world != procs:
        raise RuntimeError(f"expected {procs} processes, metrics say {world}")
    return {"epoch_seconds": [r["seconds"] for r in rows], "stage_seconds": stage["seconds"], "command_seconds": wall,
            "other_cores": round(other_cores, 3),
            "teacher_cache": stage["record"]["teacher_cache"], "test_accuracy": stage["record"]["figures"]["accuracy"]}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds over all variants")
    parser.add_argument("--width", type=float, default=0.5, help="student width multiplier")
    parser.add_argument("--stem", default="ddp_scaling", help="results file name (without .md/.json)")
    parser.add_argument("--max-other", type=float, default=0.25, help="discard a run during which other processes used more cores")
    parser.add_argument("--attempts", type=int, default=3, help="tries per run before keeping a disturbed one")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="seconds to wait for idle cores before each run")
    # --quick does not wait for idle cores nor repeat a disturbed run: it checks the script, not the machine
    args = parse_bench_args(parser, argv, quick={"epochs": 2, "repeats": 1, "attempts": 1, "quiet_wait": 0.0})
    stem = results_stem(args.stem, args.quick)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is dropped)")

    setup_environment(args.workdir, 1)
    from edgekd.data import prepare_data

    info = machine_info()
    source = bench_data(args.quick)["source"]
    data = prepare_data(source, seed=0)
    n_train = len(data.x_train)
    _, spec, teacher_note = timing_teacher(args.workdir, data.num_classes, "ddp", args.quick)

    root = args.workdir / "ddp"
    raw_path = root / f"{stem}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEKD_CACHE_DIR": os.environ["EDGEKD_CACHE_DIR"], "COLUMNS": "200"}
    paths = {}
    for cache in (True, False):
        paths[cache] = root / f"cache-{'on' if cache else 'off'}.yaml"
        paths[cache].parent.mkdir(parents=True, exist_ok=True)
        paths[cache].write_text(yaml.safe_dump(config(spec, source, args.epochs, args.width, cache), sort_keys=False))

    started = time.perf_counter()
    print("warm-up: builds the teacher cache (not timed)", flush=True)
    warm = root / "warmup.yaml"
    warm.write_text(yaml.safe_dump(config(spec, source, 1, args.width, True), sort_keys=False))
    run(1, warm, root / "warmup", env)

    samples: dict[tuple[int, bool], list[float]] = {v: [] for v in VARIANTS}  # samples/s of every kept epoch
    per_repeat: dict[tuple[int, bool], list[float]] = {v: [] for v in VARIANTS}  # median kept epoch of each run
    runs: dict[tuple[int, bool], list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for procs, cache in order:
            for attempt in range(1, args.attempts + 1):
                waited = wait_until_quiet(args.quiet_wait)
                result = run(procs, paths[cache], root / f"run-{procs}-{'on' if cache else 'off'}", env)
                result.update(attempt=attempt, waited_for_quiet_s=round(waited, 1))
                if result["other_cores"] <= args.max_other:
                    break
                print(f"  other processes used {result['other_cores']:.2f} cores during the run: "
                      f"{'again' if attempt < args.attempts else 'kept anyway'}", flush=True)
            if cache and result["teacher_cache"].get("hit") is not True:
                raise RuntimeError(f"teacher cache not hit: {result['teacher_cache']}")
            kept = [n_train / s for s in result["epoch_seconds"][1:]]
            samples[(procs, cache)].extend(kept)
            per_repeat[(procs, cache)].append(statistics.median(kept))
            runs[(procs, cache)].append(result)
            print(f"repeat {r + 1}/{args.repeats} {label(procs, cache):28s} samples/s {[round(k) for k in kept]} "
                  f"(other processes: {result['other_cores']:.2f} cores)", flush=True)

    def speedup(cache: bool) -> float:
        return statistics.median(b / a for a, b in zip(per_repeat[(1, cache)], per_repeat[(2, cache)]))

    rows = []
    for procs, cache in VARIANTS:
        s = sorted(samples[(procs, cache)])
        stage = statistics.median(x["stage_seconds"] for x in runs[(procs, cache)])
        others = [x["other_cores"] for x in runs[(procs, cache)]]
        rows.append([
            procs, "on" if cache else "off", f"{statistics.median(s):,.0f}", f"{s[0]:,.0f} – {s[-1]:,.0f}",
            f"{1000 * BATCH / statistics.median(s):.1f}", f"{speedup(cache):.2f}x" if procs == 2 else "1.00x", f"{stage:.1f}", len(s),
            f"{max(others):.2f}",
        ])
    table = markdown_table(
        ["processes", "teacher cache", "samples/s (median)", "range", f"ms per global batch of {BATCH}",
         "speed-up vs 1 process (paired)", "distill stage s (median)", "epochs timed", "other processes' cores (max)"],
        rows,
    )
    settings = {
        "data": f"{source}, split seed 0, {n_train} training images {tuple(data.input_shape)}, augment off",
        "teacher": teacher_note,
        "student": f"zoo:tiny_cnn width {args.width}",
        "training": f"global batch {BATCH} (32 per process on 2), AdamW lr {LR}, loss 0.1 CE + 0.9 KD (T={T:g})",
        "threads": "OMP_NUM_THREADS=1 per process (2 processes use both cores)",
        "launch": "1 process: python -m edgekd distill; 2 processes: torchrun --standalone --nproc_per_node 2 -m edgekd distill (gloo)",
        "protocol": f"{args.repeats} repeats x {args.epochs} epochs per variant, first epoch of each run dropped, "
                    "variants interleaved (order reversed on odd repeats), after a warm-up run that builds the teacher cache; "
                    f"each run after idle cores (up to {args.quiet_wait:g} s of waiting), repeated while other processes "
                    f"used more than {args.max_other} cores (at most {args.attempts} tries)",
        "command": command_line("ddp_scaling.py", argv),
        "total wall time": f"{time.perf_counter() - started:.0f} s",
    }
    markdown = "\n".join([
        header("Distributed distillation: samples per second on 1 and 2 processes", info, settings),
        table, "",
        "Samples/s is the batch loop only (rank 0's `seconds` per epoch, which includes waiting for the other "
        "process at each all-reduce); the stage time adds validation (sharded over the processes), checkpoints and "
        "the final test evaluation. The machine has 2 cores shared with other jobs, so absolute figures are noisy; "
        "the paired speed-up divides, per repeat, the 2-process run by the 1-process run that ran next to it. "
        "The last column is how many cores other processes on the machine used during the kept runs (the worst "
        f"run); runs above {args.max_other} were discarded and repeated, up to {args.attempts} tries.",
        f"Raw numbers: `{raw_path}`.",
        "",
    ])
    raw = {
        "machine": info, "settings": settings, "n_train": n_train,
        "samples_per_second": {label(*v): samples[v] for v in VARIANTS},
        "run_medians": {label(*v): per_repeat[v] for v in VARIANTS},
        "speedup": {"cache on": speedup(True), "cache off": speedup(False)},
        "runs": {label(*v): runs[v] for v in VARIANTS},
    }
    md, _ = write_results(stem, markdown, raw, args.out)
    (args.out / f"{stem}.json").unlink()  # the raw numbers stay in the work directory
    raw_path.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    print(markdown)
    print(f"wrote {md} and {raw_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
