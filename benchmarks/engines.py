"""Throughput and peak memory of every engine on the same real sessions, relative to HF.

    python benchmarks/engines.py --engines hf,vllm,llamacpp,openai --out engines.json

Each engine runs in its own subprocess (a fresh process, so peak memory is its own): the worker
builds the engine, warms it up on one prompt, then scores every prompt once with a SessionScorer
and reports tokens/s (tokens sent to the engine / wall seconds of scoring). The parent samples the
resident memory of the worker's whole process tree (vLLM runs its engine in child processes; the
``openai`` worker starts a vLLM OpenAI server on 127.0.0.1 as its child) every 50 ms and keeps
the peak. Output: one JSON object with each engine's numbers and their ratios to the hf engine.

Engines that are not installed are reported as skipped. Numbers depend on the machine and on
what else runs on it: compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "psych201"
STUDIES = ("busch2024_stroop", "schiekiera2025metascience", "alsobay2025publicGoodsGame",
           "little2024functionestimation")
NEEDS = {"hf": "torch", "vllm": "vllm", "llamacpp": "llama_cpp", "openai": "vllm"}


def _prompts(data: Path, per_study: int, max_chars: int) -> list[Any]:
    from psych201.data.readers import iter_sessions
    from psych201.data.variants import paper_truncate
    from psych201.prompts.conditions import make_condition

    condition = make_condition("raw")
    prompts = []
    for study in STUDIES:
        sessions = []
        for session in iter_sessions(data / study):
            cut = paper_truncate(session, max_chars)
            if cut.responses:
                sessions.append(cut)
            if len(sessions) == per_study:
                break
        prompts.extend(condition.render_study(sessions))
    return prompts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_vllm_server(
    folder: Path, dtype: str, max_len: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
           "--served-model-name", "bench", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", dtype, "--max-model-len", str(max_len), "--max-logprobs", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):
                return proc, base
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError("vLLM server did not start in 600 s")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Build one engine, score the prompts, report tokens/s (runs in its own process)."""
    from psych201.scoring.align import align
    from psych201.scoring.engines import ScorerSpec, build_engine
    from psych201.scoring.scorer import SessionScorer
    from psych201.scoring.vllm import hf_folder

    prompts = _prompts(Path(args.data), args.per_study, args.max_chars)
    options: dict[str, Any] = {}
    server = None
    t0 = time.perf_counter()
    if args.worker == "vllm":
        options = {"max_model_len": args.max_len, "enforce_eager": True}
    elif args.worker == "llamacpp":
        options = {"n_ctx": args.max_len, "n_threads": args.threads}
    elif args.worker == "openai":
        folder, _ = hf_folder(args.model)
        server, base = _start_vllm_server(folder, args.dtype, args.max_len)
        options = {"base_url": base, "tokenizer": args.model, "max_context": args.max_len,
                   "concurrency": 4}
    model = "bench" if args.worker == "openai" else args.model
    try:  # from here on the server (if any) is stopped whatever fails, the probe included
        engine, tokenizer, _ = build_engine(
            ScorerSpec(args.worker, model, dtype=args.dtype, options=options)
        )
        load_s = time.perf_counter() - t0
        scorer = SessionScorer(tokenizer, engine)
        tokens = sum(int(align(p, tokenizer).token_ids.size) for p in prompts)
        scorer.score(prompts[:1])  # warm-up: kernels, caches, the openai probe
        t1 = time.perf_counter()
        scores = scorer.score(prompts)
        wall = time.perf_counter() - t1
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    nll = [s.nll for spans in scores for s in spans]
    return {
        "engine": args.worker,
        "engine_info": {"name": engine.info.name, "dtype": engine.info.dtype,
                        "versions": engine.info.versions},
        "prompts": len(prompts),
        "tokens": tokens,
        "responses": len(nll),
        "mean_nll": sum(nll) / len(nll),
        "load_s": round(load_s, 2),
        "score_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
    }


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_engine(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", engine, "--model", args.model,
           "--dtype", args.dtype, "--per-study", str(args.per_study),
           "--max-chars", str(args.max_chars), "--max-len", str(args.max_len),
           "--threads", str(args.threads), "--data", str(args.data)]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    # A file, not a pipe: a chatty engine could fill a pipe and block the worker.
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        watched = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, _tree_rss(watched))
            time.sleep(0.05)
        stdout.seek(0)
        out = stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        return {"engine": engine, "error": f"worker exited with {proc.returncode}"}
    # Engines may log to stdout too: the worker's answer is its one JSON line.
    line = next(x for x in reversed(out.splitlines()) if x.startswith('{"engine"'))
    result: dict[str, Any] = json.loads(line)
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="hf,vllm,llamacpp,openai")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--per-study", type=int, default=2)
    parser.add_argument("--max-chars", type=int, default=6000)
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "hf" not in engines:
        engines.insert(0, "hf")  # the reference every ratio is taken against
    results: dict[str, Any] = {}
    for engine in engines:
        if importlib.util.find_spec(NEEDS[engine]) is None:
            results[engine] = {"engine": engine, "skipped": f"{NEEDS[engine]} is not installed"}
            continue
        print(f"benchmarking {engine} ...", file=sys.stderr)
        results[engine] = run_engine(engine, args)
    ref = results["hf"]
    for result in results.values():
        if "tokens_per_s" in result and "tokens_per_s" in ref:
            result["tokens_per_s_vs_hf"] = round(result["tokens_per_s"] / ref["tokens_per_s"], 3)
            result["peak_memory_vs_hf"] = round(result["peak_rss_mb"] / ref["peak_rss_mb"], 3)
            result["mean_nll_minus_hf"] = round(result["mean_nll"] - ref["mean_nll"], 5)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "model": args.model,
        "dtype": args.dtype,
        "engines": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
