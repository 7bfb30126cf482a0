"""Benchmark: what checking every part's SHA-256 costs a rerun, against scoring the bundled demo.

A rerun of a run (complete or not) hashes each part against the record written with it before it
trusts the part (issue 24). This measures, on the bundled demo (``--split all``, 30 participants):

* ``score_s``: a fresh scoring run, end to end in-process (data read, model load, scoring, parts,
  final table), median of ``--repeats``;
* ``check_s``: :func:`psych201.results.writer.damaged_parts` over that run's parts (what a rerun
  adds), median of 50;
* ``rerun_s``: a rerun of the complete run (hash check included), median of ``--repeats``;

and the ratio ``check_s / score_s`` (the issue's budget: at most 2 %). The oracle engine (no
model: scoring is almost free) is the worst case for that ratio; ``--model`` adds a real model
run on the transformers engine.

    python benchmarks/part_hashes.py --out benchmarks/results/part-hashes.json
    python benchmarks/part_hashes.py --model smollm2-135m-instruct --part-size 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _score(args: list[str]) -> None:
    from psych201.cli import app

    code = app(args=args, standalone_mode=False)
    if code:
        raise SystemExit(f"psych201 {' '.join(args)}: exit {code}")


def measure(engine: str, model: str | None, part_size: int, repeats: int) -> dict[str, Any]:
    from psych201.results.writer import damaged_parts, part_paths

    root = Path(tempfile.mkdtemp(prefix="part-hashes-"))
    try:
        flags = ["--data", "demo", "--split", "all", "--engine", engine, "--quiet",
                 "--part-size", str(part_size), *(["--model", model] if model else [])]
        score_times = []
        for i in range(repeats):
            out = root / f"run{i}"
            started = time.perf_counter()
            _score(["score", *flags, "--out", str(out)])
            score_times.append(time.perf_counter() - started)
        run = root / "run0"
        check_times = []
        for _ in range(50):
            started = time.perf_counter()
            assert not damaged_parts(run)
            check_times.append(time.perf_counter() - started)
        rerun_times = []
        for _ in range(repeats):
            started = time.perf_counter()
            _score(["score", *flags, "--out", str(run)])
            rerun_times.append(time.perf_counter() - started)
        score_s, check_s = statistics.median(score_times), statistics.median(check_times)
        return {
            "engine": engine,
            "model": model or "(none: oracle)",
            "part_size": part_size,
            "parts": len(part_paths(run)),
            "part_bytes": sum(p.stat().st_size for p in part_paths(run)),
            "score_s": round(score_s, 4),
            "check_s": round(check_s, 5),
            "rerun_s": round(statistics.median(rerun_times), 4),
            "check_share_of_score": round(check_s / score_s, 5),
            "within_2_percent": check_s <= 0.02 * score_s,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Also measure this model on the transformers engine.")
    parser.add_argument("--part-size", type=int, default=1,
                        help="Participants per part (1: the most parts, the most hashing).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="Write the JSON here.")
    args = parser.parse_args()
    results = [measure("oracle", None, args.part_size, args.repeats)]
    if args.model:
        results.append(measure("hf", args.model, args.part_size, args.repeats))
    report = {
        "benchmark": "part-hashes",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "data": "bundled demo, --split all",
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
