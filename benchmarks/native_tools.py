"""The vendors' own latency tools, run on an artifact and parsed: OpenVINO ``benchmark_app``, ``litert-benchmark``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgekd.backends.litert.tool import LiteRtBenchmark, parse_litert_benchmark
from edgekd.backends.openvino.tool import parse_benchmark_app

VENV_BIN = Path(sys.executable).parent


def benchmark_app(xml: Path, threads: int, seconds: int) -> dict[str, Any]:
    exe = VENV_BIN / "benchmark_app"
    # benchmark_app refuses -nstreams/-nthreads together with -hint latency ("fine tune options ... set -hint
    # option to none", a UI rule); the same properties go in through -load_config, and the run prints them back.
    config = xml.parent / f"benchmark_app_{threads}t.json"
    config.write_text(json.dumps({"CPU": {"NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": "f32"}}))
    cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync", "-t", str(seconds),
           "-infer_precision", "f32", "-load_config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 6 + 120)
    text = proc.stdout + proc.stderr
    try:  # the SSH runner's parser: benchmark_app prints us, not ms, for models this small
        latency = parse_benchmark_app(text) if proc.returncode == 0 else None
    except ValueError:
        latency = None
    if latency is None or latency["p50"] is None:
        tail = " | ".join(l.strip() for l in text.strip().splitlines()[-3:])
        return {"error": f"benchmark_app rc={proc.returncode}: {tail}", "cmd": " ".join(cmd)}
    props = {k: m.group(1).strip() for k in ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT")
             if (m := re.search(rf"\b{k}:\s*(.+)", text))}
    return {"cmd": " ".join(cmd), "median_ms": latency["p50"], "average_ms": latency["mean"], "min_ms": latency["min"],
            "max_ms": latency["max"], "count": latency["runs"], "compiled_properties": props}


def litert_benchmark(path: Path, threads: int, runs: int, warmup: int, json_path: Path) -> dict[str, Any]:
    """litert-benchmark on ``path`` through edgekd's driver (the profile's): ``median_ms`` is its median before the
    tool rounds it to 0.01 ms (``median_ms_printed``: after, from its JSON)."""
    if not (VENV_BIN / "litert-benchmark").exists():
        return {"error": f"{VENV_BIN / 'litert-benchmark'} not found"}
    driver = LiteRtBenchmark()
    cmd = driver.local_command(str(VENV_BIN / "litert-benchmark"), str(path), {"threads": threads},
                         {"runs": runs, "warmup_runs": warmup}, ["--result_json", str(json_path)])
    shown = driver.shown(cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        latency = parse_litert_benchmark(proc.stdout + proc.stderr) if proc.returncode == 0 else None
    except ValueError:
        latency = None
    if latency is None or "unrounded" not in latency["rounding"] or not json_path.exists():
        tail = " | ".join(l.strip() for l in (proc.stdout + proc.stderr).strip().splitlines()[-3:])
        return {"error": f"litert-benchmark rc={proc.returncode}: {tail}", "cmd": shown}
    printed = json.loads(json_path.read_text())["latency"]
    json_path.unlink()
    return {"cmd": shown, "median_ms": latency["p50"], "median_ms_printed": printed["median_ms"],
            "avg_ms": printed["avg_ms"], "min_ms": printed["min_ms"], "count": printed["num_runs"]}
