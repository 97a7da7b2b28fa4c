"""What the latency protocol's stability judgement sees: per-sample CoV against p50_spread and p95_spread.

Two ONNX models, each run in ONNX Runtime with one thread on a fixed batch-1 input and timed
with ``edgekd.ondevice.latency.measure_latency`` (the profile stage's protocol) several times:

- tiny: one 3x3 convolution, 8 channels, on 1x8x8 (tens of microseconds: OS jitter and the
  timer's granularity dominate single runs);
- bigger: a few 3x3 convolutions, 64 channels, on 3x32x32 (milliseconds).

After one warm-up (the protocol's), each measurement is one timed loop of the protocol
(``edgekd.ondevice.latency``: at least ``--runs`` runs and ``--seconds`` seconds, summarized as
the profile stage does, nothing retried) and reports its per-sample coefficient of variation
(std/mean) and ``p50_spread``: (max - min) of the medians of 5 consecutive blocks of the loop's
runs, over the median of all runs. "shuffled" is the p50_spread of the same runs in a random
order: what sampling noise alone gives with this loop's jitter, i.e. what a machine whose speed
never changed would show; the difference to the in-order figure is the machine's drift. The
threshold (``profile.stability_threshold``) should sit well above the shuffled figure, so only a
median that really moved is flagged.

    .venv/bin/python benchmarks/latency_stability.py [--measurements 8] [--seconds 2]
    .venv/bin/python benchmarks/latency_stability.py --quick   # a smoke run: 2 short measurements

Writes latency_stability.md and .json to --out (latency_stability_quick.* with --quick).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (bench_parser, command_line, header, machine_info, markdown_table, parse_bench_args,  # noqa: E402
                    results_stem, setup_environment, write_results)

from edgekd.ondevice.latency import BLOCKS, _timed_loop, p50_spread, percentile_spread, summarize  # noqa: E402
from edgekd.ondevice.settings import LATENCY, LatencySettings  # noqa: E402

MODELS = {
    "tiny": (lambda: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10)),
             (1, 1, 8, 8)),
    "bigger": (lambda: nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(64, 10)),
               (1, 3, 32, 32)),
}


def session(name: str, folder: Path):
    import onnxruntime as ort

    build, shape = MODELS[name]
    torch.manual_seed(0)
    model, x = build().eval(), torch.randn(*shape)
    path = folder / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: sess.run(None, feed)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--measurements", type=int, default=8, help="timed loops per model (default %(default)d)")
    parser.add_argument("--seconds", type=float, default=LATENCY.min_seconds, help="each loop times at least this long "
                        "(default %(default)g, the profile default)")
    parser.add_argument("--runs", type=int, default=LATENCY.runs, help="... and at least this many runs (default %(default)d)")
    args = parse_bench_args(parser, argv, quick={"measurements": 2, "seconds": 0.2, "runs": 100})
    setup_environment(args.workdir, 1)
    info = machine_info()
    settings = LatencySettings(warmup_s=min(LATENCY.warmup_s, args.seconds), runs=args.runs, min_seconds=args.seconds)
    raw: dict = {"machine": info, "command": command_line("latency_stability.py", argv), "blocks": BLOCKS, "models": {}}
    rows = []
    for name in MODELS:
        infer = session(name, args.workdir)
        started = time.perf_counter()
        while time.perf_counter() - started < settings.warmup_s:
            infer()
        kept, rng = [], np.random.default_rng(0)
        for _ in range(args.measurements):
            samples = _timed_loop(infer, settings)[0]
            stats = summarize(samples)
            kept.append({"p50": stats["p50"], "cov": stats["cov"], "p50_spread": stats["p50_spread"],
                         "shuffled_p50_spread": p50_spread(rng.permutation(samples)), "runs": stats["runs"],
                         "p95_spread": stats["tail_spread"]["p95"],
                         "shuffled_p95_spread": percentile_spread(rng.permutation(samples), 95)})
        raw["models"][name] = kept
        covs, spreads = [m["cov"] for m in kept], [m["p50_spread"] for m in kept if m["p50_spread"] is not None]
        shuffled = [m["shuffled_p50_spread"] for m in kept if m["shuffled_p50_spread"] is not None]
        tails = [m["p95_spread"] for m in kept if m["p95_spread"] is not None]
        shuffled_tails = [m["shuffled_p95_spread"] for m in kept if m["shuffled_p95_spread"] is not None]
        p50 = statistics.median(m["p50"] for m in kept) * 1000
        fig = lambda values: f"{statistics.median(values):.4f}" if values else "-"  # noqa: E731
        rows.append([name, f"{p50:.1f}", len(kept), f"{statistics.median(covs):.3f}", f"{max(covs):.3f}",
                     fig(spreads), f"{max(spreads):.4f}" if spreads else "-", fig(shuffled),
                     f"{max(shuffled):.4f}" if shuffled else "-", " ".join(f"{s:.3f}" for s in spreads),
                     fig(tails), f"{max(tails):.4f}" if tails else "-", f"{max(shuffled_tails):.4f}" if shuffled_tails else "-",
                     " ".join(f"{s:.3f}" for s in tails)])
        print(f"{name}: {rows[-1]}", flush=True)
    table = markdown_table(["model", "p50 µs", "loops", "CoV median", "CoV max", "p50_spread median", "p50_spread max",
                            "shuffled median", "shuffled max", "p50_spread, each loop", "p95_spread median", "p95_spread max",
                            "p95 shuffled max", "p95_spread, each loop"], rows,
                           ["l", "r", "r", "r", "r", "r", "r", "r", "r", "l", "r", "r", "r", "l"])
    markdown = header("Latency stability: per-sample CoV against p50_spread and p95_spread", info,
                      {"command": raw["command"], "threads": 1, "blocks": BLOCKS}) + "\n" + table + "\n"
    print(table)
    write_results(results_stem("latency_stability", args.quick), markdown, raw, args.out)


if __name__ == "__main__":
    main()
