"""Closed-loop play speed: participants × trials per second of a language model on the CPU.

    .venv/bin/python benchmarks/play.py [--model M] [--participants N] [--trials T]
                                        [--ways W,W,...] [--out OUT.json]

Ways to get the option log-probs of every participant at every choice (same model, task and
seed; one model load):

- ``cache_batched`` (``psych201 play``'s default): each participant's key/value cache kept, only
  the new tokens run, every participant of the call in one batched pass;
- ``cache_one_at_a_time``: the same caches, one participant per pass;
- ``engine_batch``: the whole transcript of every participant in one engine call per choice
  point (stateless requests the engine batches; every call re-runs every token);
- ``engine_one_at_a_time``: the same stateless requests, one participant per call.

The engine ways re-run the whole transcript at every choice (quadratic in the trials): give
them small sizes. Writes JSON (default ``benchmarks/results/play-<model>-cpu.json``) with
responses/s per way, the speed-ups against ``cache_one_at_a_time``, and the machine's load
average before each way (timings are comparable only within one run on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from psych201.pipeline.players import EngineOptions, LanguageModelPlayers
from psych201.scoring.engines import ScorerSpec, build_scorer
from psych201.scoring.hf_options import CachedOptionScorer
from psych201.scoring.models import load_model
from psych201.simulate import play_study

Items = Sequence[tuple[str, Sequence[int], Sequence[int]]]


class OneAtATime:
    """The engine's stateless requests, one participant per call."""

    def __init__(self, inner: EngineOptions) -> None:
        self.inner = inner

    def score_options(self, items: Items) -> list[npt.NDArray[np.float64]]:
        return [self.inner.score_options([item])[0] for item in items]


def _time(make: Callable[[], LanguageModelPlayers], n: int, trials: int) -> dict[str, Any]:
    load = os.getloadavg()
    start = time.perf_counter()
    _, rows = play_study("bandit", make(), n_participants=n, n_trials=trials, seed=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "responses": len(rows), "responses_per_s": len(rows) / seconds,
            "participant_trials_per_s": n * trials / seconds, "load_average_before": load}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--participants", type=int, default=25)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--ways", default="cache_batched,cache_one_at_a_time")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv[1:])
    out = args.out or Path(__file__).parent / "results" / f"play-{Path(args.model).name}-cpu.json"
    loaded = load_model(args.model)
    raw_model, tokenizer = loaded.model, loaded.tokenizer
    n = args.participants

    @cache
    def engine() -> EngineOptions:  # a second load, only when an engine way is asked for
        built = build_scorer(ScorerSpec(engine="hf", model=args.model))
        assert built.engine is not None
        return EngineOptions(built.engine)

    known: dict[str, Callable[[], LanguageModelPlayers]] = {
        "cache_batched": lambda: LanguageModelPlayers(CachedOptionScorer(raw_model, rows=n),
                                                      tokenizer),
        "cache_one_at_a_time": lambda: LanguageModelPlayers(CachedOptionScorer(raw_model, rows=1),
                                                            tokenizer),
        "engine_batch": lambda: LanguageModelPlayers(engine(), tokenizer),
        "engine_one_at_a_time": lambda: LanguageModelPlayers(OneAtATime(engine()), tokenizer),
    }
    ways = args.ways.split(",")
    unknown = sorted(set(ways) - set(known))
    if unknown:
        parser.error(f"unknown way(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    results = {name: _time(known[name], n, args.trials) for name in ways}
    baseline = results.get("cache_one_at_a_time")
    report = {
        "benchmark": "closed-loop play (bandit task, option log-probs, sample policy)",
        "model": args.model, "participants": n, "trials": args.trials, "dtype": "float32",
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "ways": results,
        "speedup_vs_cache_one_at_a_time": {
            name: baseline["seconds"] / r["seconds"] for name, r in results.items()
        } if baseline else {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
