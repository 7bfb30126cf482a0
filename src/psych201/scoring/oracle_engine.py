"""The oracle as an engine: ``psych201 score --engine oracle`` on simulated data.

It scores each response with the generating cognitive model's stored choice probabilities
(:class:`~psych201.scoring.oracle.OracleScorer` reads them), so its run directory holds the
ceiling every language model is compared against, in ``compare`` and ``report`` like any model.

``--engine-args temperature=T`` (default 1) scores with ``p^(1/T)`` renormalised over the offered
options instead of ``p``; its model id is ``oracle-T<T>``, so tempered and exact oracles can be
compared side by side. ``nll_temperature`` holds the NLL of each response under ``q^(1/t)``
renormalised, for each ``t`` of :data:`~psych201.scoring.engine.TEMPERATURE_GRID`, where ``q`` is
the (tempered) oracle's distribution: at ``t = 1`` it is ``nll`` exactly.

The distribution over the options is known where the generating model chose among one or two
(the stored log-likelihood of the choice and its complement); with more options only the
chosen one is stored, so only the exact oracle (``T = 1``) can score them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from psych201.data.records import Session
from psych201.errors import UsageError
from psych201.prompts.options import response_options
from psych201.prompts.records import Prompt
from psych201.scoring.engine import TEMPERATURE_GRID, EngineInfo
from psych201.scoring.engines import BuiltScorer, ScorerSpec
from psych201.scoring.oracle import OracleError, OracleScorer
from psych201.scoring.scorer import SpanScore


class TemperedOracle:
    """A :class:`~psych201.scoring.protocols.SessionAwareScorer` over stored log-likelihoods."""

    def __init__(self, temperature: float = 1.0) -> None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise UsageError(f"--engine-args temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.exact = OracleScorer()

    @property
    def model_id(self) -> str:
        return "oracle" if self.temperature == 1.0 else f"oracle-T{self.temperature:g}"

    def score_paired(
        self, prompts: Sequence[Prompt], sessions: Sequence[Session]
    ) -> list[list[SpanScore]]:
        exact = self.exact.score(prompts, sessions)
        out = []
        for prompt, session, scores in zip(prompts, sessions, exact, strict=True):
            # The offered sets as the transcript names them (the discrete condition's own when it
            # computed them), looked up by response index whatever the condition kept.
            named = dict(zip((r.index for r in session.responses), response_options(session),
                             strict=True))
            offered = [
                prompt.options[i] if prompt.options else named.get(span.index)
                for i, span in enumerate(prompt.spans)
            ]
            out.append([
                self._span(score, session, offered[i], prompt.spans[i].text.strip())
                for i, score in enumerate(scores)
            ])
        return out

    def _span(
        self, exact: SpanScore, session: Session, offered: frozenset[str] | None, chosen: str
    ) -> SpanScore:
        loglik = -exact.nll
        k = _n_options(session, exact.index)
        if k is None or k > 2:
            if self.temperature != 1.0:
                raise OracleError(
                    f"{session.source or session.study}, line {session.line}: response "
                    f"{exact.index} chose among {k or 'an unknown number of'} options; only the "
                    "chosen one's probability is stored, so it cannot be tempered"
                )
            return exact
        # The chosen option first; the other (if any) has the complement probability.
        logp = [loglik] if k == 1 else [loglik, _log1mexp(loglik)]
        # The stored probabilities sum to one already: renormalising them would only round.
        logq = logp if self.temperature == 1.0 else _tempered(logp, self.temperature)
        nll = exact.nll if self.temperature == 1.0 else -logq[0]
        grid = tuple(nll if t == 1.0 else -_tempered(logq, t)[0] for t in TEMPERATURE_GRID)
        q = [math.exp(v) for v in logq]
        top1 = True if k == 1 or q[0] > q[1] else (None if q[0] == q[1] else False)
        entropy = -sum(p * v for p, v in zip(q, logq, strict=True) if p > 0)
        options, logprobs = _offered(offered, chosen, logq)
        return SpanScore(
            index=exact.index,
            n_tokens=1,
            nll=nll,
            top1_correct=top1,
            entropy=entropy,
            context_tokens=0,
            truncated=False,
            offered_correct=None if options is None else top1,
            n_offered=k,
            nll_temperature=grid,
            offered_options=options,
            offered_logprobs=logprobs,
        )



def _offered(
    offered: frozenset[str] | None, chosen: str, logq: list[float]
) -> tuple[tuple[str, ...] | None, tuple[float, ...] | None]:
    """The offered options (sorted) and their log q: the chosen one's, the other the rest."""
    if offered is None or len(offered) != len(logq) or chosen not in offered:
        return None, None
    names = tuple(sorted(offered))
    logprob = {chosen: logq[0], **{n: logq[1] for n in names if n != chosen}}
    return names, tuple(logprob[n] for n in names)


def _n_options(session: Session, index: int) -> int | None:
    raw = session.metadata.get("n_options")
    if raw is None:
        return None
    values = list(raw)
    return int(values[index]) if 0 <= index < len(values) else None


def _log1mexp(x: float) -> float:
    """``log(1 - exp(x))`` for ``x <= 0`` without cancellation in either regime."""
    if x == 0.0:
        return -math.inf
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def _tempered(logp: Sequence[float], t: float) -> list[float]:
    """``log(p^(1/t) / sum p^(1/t))`` from ``log p`` (entries of -inf stay -inf)."""
    scaled = [v / t for v in logp]
    peak = max(scaled)
    norm = peak + math.log(sum(math.exp(v - peak) for v in scaled))
    return [v - norm for v in scaled]


def build(spec: ScorerSpec) -> BuiltScorer:
    """The oracle on ``--data``'s simulated sessions; ``options``: ``temperature`` only."""
    options = dict(spec.options)
    temperature = float(options.pop("temperature", 1.0))
    if options:
        raise UsageError(
            f"--engine-args: the oracle takes only temperature, not {', '.join(sorted(options))}"
        )
    scorer = TemperedOracle(temperature)
    info = EngineInfo(
        name="oracle",
        model_id=scorer.model_id,
        dtype="float64",
        device="cpu",
        max_context=None,
        extra={"temperature": temperature, "field": scorer.exact.field},
    )
    model_info = {"id": scorer.model_id, "source": "stored log-likelihoods (metadata loglik)",
                  "file_sha256": None, "max_context": None}
    return BuiltScorer(scorer, info, None, scorer.model_id, model_info)
