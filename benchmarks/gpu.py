"""GPU benchmark (run by ``benchmarks/gpu.sh``): HF padded vs HF packed vs vLLM, bf16, one GPU.

A 0.5B-class Qwen2-style config with random weights (no download; the tokenizer is the built-in
Gemma 3 one, ids folded into the vocabulary), scored in bf16 on:

- one session each of 2k, 8k and 32k tokens (random ids);
- a batch of short real sessions (every shared study's first sessions, paper text, ≤ 3,000
  characters), where padding matters.

Each workload reports tokens/s, useful FLOP/s and MFU (:mod:`psych201.scoring.plan`, attention
counted) against the measured bf16 matmul peak, and peak GPU memory. vLLM runs only if it is
installed; otherwise its entry says why not. Written to be correct by construction: no GPU was
available where it was written.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "psych201"


def random_model(layers: int, device: str, dtype: torch.dtype) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=151_936, hidden_size=896, intermediate_size=4_864, num_hidden_layers=layers,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32_768 + 64,
        tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(dtype=dtype, device=device).eval()


def short_requests(vocab: int, max_chars: int) -> list[Any]:
    from psych201.data.readers import discover_studies, iter_sessions
    from psych201.data.variants import paper_variant
    from psych201.scoring.engine import ScoringRequest
    from psych201.scoring.models import load_tokenizer

    tok = load_tokenizer("gemma-3-270m")
    out = []
    for source in discover_studies(DATA):
        for session in itertools.islice(iter_sessions(source.path), 8):
            text = paper_variant(session, max_chars=max_chars).text
            ids = np.asarray(tok(text)["input_ids"], dtype=np.int64) % vocab
            if ids.size > 2:
                targets = np.arange(ids.size // 2, ids.size, dtype=np.int64)
                out.append(ScoringRequest(f"{source.name}/{len(out)}", ids, targets))
    return out


def long_request(vocab: int, n: int) -> Any:
    from psych201.scoring.engine import ScoringRequest

    ids = np.random.default_rng(n).integers(0, vocab, n).astype(np.int64)
    return ScoringRequest(f"long{n}", ids, np.arange(1, n, dtype=np.int64))


def timed(engine: Any, requests: list[Any], flops: float, peak: float) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    engine.score(requests[:1])  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    engine.score(requests)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    tokens = sum(int(r.token_ids.size) for r in requests)
    return {
        "seconds": wall, "tokens_per_s": tokens / wall, "flops_per_s": flops / wall,
        "mfu": flops / wall / peak,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--device", default="cuda", help="cpu only to dry-run the script")
    parser.add_argument("--lengths", default="2048,8192,32768")
    parser.add_argument("--short-chars", type=int, default=3000)
    parser.add_argument("--batch-tokens", type=int, default=65_536)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    args = parser.parse_args()

    from psych201.scoring.hf import HFEngine
    from psych201.scoring.plan import body_params_of, forward_flops, matmul_peak, shape_of

    # bf16 on the GPU; a CPU dry run uses float32 (CPU bf16 matmuls are emulated, far too slow).
    dtype = "float32" if args.device == "cpu" else "bfloat16"
    peak = matmul_peak(args.device, dtype, seconds=1.0 if args.device == "cpu" else 3.0)
    model = random_model(args.layers, args.device, getattr(torch, dtype))
    shape = shape_of(model.config, body_params_of(model))
    vocab = shape.vocab
    workloads = {f"long_{n}": [long_request(vocab, int(n))] for n in args.lengths.split(",")}
    workloads["short_real_sessions"] = short_requests(vocab, args.short_chars)
    budget = args.batch_tokens
    engines: dict[str, Any] = {
        "hf_padded": HFEngine(model, device=args.device, packing="off", batch_tokens=budget),
        "hf_packed": HFEngine(model, device=args.device, packing="on", batch_tokens=budget),
    }
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name() if args.device != "cpu" else "none (cpu dry run)",
        "torch": torch.__version__,
        "dtype": dtype, "matmul_peak_flops_per_s": peak, "params_body": shape.body_params,
        "hf_packed_attention": engines["hf_packed"].packing, "workloads": {},
    }
    try:
        from psych201.scoring.vllm import VLLMConfig, VLLMEngine

        folder = Path(tempfile.mkdtemp(prefix="psych201-gpu-"))
        model.save_pretrained(folder, safe_serialization=True)
        from psych201.scoring.models import load_tokenizer

        load_tokenizer("gemma-3-270m").save_pretrained(folder)
        engines["vllm"] = VLLMEngine(VLLMConfig(
            model=str(folder), dtype="bfloat16", max_model_len=32_768 + 64,
            max_num_batched_tokens=8192, gpu_memory_utilization=0.5,
        ))
    except Exception as exc:  # the benchmark reports what it could not run
        result["vllm_skipped"] = f"{type(exc).__name__}: {exc}"
    for name, requests in workloads.items():
        lengths = [int(r.token_ids.size) for r in requests]
        targets = sum(int(r.target_positions.size) for r in requests)
        flops = forward_flops(shape, lengths, targets)
        entry: dict[str, Any] = {"sequences": len(requests), "tokens": sum(lengths),
                                 "useful_flops": flops}
        for engine_name, engine in engines.items():
            try:
                entry[engine_name] = timed(engine, requests, flops, peak)
            except Exception as exc:  # e.g. out of memory at 32k padded
                entry[engine_name] = {"error": f"{type(exc).__name__}: {exc}"}
        if "tokens_per_s" in entry.get("hf_packed", {}) and "tokens_per_s" in entry.get(
            "hf_padded", {}
        ):
            entry["packed_over_padded"] = (
                entry["hf_packed"]["tokens_per_s"] / entry["hf_padded"]["tokens_per_s"]
            )
        result["workloads"][name] = entry
        print(name, json.dumps(entry), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
