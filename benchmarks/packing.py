"""Benchmark: packed vs padded HF engine, side by side in one process, with FLOP/s and MFU.

Two workloads on real Psych-201 sessions (paper text):

- ``long``: one session of at least ``--long-tokens`` tokens (Gemma 3 270M by default): the
  engine with stock transformers attention (``packing=off``: dense masked SDPA, every score of
  the sliding-window layers computed) against ``packing=on`` (per-sequence SDPA, sliding-window
  layers in window blocks);
- ``mix``: the first sessions of every shared study, cut to ``--mix-chars`` characters: padded
  batches against packed rows.

Runs alternate (A, B, A, B, ...) so a loaded machine slows both alike; the JSON reports the best
and median tokens/s of each, their ratio, useful FLOP/s (attention counted as the model defines
it: a sliding-window layer counts its window), MFU against the measured fp32/bf16 matmul peak of
the same device, and the largest per-token log-prob difference between the two.

    python benchmarks/packing.py --out benchmarks/results/packing-cpu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "psych201"


def real_requests(tokenizer: Any, texts: list[Any]) -> list[Any]:
    from psych201.scoring.align import align
    from psych201.scoring.scorer import Window, _all_targets, _request

    out = []
    for i, prompt in enumerate(texts):
        a = align(prompt, tokenizer, "paper")
        targets = _all_targets(a)
        if targets.size:  # one window over the whole session, as the scorer sends it
            out.append(_request(str(i), a, Window(0, int(targets[-1]) + 1, targets), {}))
    return out


def long_prompt(data: Path, tokenizer: Any, min_tokens: int) -> Any:
    from psych201.data.readers import discover_studies, iter_sessions
    from psych201.data.variants import paper_variant
    from psych201.prompts.records import Prompt

    for source in discover_studies(data):
        for session in itertools.islice(iter_sessions(source.path), 3):
            variant = paper_variant(session, max_chars=4 * min_tokens + 8_000)
            n = len(tokenizer(variant.text)["input_ids"])
            if n >= min_tokens and variant.responses:
                return Prompt(variant.text, variant.responses, "paper")
    raise SystemExit(f"no shared session has {min_tokens} tokens")


def mix_prompts(data: Path, max_chars: int) -> list[Any]:
    from psych201.data.readers import discover_studies, iter_sessions
    from psych201.data.variants import paper_variant
    from psych201.prompts.records import Prompt

    out = []
    for source in discover_studies(data):
        for session in itertools.islice(iter_sessions(source.path), 2):
            variant = paper_variant(session, max_chars=max_chars)
            if variant.responses:
                out.append(Prompt(variant.text, variant.responses, "paper"))
    return out


def side_by_side(
    model: Any, requests: list[Any], configs: dict[str, dict[str, Any]], repeats: int,
    peak: float,
) -> dict[str, Any]:
    from psych201.scoring.hf import HFEngine
    from psych201.scoring.plan import body_params_of, forward_flops, shape_of

    engines = {name: HFEngine(model, **kw) for name, kw in configs.items()}
    shape = shape_of(model.config, body_params_of(model))
    tokens = sum(int(r.token_ids.size) for r in requests)
    targets = sum(int(r.target_positions.size) for r in requests)
    flops = forward_flops(shape, [int(r.token_ids.size) for r in requests], targets)
    times: dict[str, list[float]] = {name: [] for name in engines}
    scores: dict[str, Any] = {}
    for _ in range(repeats):
        for name, engine in engines.items():
            t = time.perf_counter()
            scores[name] = engine.score(requests)
            times[name].append(time.perf_counter() - t)
    a, b = list(engines)
    gap = max(
        float(np.max(np.abs(x.logprobs - y.logprobs)))
        for x, y in zip(scores[a], scores[b], strict=True)
    )
    out: dict[str, Any] = {
        "sequences": len(requests), "tokens": tokens, "targets": targets,
        "useful_flops": flops, "max_abs_logprob_diff": gap,
    }
    for name in engines:
        best = min(times[name])
        out[name] = {
            "engine_packing": engines[name].info.extra["packing"],
            "seconds": times[name],
            "tokens_per_s_best": tokens / best,
            "tokens_per_s_median": tokens / statistics.median(times[name]),
            "flops_per_s": flops / best,
            "mfu": flops / best / peak,
        }
    out["speedup_best"] = out[b]["tokens_per_s_best"] / out[a]["tokens_per_s_best"]
    out["speedup_median"] = out[b]["tokens_per_s_median"] / out[a]["tokens_per_s_median"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--long-tokens", type=int, default=8192)
    parser.add_argument("--mix-chars", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workloads", default="long,mix")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmark-packing.json"))
    args = parser.parse_args()

    import torch

    from psych201.scoring.models import load_model
    from psych201.scoring.plan import matmul_peak

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    peak = matmul_peak(args.device, args.dtype)
    result: dict[str, Any] = {
        "model": loaded.model_id, "device": args.device, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(), "matmul_peak_flops_per_s": peak,
        "torch": torch.__version__,
    }
    budget = max(args.long_tokens + 16, 8192)
    if "long" in args.workloads:
        prompt = long_prompt(args.data, loaded.tokenizer, args.long_tokens)
        reqs = real_requests(loaded.tokenizer, [prompt])
        result["long"] = side_by_side(
            loaded.model, reqs,
            {"stock_attention": {"packing": "off", "batch_tokens": budget},
             "packed_windowed": {"packing": "on", "batch_tokens": budget}},
            args.repeats, peak,
        )
    if "mix" in args.workloads:
        reqs = real_requests(loaded.tokenizer, mix_prompts(args.data, args.mix_chars))
        result["mix"] = side_by_side(
            loaded.model, reqs,
            {"padded": {"packing": "off", "batch_tokens": 8192},
             "packed": {"packing": "on", "batch_tokens": 8192}},
            args.repeats, peak,
        )
    result["load_average_after"] = os.getloadavg()
    # The roof is the best matmul rate seen before or after: on a shared machine one reading
    # taken under a load spike would overstate every MFU.
    peak = max(peak, matmul_peak(args.device, args.dtype))
    result["matmul_peak_flops_per_s"] = peak
    for part in (result.get("long"), result.get("mix")):
        for entry in (part or {}).values():
            if isinstance(entry, dict) and "flops_per_s" in entry:
                entry["mfu"] = entry["flops_per_s"] / peak
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
