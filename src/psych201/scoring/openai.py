"""Score through any OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, TGI, ...).

The prompt's own token log-probs come back when a completion request echoes the prompt
(``echo=true``) with ``logprobs`` set. We send token ids, not text, so the server cannot
re-tokenise, and we ask for the ids back (vLLM's ``return_tokens_as_token_ids``) to check that
position ``t`` of the answer really is token ``t`` of the request.

Servers get this wrong in practice (llama-cpp-python's server reports every prompt log-prob one
position off), so :meth:`OpenAICompatEngine.probe` runs before the first request and fails loudly
unless the server (a) echoes exactly the tokens sent, (b) reports at position ``n`` the same
log-prob its own greedy generation reported for the token following an ``n``-token prompt, and
(c) agrees with a reference engine on the probe, when one is given.

Servers return top-k log-probs only, so :attr:`TokenScores.entropy` is NaN for this engine; the
top-1 id comes from ``logprobs=1`` (the server's arg-max at each position).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psych201.scoring.engine import (
    TOPK_ONLY_TEMPERATURES,
    Engine,
    EngineInfo,
    ScoringRequest,
    TokenScores,
)
from psych201.scoring.engine_util import EngineError, check_request, scores_from_topk
from psych201.scoring.engines import BuiltScorer, ScorerSpec, token_scorer
from psych201.scoring.openai_echo import (
    logprobs_block,
    parse_echo,
    retry_after_seconds,
    returns_ids,
    token_id_of,
)

#: HTTP statuses worth retrying: the server is busy or restarting, not rejecting the request.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class OpenAIServer:
    """Where the server is and how hard to push it.

    ``base_url`` ends in ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``); ``model`` is the name the
    server serves. The API key is read from the environment variable ``api_key_env`` at request
    time and never stored or recorded. ``backoff_s`` is the first retry delay; it doubles per
    retry up to ``backoff_max_s`` (a server's ``Retry-After`` wins when it is longer).
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout_s: float = 300.0
    max_retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlparse(self.base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http(s)://..., got {self.base_url!r}")
        if self.concurrency < 1 or self.max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")


@dataclass(frozen=True)
class ProbeResult:
    """What the capability probe found out about a server (recorded in the run manifest)."""

    max_tokens: int  # 0 where the server accepts echo without generation, else 1
    token_ids: bool  # the server returns token ids (``return_tokens_as_token_ids``)
    max_abs_diff: float  # worst disagreement seen on the probe (self-consistency / reference)
    checks: tuple[str, ...] = field(default=())


class ServerError(EngineError):
    """The server answered with an error status that retrying will not fix."""

    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class OpenAICompatEngine:
    """:class:`~psych201.scoring.engine.Engine` over an OpenAI-compatible completions server.

    ``reference`` (optional): an in-process engine for the same model; the probe then also checks
    the server's log-probs against it within ``probe_tolerance`` nats. ``probe_tolerance`` also
    bounds the self-consistency check, so set it to the server's numeric noise (bf16 ≈ 0.02-0.05).
    """

    def __init__(
        self,
        server: OpenAIServer,
        *,
        model_id: str | None = None,
        max_context: int | None = None,
        dtype: str = "server",
        reference: Engine | None = None,
        probe_tolerance: float = 0.02,
        probe_tokens: int = 48,
    ) -> None:
        self.server = server
        self._model_id = model_id or server.model
        self._max_context = max_context
        self._dtype = dtype
        self._reference = reference
        self._probe_tolerance = probe_tolerance
        self._probe_tokens = probe_tokens
        self._probe: ProbeResult | None = None
        self._pool = ThreadPoolExecutor(max_workers=server.concurrency)

    # -- Engine protocol -------------------------------------------------------------------
    @property
    def info(self) -> EngineInfo:
        extra: dict[str, Any] = {
            "base_url": self.server.base_url,
            "entropy": "nan: servers return top-k log-probs only",
            "offered_correct": "null: needs log-probs of ids outside the top-k",
        }
        if self._probe is not None:
            extra["probe"] = {
                "max_tokens": self._probe.max_tokens,
                "token_ids": self._probe.token_ids,
                "max_abs_diff": self._probe.max_abs_diff,
                "checks": list(self._probe.checks),
            }
        return EngineInfo(
            name="openai",
            model_id=self._model_id,
            dtype=self._dtype,
            device=urllib.parse.urlparse(self.server.base_url).netloc,
            max_context=self._max_context,
            extra=extra,
            temperatures=TOPK_ONLY_TEMPERATURES,
        )

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        for request in requests:
            check_request(request, engine="openai", max_context=self._max_context)
        if not requests:
            return []
        if self._probe is None:
            first = max(requests, key=lambda r: r.token_ids.shape[0])
            self.probe(first.token_ids[: self._probe_tokens].tolist())
        return list(self._pool.map(self._score_one, requests))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> OpenAICompatEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- capability probe ------------------------------------------------------------------
    def probe(self, token_ids: Sequence[int]) -> ProbeResult:
        """Check that the server's echoed prompt log-probs are complete, unshifted and correct.

        Raises :class:`EngineError` with the reason when they are not. Runs automatically on the
        first :meth:`score` call, on (a prefix of) the longest request.
        """
        ids = [int(t) for t in token_ids]
        if len(ids) < 4:
            raise ValueError("the probe needs at least 4 tokens")
        checks: list[str] = []
        max_tokens, use_ids, body = self._echo_capability(ids)
        checks.append(f"echo accepted with max_tokens={max_tokens}")
        echoed = parse_echo(body, len(ids), url=self._url())
        if use_ids:
            self._check_ids(echoed.ids, ids, key="probe")
            checks.append("echoed token ids equal the ids sent")
        worst = 0.0
        if use_ids:
            # Greedy consistency at three prompt lengths: the log-prob the server gives its own
            # greedy next token must reappear, at the same position, when that token is echoed.
            for n in sorted({max(2, len(ids) // 3), max(3, (2 * len(ids)) // 3), len(ids)}):
                worst = max(worst, self._greedy_consistency(ids[:n], max_tokens))
            checks.append(f"greedy next-token log-probs reappear at the echoed position "
                          f"(max |Δ| {worst:.2e})")
        elif self._reference is None:
            raise EngineError(
                f"{self._url()}: the server does not return token ids, so the alignment of its "
                "echoed log-probs cannot be checked; pass reference= (an in-process engine for "
                "the same model) or use a server with return_tokens_as_token_ids (vLLM)"
            )
        if self._reference is not None:
            diff = self._compare_reference(ids, echoed.logprobs)
            worst = max(worst, diff)
            checks.append(f"agrees with reference engine (max |Δ| {diff:.2e})")
        self._probe = ProbeResult(max_tokens, use_ids, worst, tuple(checks))
        return self._probe

    def _echo_capability(self, ids: list[int]) -> tuple[int, bool, dict[str, Any]]:
        """Find the request shape the server accepts: prefer no generation and token ids back."""
        last: ServerError | None = None
        for max_tokens in (0, 1):
            for use_ids in (True, False):
                try:
                    body = self._post(self._echo_payload(ids, max_tokens, use_ids))
                except ServerError as err:
                    if err.status not in (400, 422):
                        raise
                    last = err
                    continue
                if use_ids and not returns_ids(body):
                    use_ids = False
                return max_tokens, use_ids, body
        raise EngineError(
            f"{self._url()}: the server rejects echo + logprobs completions, so it cannot return "
            f"prompt log-probs ({last})"
        )

    def _greedy_consistency(self, ids: list[int], max_tokens: int) -> float:
        gen = self._post(
            {
                "model": self.server.model,
                "prompt": ids,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 1,
                "echo": False,
                "return_tokens_as_token_ids": True,
            }
        )
        lp = logprobs_block(gen, self._url())
        tokens = lp.get("tokens") or []
        values = lp.get("token_logprobs") or []
        if not tokens or values[0] is None:
            raise EngineError(f"{self._url()}: greedy generation returned no log-prob")
        next_id = token_id_of(tokens[0])
        if next_id is None:
            raise EngineError(f"{self._url()}: generated token {tokens[0]!r} carries no id")
        echoed = parse_echo(
            self._post(self._echo_payload([*ids, next_id], max_tokens, True)),
            len(ids) + 1,
            url=self._url(),
        )
        diff = abs(echoed.logprobs[len(ids)] - float(values[0]))
        if not diff <= self._probe_tolerance or echoed.top1[len(ids)] != next_id:
            raise EngineError(
                f"{self._url()}: echoed prompt log-probs are shifted or wrong: after a "
                f"{len(ids)}-token prompt the server generates token {next_id} with log-prob "
                f"{float(values[0]):.4f}, but echoing that token reports "
                f"{echoed.logprobs[len(ids)]:.4f} (top-1 {echoed.top1[len(ids)]}) at its "
                f"position; tolerance {self._probe_tolerance}"
            )
        return diff

    def _compare_reference(self, ids: list[int], logprobs: list[float]) -> float:
        assert self._reference is not None
        positions = np.arange(1, len(ids), dtype=np.int64)
        ref = self._reference.score(
            [ScoringRequest("probe", np.asarray(ids, dtype=np.int64), positions)]
        )[0]
        got = np.asarray(logprobs[1:], dtype=np.float64)
        diff = float(np.max(np.abs(got - ref.logprobs)))
        if not diff <= self._probe_tolerance:
            worst = int(np.argmax(np.abs(got - ref.logprobs))) + 1
            raise EngineError(
                f"{self._url()}: server log-probs disagree with the reference engine by up to "
                f"{diff:.4f} nats (position {worst}); tolerance {self._probe_tolerance}"
            )
        return diff

    # -- scoring -----------------------------------------------------------------------------
    def _score_one(self, request: ScoringRequest) -> TokenScores:
        assert self._probe is not None
        ids = request.token_ids.tolist()
        body = self._post(self._echo_payload(ids, self._probe.max_tokens, self._probe.token_ids))
        echoed = parse_echo(body, len(ids), url=self._url(), key=request.key)
        if self._probe.token_ids:
            self._check_ids(echoed.ids, ids, key=request.key)
        targets = request.target_positions.tolist()
        return scores_from_topk(
            request.key,
            [echoed.logprobs[t] for t in targets],
            [echoed.top1[t] for t in targets],
        )

    def _echo_payload(self, ids: list[int], max_tokens: int, use_ids: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.server.model,
            "prompt": ids,
            "echo": True,
            "logprobs": 1,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        if use_ids:
            payload["return_tokens_as_token_ids"] = True
        return payload

    def _check_ids(self, echoed: list[int | None], sent: list[int], *, key: str) -> None:
        for pos, (got, want) in enumerate(zip(echoed, sent, strict=True)):
            if got != want:
                raise EngineError(
                    f"{self._url()}: request {key!r}: echoed token {pos} is {got}, sent {want}; "
                    "the server re-tokenised or shifted the prompt"
                )

    # -- HTTP --------------------------------------------------------------------------------
    def _url(self) -> str:
        return self.server.base_url.rstrip("/") + "/completions"

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with retries: exponential backoff on connection errors and busy statuses."""
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.server.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        url = self._url()
        for attempt in range(self.server.max_retries + 1):
            delay = min(self.server.backoff_s * 2**attempt, self.server.backoff_max_s)
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.server.timeout_s) as resp:
                    result: dict[str, Any] = json.loads(resp.read())
                    return result
            except urllib.error.HTTPError as err:
                body = err.read().decode(errors="replace")
                if err.code not in RETRY_STATUSES or attempt == self.server.max_retries:
                    raise ServerError(err.code, body, url) from None
                retry_after = retry_after_seconds(err.headers.get("Retry-After"))
                delay = max(delay, min(retry_after, self.server.backoff_max_s))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.server.max_retries:
                    raise EngineError(
                        f"{url}: no answer after {attempt + 1} attempts: {err}"
                    ) from err
            time.sleep(delay)
        raise AssertionError("unreachable")


def build(spec: ScorerSpec) -> BuiltScorer:
    """A served model (``options``: :class:`OpenAIServer` fields, ``tokenizer``, ``max_context``);
    ``cache_dir`` goes to the local tokenizer's loader."""
    from psych201.scoring.models import load_tokenizer

    options = dict(spec.options)
    tokenizer_name = options.pop("tokenizer", None)
    if tokenizer_name is None:
        raise ValueError("the openai engine needs options['tokenizer'] (the served model's)")
    max_ctx = options.pop("max_context", None)
    engine = OpenAICompatEngine(OpenAIServer(model=spec.model, **options), max_context=max_ctx)
    tokenizer = load_tokenizer(str(tokenizer_name), **spec.loader_args)
    info = {"id": spec.model, "source": str(options.get("base_url", "")), "file_sha256": None,
            "max_context": engine.info.max_context}
    return token_scorer(spec, engine, tokenizer, spec.model, info)
