"""Build the representative sets in this folder: stratified by class, seeded, each with a manifest.

    python calibration/build.py                     # every set below
    python calibration/build.py --source builtin:digits --size 128 --name digits-128

A manifest names the data source, its content hash, the split it was drawn from
and the drawn indices; the quantize stage refuses a set whose data or split
does not match the pipeline's (``quantize.calibration: ../calibration/<name>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekd import calibration
from edgekd.data import prepare_data

HERE = Path(__file__).resolve().parent
SETS = [("mnist5k-256", "builtin:mnist5k", 256), ("digits-128", "builtin:digits", 128)]


def build(name: str, source: str, size: int, seed: int, split: tuple[float, float, float]) -> Path:
    data = prepare_data(source, seed=seed, fractions=split)
    cal = calibration.draw(data, size=size, seed=seed)
    path = HERE / name / "manifest.json"
    calibration.save(cal, path)
    print(f"{path.relative_to(HERE.parent)}: {cal.size} samples, per class {cal.per_class}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--name")
    parser.add_argument("--seed", type=int, default=0, help="the pipeline's seed: it fixes the split too")
    parser.add_argument("--split", type=float, nargs=3, default=(0.7, 0.1, 0.2))
    args = parser.parse_args()
    sets = [(args.name or f"custom-{args.size}", args.source, args.size)] if args.source else SETS
    for name, source, size in sets:
        build(name, source, size, args.seed, tuple(args.split))


if __name__ == "__main__":
    main()
