"""Benchmark: psych201's scorer against the authors' full-logits loop and lm-eval-style scoring.

All three score the same real sessions (the paper's text and marker-token alignment, so they
score the very same tokens) with the same model:

(a) psych201: ``SessionScorer`` + ``HFEngine`` — one pass per participant, sessions batched by
    length, output layer only at response positions;
(b) authors: one pass per participant with full ``[tokens × vocab]`` logits and token
    cross-entropy (Psych-201 ``0_analyses/eval.py``);
(c) lm-eval style: one pass per response over its whole preceding context plus the response,
    full log-softmax over that sequence (lm-evaluation-harness ``loglikelihood``).

Each approach runs in its own fresh process (same model load, same warm-up) so its peak memory is
its own: we sample the process's resident memory while it scores and report the peak above the
level after loading (on CUDA: ``torch.cuda.max_memory_allocated``). Wall time excludes loading.
The JSON output holds absolute numbers, ratios to (a), and the largest per-response NLL difference
of (b) and (c) from (a) (they must agree; float32 gives ~1e-5). It also states each against the
machine's limit: *useful* FLOPs (one forward per session up to its last response, attention as
the model defines it: a sliding-window layer counts its window; the output layer at responses
only; :mod:`psych201.scoring.plan`) per second of the approach's wall time, and that over the
device's measured matmul peak (useful MFU). Work a method wastes (padding, masked scores, full
logits, repeated contexts) lowers its MFU.

    python benchmarks/scoring.py --model smollm2-135m-instruct --out bench.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "psych201"
DEFAULT_STUDIES = ("dezfouli2019", "guenther2024substitutions", "little2024functionestimation")
APPROACHES = ("psych201", "authors_full_logits", "lm_eval_per_response")


def load_prompts(data: Path, studies: list[str], sessions: int, max_chars: int) -> list[Any]:
    import itertools

    from psych201.data.readers import iter_sessions
    from psych201.data.variants import paper_variant
    from psych201.prompts.records import Prompt

    prompts = []
    for study in studies:
        for session in itertools.islice(iter_sessions(data / study), sessions):
            variant = paper_variant(session, max_chars=max_chars)
            prompts.append(Prompt(variant.text, variant.responses, "paper"))
    return prompts


class PeakMemory:
    """Peak resident memory (bytes) above the level at ``start``, sampled every few ms."""

    def __init__(self, device: str) -> None:
        import psutil
        import torch

        self._torch = torch
        self._cuda = device.startswith("cuda")
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.base = 0
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self._cuda:
            self._torch.cuda.synchronize()
            self._torch.cuda.reset_peak_memory_stats()
            self.base = self._torch.cuda.memory_allocated()
        else:
            self.base = self.peak = self._proc.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self._cuda:
            self._torch.cuda.synchronize()
            self.peak = self._torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def extra_bytes(self) -> int:
        return self.peak - self.base


def run_psych201(loaded: Any, prompts: list[Any], device: str, batch_tokens: int) -> Any:
    from psych201.scoring.align import align
    from psych201.scoring.hf import HFEngine
    from psych201.scoring.scorer import SessionScorer

    engine = HFEngine(loaded, device=device, batch_tokens=batch_tokens)
    scorer = SessionScorer(loaded.tokenizer, engine, alignment="paper")

    # Tokens up to each session's last response: all a causal model needs to see.
    n_tokens = 0
    for prompt in prompts:
        positions = [p for p in align(prompt, loaded.tokenizer, "paper").span_positions if p.size]
        n_tokens += int(positions[-1][-1]) + 1 if positions else 0

    def go() -> tuple[list[list[float]], int]:
        scores = scorer.score(prompts)
        return [[s.nll for s in ps if s.n_tokens] for ps in scores], n_tokens

    return go


def run_authors(loaded: Any, prompts: list[Any], device: str, batch_tokens: int) -> Any:
    import torch

    from psych201.scoring.align import align

    def go() -> tuple[list[list[float]], int]:
        out, n_tokens = [], 0
        for prompt in prompts:
            aligned = align(prompt, loaded.tokenizer, "paper")  # their marker-token labels
            ids = torch.from_numpy(aligned.token_ids)[None].to(device)
            labels = torch.full_like(ids, -100)
            for pos in aligned.span_positions:
                labels[0, torch.from_numpy(pos).to(device)] = ids[0, torch.from_numpy(pos)]
            with torch.inference_mode():
                logits = loaded.model(input_ids=ids, use_cache=False).logits[0, :-1]
                nll = torch.nn.functional.cross_entropy(
                    logits.float(), labels[0, 1:], reduction="none"
                )
            out.append([float(nll[pos - 1].sum()) for pos in aligned.span_positions if pos.size])
            n_tokens += int(ids.shape[1])
            del logits, nll
        return out, n_tokens

    return go


def run_lm_eval(loaded: Any, prompts: list[Any], device: str, batch_tokens: int) -> Any:
    import torch

    from psych201.scoring.align import align

    def go() -> tuple[list[list[float]], int]:
        out, n_tokens = [], 0
        for prompt in prompts:
            aligned = align(prompt, loaded.tokenizer, "paper")
            per_prompt = []
            for pos in aligned.span_positions:
                if not pos.size:
                    continue
                # context + continuation, one request per response
                ids = torch.from_numpy(aligned.token_ids[: int(pos[-1]) + 1])[None].to(device)
                with torch.inference_mode():
                    logits = loaded.model(input_ids=ids, use_cache=False).logits[0]
                    logp = torch.log_softmax(logits.float(), dim=-1)
                    rows = torch.from_numpy(pos - 1).to(device)
                    picked = logp[rows, ids[0, torch.from_numpy(pos).to(device)]]
                per_prompt.append(float(-picked.sum()))
                n_tokens += int(ids.shape[1])
                del logits, logp
            out.append(per_prompt)
        return out, n_tokens

    return go


RUNNERS = {
    "psych201": run_psych201,
    "authors_full_logits": run_authors,
    "lm_eval_per_response": run_lm_eval,
}


def useful_flops(loaded: Any, prompts: list[Any]) -> float:
    """FLOPs of one forward per session up to its last response, head at the responses."""
    from psych201.scoring.align import align
    from psych201.scoring.plan import body_params_of, forward_flops, shape_of

    shape = shape_of(loaded.model.config, body_params_of(loaded.model))
    lengths, targets = [], 0
    for prompt in prompts:
        positions = [p for p in align(prompt, loaded.tokenizer, "paper").span_positions if p.size]
        if positions:
            lengths.append(int(positions[-1][-1]) + 1)
            targets += sum(int(p.size) for p in positions)
    return forward_flops(shape, lengths, targets)


def worker(approach: str, args: dict[str, Any], queue: Any) -> None:
    import torch

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    from psych201.scoring.models import load_model

    t0 = time.perf_counter()
    loaded = load_model(args["model"], dtype=args["dtype"], device=args["device"])
    load_s = time.perf_counter() - t0
    prompts = load_prompts(Path(args["data"]), args["studies"], args["sessions"], args["max_chars"])
    go = RUNNERS[approach](loaded, prompts, args["device"], args["batch_tokens"])
    with torch.inference_mode():  # same warm-up for everyone: first-call kernel set-up
        loaded.model(input_ids=torch.ones((1, 8), dtype=torch.long, device=args["device"]))
    with PeakMemory(args["device"]) as mem:
        t0 = time.perf_counter()
        nlls, n_tokens = go()
        wall = time.perf_counter() - t0
    queue.put(
        {
            "approach": approach,
            "load_s": load_s,
            "wall_s": wall,
            "peak_extra_bytes": mem.extra_bytes,
            "baseline_bytes": mem.base,
            "tokens_forwarded": n_tokens,
            "useful_flops": useful_flops(loaded, prompts),
            "n_responses": sum(len(x) for x in nlls),
            "nlls": nlls,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--studies", default=",".join(DEFAULT_STUDIES))
    parser.add_argument("--sessions", type=int, default=1, help="sessions per study")
    parser.add_argument("--max-chars", type=int, default=3000, help="paper truncation budget")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--approaches", default=",".join(APPROACHES))
    parser.add_argument("--out", type=Path, default=Path("benchmark-scoring.json"))
    ns = parser.parse_args()
    args = {
        "model": ns.model,
        "data": str(ns.data),
        "studies": [s for s in ns.studies.split(",") if s],
        "sessions": ns.sessions,
        "max_chars": ns.max_chars,
        "dtype": ns.dtype,
        "device": ns.device,
        "batch_tokens": ns.batch_tokens,
        "threads": ns.threads,
    }
    import torch

    from psych201.scoring.plan import matmul_peak

    if ns.threads:
        torch.set_num_threads(ns.threads)
    peak = matmul_peak(ns.device, ns.dtype)
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s ({ns.dtype}, {ns.device})", flush=True)
    ctx = mp.get_context("spawn")
    results: dict[str, dict[str, Any]] = {}
    for approach in ns.approaches.split(","):
        queue = ctx.Queue()
        proc = ctx.Process(target=worker, args=(approach, args, queue))
        proc.start()
        results[approach] = queue.get()
        proc.join()
        r = results[approach]
        print(
            f"{approach:22s} {r['wall_s']:8.2f} s  peak +{r['peak_extra_bytes'] / 2**20:8.1f} MiB"
            f"  {r['tokens_forwarded']:7d} tokens  {r['n_responses']} responses",
            flush=True,
        )
    ref = results.get("psych201")
    summary: dict[str, Any] = {
        "config": args,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "matmul_peak_flops_per_s": peak,
            "load_average": os.getloadavg(),
        },
        "results": {},
    }
    for approach, r in results.items():
        entry = {k: v for k, v in r.items() if k != "nlls"}
        if ref is not None:
            entry["time_ratio_vs_psych201"] = r["wall_s"] / ref["wall_s"]
            entry["memory_ratio_vs_psych201"] = r["peak_extra_bytes"] / max(
                ref["peak_extra_bytes"], 1
            )
            diffs = [
                abs(a - b)
                for xs, ys in zip(r["nlls"], ref["nlls"], strict=True)
                for a, b in zip(xs, ys, strict=True)
            ]
            entry["max_abs_nll_diff_vs_psych201"] = max(diffs) if diffs else 0.0
        entry["tokens_per_s"] = r["tokens_forwarded"] / r["wall_s"]
        entry["useful_flops_per_s"] = r["useful_flops"] / r["wall_s"]
        entry["useful_mfu"] = entry["useful_flops_per_s"] / peak
        summary["results"][approach] = entry
    ns.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
