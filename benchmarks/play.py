"""Closed-loop play speed: participants × trials per second of a language model on the CPU.

    .venv/bin/python benchmarks/play.py [MODEL] [PARTICIPANTS] [TRIALS] [OUT.json]

Three ways to get the option log-probs of every participant at every choice (same model, same
task, same seed; one model load):

- ``batch``: the whole transcript of every participant in one engine call per choice point
  (the engine batches them; every call re-runs every token);
- ``one at a time``: the same stateless requests, one participant per engine call;
- ``cache`` (the default of ``psych201 play``): each participant's key/value cache kept, only
  the new tokens of each choice run.

Writes JSON (default ``benchmarks/results/play-<model>-cpu.json``) with responses/s and
participants × trials/s per way, and the machine's load average (the timings are only
comparable on an otherwise idle machine).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from psych201.pipeline.players import EngineOptions, LanguageModelPlayers
from psych201.scoring.engines import ScorerSpec, build_scorer
from psych201.scoring.hf_options import CachedOptionScorer
from psych201.simulate import play_study

Items = Sequence[tuple[str, Sequence[int], Sequence[int]]]


class OneAtATime:
    """The engine's stateless requests, one participant per call."""

    def __init__(self, inner: EngineOptions) -> None:
        self.inner = inner

    def score_options(self, items: Items) -> list[npt.NDArray[np.float64]]:
        return [self.inner.score_options([item])[0] for item in items]


def _time(make: Callable[[], LanguageModelPlayers], n: int, trials: int) -> dict[str, float]:
    start = time.perf_counter()
    _, rows = play_study("bandit", make(), n_participants=n, n_trials=trials, seed=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "responses": len(rows), "responses_per_s": len(rows) / seconds,
            "participant_trials_per_s": n * trials / seconds}


def main(argv: list[str]) -> int:
    model = argv[1] if len(argv) > 1 else "gemma-3-270m"
    n = int(argv[2]) if len(argv) > 2 else 8
    trials = int(argv[3]) if len(argv) > 3 else 10
    out = Path(argv[4]) if len(argv) > 4 else (
        Path(__file__).parent / "results" / f"play-{Path(model).name}-cpu.json")
    built = build_scorer(ScorerSpec(engine="hf", model=model))
    assert built.engine is not None
    engine, tokenizer = EngineOptions(built.engine), built.tokenizer
    raw_model = built.engine._model  # the loaded transformers model, shared by the cache way
    ways: dict[str, Callable[[], LanguageModelPlayers]] = {
        "batch": lambda: LanguageModelPlayers(engine, tokenizer),
        "one_at_a_time": lambda: LanguageModelPlayers(OneAtATime(engine), tokenizer),
        "cache": lambda: LanguageModelPlayers(CachedOptionScorer(raw_model), tokenizer),
    }
    results = {name: _time(make, n, trials) for name, make in ways.items()}
    report = {
        "benchmark": "closed-loop play (bandit task, option log-probs, sample policy)",
        "model": model, "participants": n, "trials": trials, "dtype": "float32",
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(),
        "ways": results,
        "speedup_batch_vs_one_at_a_time": results["one_at_a_time"]["seconds"]
        / results["batch"]["seconds"],
        "speedup_cache_vs_batch": results["batch"]["seconds"] / results["cache"]["seconds"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
