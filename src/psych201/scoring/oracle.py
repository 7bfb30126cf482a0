"""The oracle scorer: the generating model's own log-probabilities, for simulated participants.

Simulated studies (:mod:`psych201.simulate`) store, in each session's ``metadata["loglik"]``, the
natural-log probability the generating cognitive model gave each response. The oracle returns
``nll = -loglik`` for every span a prompt asks about, in the same record shape as the language
model scorer, so a pipeline can put it in place of a model and every analysis can be checked
against ground truth (the oracle's NLL is the best any predictor can do on average).

Unlike an :class:`~psych201.scoring.engine.Engine` (token ids in, token scores out), the oracle
needs the session itself, so :meth:`OracleScorer.score` takes the sessions beside the prompts.
A prompt condition may rewrite the text or drop responses; spans keep their original ``index``,
which is what the oracle looks up, so it scores any condition's prompts correctly.

``lapse`` plants a known, controllable misfit: with probability ``lapse`` the "participant model"
answers uniformly at random among the ``n_options`` offered, so each response's NLL becomes
``-log((1 - lapse) * p + lapse / k)`` — a degraded oracle whose gap to the exact one is known
response by response (useful to check that an analysis recovers a planted effect).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from psych201.data.records import ResponseSpan, Session
from psych201.errors import InvalidDataError
from psych201.prompts.records import Prompt
from psych201.scoring.engine import EngineInfo
from psych201.scoring.scorer import SpanScore


class OracleError(InvalidDataError):
    """A session the oracle cannot score (no or malformed stored log-likelihoods)."""


@dataclass(frozen=True)
class OracleScorer:
    """Scores responses with the stored generating log-likelihoods (``metadata[field]``).

    Each :class:`SpanScore` has ``nll = -loglik`` exactly (no floating-point round trip when
    ``lapse == 0``); ``n_tokens = 1`` (a response is one decision of the generating model, not a
    token sequence); ``top1_correct`` says whether the human's response was the model's most
    probable option (known for two options, or whenever p > 0.5; otherwise ``None``);
    ``entropy`` is the model's predictive entropy over the options when there are two (or one),
    else NaN; ``context_tokens = 0`` and ``truncated = False`` because the generating model
    always conditions on the participant's whole history.
    """

    lapse: float = 0.0
    field: str = "loglik"
    options_field: str = "n_options"

    def __post_init__(self) -> None:
        if not 0.0 <= self.lapse <= 1.0:
            raise ValueError(f"lapse must be within [0, 1], got {self.lapse}")

    @property
    def info(self) -> EngineInfo:
        model_id = "oracle" if self.lapse == 0 else f"oracle-lapse{self.lapse:g}"
        return EngineInfo(
            name="oracle",
            model_id=model_id,
            dtype="float64",
            device="cpu",
            max_context=None,
            extra={"field": self.field, "lapse": self.lapse},
        )

    def score(
        self, prompts: Sequence[Prompt], sessions: Sequence[Session]
    ) -> list[list[SpanScore]]:
        """One list per prompt, one :class:`SpanScore` per span in span order.

        ``sessions[i]`` is the session ``prompts[i]`` was rendered from (a condition's
        ``render_study`` keeps that order).
        """
        if len(prompts) != len(sessions):
            raise OracleError(f"got {len(prompts)} prompts but {len(sessions)} sessions")
        return [self._score_spans(p.spans, s) for p, s in zip(prompts, sessions, strict=True)]

    def score_paired(
        self, prompts: Sequence[Prompt], sessions: Sequence[Session]
    ) -> list[list[SpanScore]]:
        """:meth:`score`, as a :class:`~psych201.scoring.protocols.SessionAwareScorer`."""
        return self.score(prompts, sessions)

    def score_sessions(self, sessions: Sequence[Session]) -> list[list[SpanScore]]:
        """Score every response of each session as it stands (no prompt condition)."""
        return [self._score_spans(s.responses, s) for s in sessions]

    def _score_spans(self, spans: Sequence[ResponseSpan], session: Session) -> list[SpanScore]:
        loglik = _float_list(session, self.field, _check_loglik)
        n_options: list[float] | None = None
        if self.options_field in session.metadata:
            n_options = _float_list(session, self.options_field, _check_n_options)
            if len(n_options) != len(loglik):
                raise _error(
                    session,
                    f"{self.options_field!r} has {len(n_options)} entries but {self.field!r} "
                    f"has {len(loglik)}",
                )
        elif self.lapse > 0:
            raise _error(session, f"lapse > 0 needs the number of options ({self.options_field!r})")
        own = {r.index: r.text for r in session.responses}
        scores = []
        for span in spans:
            if not 0 <= span.index < len(loglik):
                raise _error(
                    session,
                    f"response {span.index} has no stored log-likelihood "
                    f"({self.field!r} has {len(loglik)} entries)",
                )
            # Guards against prompts and sessions passed in different orders.
            if span.index in own and own[span.index].strip() != span.text.strip():
                raise _error(
                    session,
                    f"prompt response {span.index} is {span.text!r} but the session's is "
                    f"{own[span.index]!r}: prompts and sessions do not pair up",
                )
            k = None if n_options is None else int(n_options[span.index])
            scores.append(self._span_score(span.index, loglik[span.index], k))
        return scores

    def _span_score(self, index: int, loglik: float, k: int | None) -> SpanScore:
        if self.lapse == 0:
            p, nll = math.exp(loglik), -loglik
        else:
            assert k is not None  # checked by the caller
            p = (1.0 - self.lapse) * math.exp(loglik) + self.lapse / k
            nll = -math.log(p)
        return SpanScore(
            index=index,
            n_tokens=1,
            nll=nll,
            top1_correct=_top1(p, k),
            entropy=_entropy(p, k),
            context_tokens=0,
            truncated=False,
        )


def _top1(p: float, k: int | None) -> bool | None:
    if p > 0.5 or k == 1:
        return True
    if k == 2:
        return None if p == 0.5 else False
    return None  # with more options, p <= 0.5 may or may not be the most probable one


def _entropy(p: float, k: int | None) -> float:
    if k == 1:
        return 0.0
    if k == 2:
        q = 1.0 - p
        return -sum(x * math.log(x) for x in (p, q) if x > 0)
    return math.nan  # the distribution over the other options is not stored


def _check_loglik(v: float) -> str | None:
    return None if math.isfinite(v) and v <= 0.0 else "must be finite and <= 0"


def _check_n_options(v: float) -> str | None:
    return None if v >= 1 and v == int(v) else "must be a whole number >= 1"


def _float_list(session: Session, name: str, check: Callable[[float], str | None]) -> list[float]:
    raw = session.metadata.get(name)
    if raw is None:
        raise _error(session, f"no {name!r} field: only simulated studies can be scored by oracle")
    if isinstance(raw, str | bytes | dict) or not hasattr(raw, "__iter__"):
        raise _error(session, f"{name!r} must be a list of numbers, got {type(raw).__name__}")
    values = list(raw)  # a list from JSONL, a numpy array from Parquet
    out: list[float] = []
    for i, v in enumerate(values):
        # numbers.Real covers Python and numpy numbers; bools are Real too but never a score.
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise _error(session, f"{name}[{i}] = {v!r} is not a number")
        f = float(v)
        reason = check(f)
        if reason:
            raise _error(session, f"{name}[{i}] = {v!r} {reason}")
        out.append(f)
    return out


def _error(session: Session, reason: str) -> OracleError:
    where = session.source or session.study
    return OracleError(
        f"{where}, line {session.line} (participant {session.participant!r}): {reason}"
    )


def oracle_nll(data: Path) -> dict[tuple[str, int, int], float]:
    """The generating model's NLL per (study, line, response index) where sessions store it
    (simulated data keeps it in metadata ``loglik``)."""
    from psych201.data.readers import iter_sessions

    oracle = OracleScorer()
    out: dict[tuple[str, int, int], float] = {}
    for session in iter_sessions(data):
        if oracle.field not in session.metadata:
            continue
        (scores,) = oracle.score_sessions([session])
        for score in scores:
            out[(session.study, session.line, score.index)] = float(score.nll)
    return out
