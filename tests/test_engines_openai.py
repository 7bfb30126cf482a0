"""OpenAI-compatible engine against a toy completions server on 127.0.0.1.

The toy server implements the ``/v1/completions`` echo + logprobs contract over a tiny bigram
model whose exact log-probs an in-process engine also computes, so every number can be checked.
Its failure modes reproduce what real servers do wrong: shifted prompt log-probs
(llama-cpp-python's server), no echo support, ``max_tokens=0`` rejected, no token ids, and
transient 503s. The same engine against a real vLLM server is tested in test_engines_parity.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from psych201.scoring.engine import Engine, EngineInfo, ScoringRequest, TokenScores
from psych201.scoring.engine_util import EngineError, scores_from_logits
from psych201.scoring.openai import OpenAICompatEngine, OpenAIServer, ServerError

VOCAB = 64
_W = np.random.default_rng(7).normal(0.0, 2.0, size=(VOCAB, VOCAB))
_LOGP = _W - np.log(np.exp(_W).sum(axis=1, keepdims=True))  # row = previous token


class BigramEngine:
    """In-process reference for the toy model (full distribution, so entropy is exact)."""

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("bigram", "bigram", "float64", "cpu", None)

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        return [
            scores_from_logits(
                r.key, _W[r.token_ids[r.target_positions - 1]], r.token_ids[r.target_positions]
            )
            for r in requests
        ]


@dataclass
class ServerState:
    shift: bool = False  # report log P(x_t | x_<=t) - llama-cpp-python's off-by-one
    echo: bool = True
    accept_zero: bool = True
    token_ids: bool = True
    fail_first: int = 0  # answer 503 to this many requests first
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _tok(i: int, ids: bool) -> str:
    return f"token_id:{i}" if ids else f"t{i}"


def _complete(state: ServerState, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    ids = [int(t) for t in body["prompt"]]
    max_tokens = int(body.get("max_tokens", 16))
    if max_tokens == 0 and not state.accept_zero:
        return 400, {"error": {"message": "max_tokens must be at least 1"}}
    as_ids = state.token_ids and bool(body.get("return_tokens_as_token_ids"))
    greedy = int(np.argmax(_LOGP[ids[-1]]))
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    if body.get("echo") and state.echo:
        for t, tid in enumerate(ids):
            if t == 0:
                tokens.append(_tok(tid, as_ids))
                values.append(None)
                tops.append(None)
                continue
            row = _LOGP[ids[t] if state.shift else ids[t - 1]]
            best = int(np.argmax(row))
            tokens.append(_tok(tid, as_ids))
            values.append(float(row[tid]))
            tops.append({_tok(best, as_ids): float(row[best]), _tok(tid, as_ids): float(row[tid])})
    for _ in range(max_tokens):
        tokens.append(_tok(greedy, as_ids))
        values.append(float(_LOGP[ids[-1], greedy]))
        tops.append({_tok(greedy, as_ids): float(_LOGP[ids[-1], greedy])})
    offsets = list(range(len(tokens)))
    logprobs = {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
                "text_offset": offsets}
    return 200, {"choices": [{"text": "", "logprobs": logprobs, "finish_reason": "length"}]}


@pytest.fixture
def toy_server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                failing = len(state.requests) <= state.fail_first
            status, answer = (503, {"error": "busy"}) if failing else _complete(state, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _requests(n: int, seed: int = 0) -> list[ScoringRequest]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(8, 60))
        ids = rng.integers(0, VOCAB, size=length).astype(np.int64)
        targets = np.sort(rng.choice(np.arange(1, length), size=min(5, length - 1), replace=False))
        out.append(ScoringRequest(f"r{i}", ids, targets.astype(np.int64)))
    return out


def _server(url: str, **kw: Any) -> OpenAIServer:
    return OpenAIServer(url, "toy", backoff_s=0.01, backoff_max_s=0.05, **kw)


def test_scores_match_reference_in_order_under_concurrency(toy_server):
    url, state = toy_server
    requests = _requests(24)
    with OpenAICompatEngine(_server(url, concurrency=4)) as engine:
        assert isinstance(engine, Engine)
        got = engine.score(requests)
        info = engine.info
    want = BigramEngine().score(requests)
    assert [g.key for g in got] == [r.key for r in requests]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(g.top1, w.top1)
        assert np.isnan(g.entropy).all()  # top-k only: documented NaN
    assert info.extra["probe"]["max_tokens"] == 0
    assert info.extra["probe"]["token_ids"] is True
    scoring_calls = [b for b in state.requests if b["prompt"] in [r.token_ids.tolist()
                                                                   for r in requests]]
    assert all(b["echo"] and b["logprobs"] == 1 and b["max_tokens"] == 0 for b in scoring_calls)


def test_probe_falls_back_to_one_generated_token(toy_server):
    url, state = toy_server
    state.accept_zero = False
    engine = OpenAICompatEngine(_server(url))
    requests = _requests(3, seed=1)
    got = engine.score(requests)
    assert engine.info.extra["probe"]["max_tokens"] == 1
    want = BigramEngine().score(requests)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-12)


def test_probe_rejects_shifted_prompt_logprobs(toy_server):
    url, state = toy_server
    state.shift = True
    engine = OpenAICompatEngine(_server(url))
    with pytest.raises(EngineError, match="shifted or wrong"):
        engine.score(_requests(2))


def test_probe_rejects_server_without_echo(toy_server):
    url, state = toy_server
    state.echo = False
    with pytest.raises(EngineError, match="does not return prompt log-probs"):
        OpenAICompatEngine(_server(url)).score(_requests(1))


def test_text_only_server_needs_a_reference(toy_server):
    url, state = toy_server
    state.token_ids = False
    requests = _requests(4, seed=3)
    with pytest.raises(EngineError, match="does not return token ids"):
        OpenAICompatEngine(_server(url)).score(requests)
    engine = OpenAICompatEngine(_server(url), reference=BigramEngine())
    got = engine.score(requests)
    want = BigramEngine().score(requests)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-12)
    assert engine.info.extra["probe"]["token_ids"] is False


def test_reference_disagreement_fails_loudly(toy_server):
    url, _ = toy_server

    class Wrong(BigramEngine):
        def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
            out = super().score(requests)
            return [TokenScores(s.key, s.logprobs - 0.5, s.top1, s.entropy) for s in out]

    with pytest.raises(EngineError, match="disagree with the reference"):
        OpenAICompatEngine(_server(url), reference=Wrong()).score(_requests(1))


def test_retries_transient_errors_with_backoff(toy_server):
    url, state = toy_server
    state.fail_first = 3
    requests = _requests(2, seed=4)
    got = OpenAICompatEngine(_server(url, max_retries=3, concurrency=1)).score(requests)
    np.testing.assert_allclose(got[0].logprobs, BigramEngine().score(requests)[0].logprobs)
    assert len(state.requests) > 3


def test_gives_up_after_max_retries(toy_server):
    url, state = toy_server
    state.fail_first = 100
    with pytest.raises(ServerError, match="HTTP 503"):
        OpenAICompatEngine(_server(url, max_retries=2)).score(_requests(1))
    assert len(state.requests) == 3  # one try + two retries


def test_unreachable_server_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    engine = OpenAICompatEngine(_server(f"http://127.0.0.1:{port}/v1", max_retries=1))
    with pytest.raises(EngineError, match=f"127.0.0.1:{port}.*2 attempts"):
        engine.score(_requests(1))


def test_rejects_bad_requests_and_urls(toy_server):
    url, _ = toy_server
    with pytest.raises(ValueError, match="http"):
        OpenAIServer("file:///etc/passwd", "toy")
    engine = OpenAICompatEngine(_server(url), max_context=10)
    ids = np.arange(12, dtype=np.int64)
    with pytest.raises(ValueError, match="more than the model's context of 10"):
        engine.score([ScoringRequest("long", ids, np.array([3], dtype=np.int64))])
    with pytest.raises(ValueError, match=r"\[1, 5\)"):
        engine.score([ScoringRequest("pos0", ids[:5], np.array([0], dtype=np.int64))])


def test_score_cli_refuses_unknown_engines_and_stray_ray_args(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from psych201.cli import app

    data = tmp_path / "s.jsonl"
    data.write_text('{"text": "Pick <<A>>.", "experiment": "e", "participant": 1}\n')
    runner = CliRunner()
    result = runner.invoke(
        app, ["score", "--data", str(data), "--out", str(tmp_path / "r"), "--engine", "bogus"]
    )
    assert result.exit_code == 2 and "unknown engine 'bogus'" in result.output
    result = runner.invoke(
        app,
        ["score", "--data", str(data), "--out", str(tmp_path / "r"), "--ray-args", "num_workers=2"],
    )
    assert result.exit_code == 2 and "--ray-args needs --engine ray" in result.output
