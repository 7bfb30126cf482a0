"""A task's cognitive model as a scored model: ``psych201 score --engine cognitive --model M``.

The models (their registry entry, :data:`psych201.scoring.engines` ``cognitive``, says which
transcripts each reads):

``qlearning``  two-armed bandit: Q-learning, ``alpha``, ``beta`` (as ``simulate bandit``)
``reversal``   probability learning / reversal: Q-learning plus perseveration ``kappa``
               (as ``simulate reversal``)
``cpt``        choices between two described lotteries: cumulative prospect theory with logit
               choice, ``alpha``, ``lambda``, ``gamma``, ``theta`` (as ``simulate risky``)
``twostep``    the two-step task of ``psych201 simulate twostep`` / ``play --task twostep``:
               hybrid model-based/model-free learner, ``alpha``, ``beta``, ``w``, ``pers``

``--engine-args train=STUDY`` fits one set of parameters by maximum likelihood to the
*training* participants of that study (the seeded split, ``split_seed``, default 0; at most
``train_limit`` of them), pooled; the run then scores the sessions it is given (``--split
test``) like any model: each response's NLL is the model's, given the participant's own history
as the transcript tells it (read by :mod:`psych201.data.choices`). The parameters by name
(``alpha=…,beta=…``) instead score with given values. Its row in ``compare`` is the reference
readers of the paper ask for: a classic cognitive model of the task, fitted on people.

A session the model cannot read is refused in one line naming its file, line and reason: in
the training study before the fit (unless at least :data:`~psych201.data.choices.MIN_COVERAGE`
of its responses are read, when the rest is left out and counted), in the scored data before
any of a batch is scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import log_expit

from psych201.data.choices import MIN_COVERAGE, session_choices, twostep_labels
from psych201.data.records import Session
from psych201.data.split import iter_split
from psych201.errors import InvalidDataError, UsageError
from psych201.prompts.records import Prompt
from psych201.scoring.engine import EngineInfo
from psych201.scoring.engines import BuiltScorer, ScorerSpec, check_model_name
from psych201.scoring.scorer import SpanScore
from psych201.simulate.fit import ChoiceBatch, fit_sticky_q_pooled, sticky_q_logits
from psych201.simulate.fit_risky import CPT_PARAMS, LotteryChoices, cpt_logits, fit_cpt_pooled
from psych201.simulate.fit_twostep import (
    HYBRID_PARAMS,
    TwoStepTrials,
    fit_hybrid_pooled,
    hybrid_logits,
)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Readout:
    """What a model reads from one session: its data, and the response each logit scores."""

    indices: tuple[int, ...]
    data: Any


class Unreadable(Exception):
    """A session the model cannot read (the message is the reason)."""


@dataclass(frozen=True)
class CognitiveModel:
    """A cognitive model the engine fits and scores.

    ``read`` turns a session into the model's data (raises :class:`Unreadable`); ``fit`` gives
    the pooled ML parameters of many sessions' data; ``logits`` the logit of each scored
    response's choice against the other option, per session, in ``Readout.indices`` order.
    """

    name: str
    params: tuple[str, ...]
    read: Callable[[Session], Readout]
    fit: Callable[[Sequence[Any]], tuple[float, ...]]
    logits: Callable[[Sequence[float], Sequence[Any]], list[FloatArray]]


# --------------------------------------------------------------------------------------------
# Reading sessions


def _binary_table(session: Session) -> Any:
    table = session_choices(session)
    if table is None:
        raise Unreadable("its responses are not a choice among 2-6 short labels")
    offered = {len(o) for o in table["options"]}
    if offered != {2}:
        raise Unreadable(f"a choice among {max(offered)} options, not two")
    return table


def _read_feedback(session: Session) -> Readout:
    table = _binary_table(session)
    choices = np.array([list(o).index(c) for o, c in zip(table["options"], table["choice"],
                                                         strict=True)], dtype=np.float64)
    rewards = table["reward"].to_numpy(dtype=np.float64)
    if not np.isfinite(rewards).any():
        raise Unreadable("no reward is reported after any choice (the model learns from "
                         "feedback: '… won 1 point', '… is correct')")
    return Readout(tuple(table["response_index"].astype(int)), (choices, rewards))


def _read_lotteries(session: Session) -> Readout:
    table = _binary_table(session)
    problems, chosen = [], []
    for row in table.itertuples(index=False):
        if row.lotteries is None:
            raise Unreadable(f"response {row.response_index} ({row.choice}): the text before "
                             f"it does not describe a lottery for each of {', '.join(row.options)}"
                             " ('Lottery A: 50 points with 30% or …')")
        problems.append(tuple(row.lotteries[label] for label in row.options))
        chosen.append(list(row.options).index(row.choice))
    return Readout(tuple(table["response_index"].astype(int)), (problems, chosen))


def _read_twostep(session: Session) -> Readout:
    labels = twostep_labels(session.text)
    if labels is None:
        raise Unreadable("not a two-step transcript: its instructions name no spaceships and "
                         "aliens ('choose a spaceship, A or B.')")
    table = session_choices(session)
    if table is None or len(table) % 2:
        raise Unreadable("a two-step transcript has two responses per trial")
    planet_of = {alien: (k, i) for k, pair in enumerate(labels.aliens)
                 for i, alien in enumerate(pair)}
    trials = []
    rows = list(table.itertuples(index=False))
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        if first.choice not in labels.ships or second.choice not in planet_of:
            raise Unreadable(f"responses {first.response_index}-{second.response_index} "
                             f"({first.choice}, {second.choice}) are not a spaceship "
                             f"({', '.join(labels.ships)}) then an alien")
        planet, alien = planet_of[second.choice]
        reward = second.reward if second.reward is not None else math.nan
        trials.append((labels.ships.index(first.choice), planet, alien, reward))
    return Readout(tuple(table["response_index"].astype(int)), trials)


# --------------------------------------------------------------------------------------------
# The models


def _rl_model(name: str, perseveration: bool) -> CognitiveModel:
    def fit(data: Sequence[Any]) -> tuple[float, ...]:
        fitted = fit_sticky_q_pooled(ChoiceBatch.of(data), perseveration=perseveration)
        return fitted if perseveration else fitted[:2]

    def logits(params: Sequence[float], data: Sequence[Any]) -> list[FloatArray]:
        kappa = params[2] if perseveration else 0.0
        batch = ChoiceBatch.of(data)
        out = sticky_q_logits(params[0], params[1], kappa, batch)
        return [row[mask] for row, mask in zip(out, batch.mask, strict=True)]

    params = ("alpha", "beta", "kappa") if perseveration else ("alpha", "beta")
    return CognitiveModel(name, params, _read_feedback, fit, logits)


def _lottery_data(data: Sequence[Any]) -> tuple[LotteryChoices, list[int]]:
    problems = [p for session_problems, _ in data for p in session_problems]
    chosen = [c for _, session_chosen in data for c in session_chosen]
    return LotteryChoices.of(problems, chosen), [len(c) for _, c in data]


def _cpt_logits(params: Sequence[float], data: Sequence[Any]) -> list[FloatArray]:
    pooled, sizes = _lottery_data(data)
    out = cpt_logits(params[0], params[1], params[2], params[3], pooled)
    return np.split(out, np.cumsum(sizes)[:-1])


def _twostep_logits(params: Sequence[float], data: Sequence[Any]) -> list[FloatArray]:
    trials = TwoStepTrials.of(data)
    out = hybrid_logits(params[0], params[1], params[2], params[3], trials)
    return [row[mask].reshape(-1) for row, mask in zip(out, trials.mask, strict=True)]


MODELS: dict[str, CognitiveModel] = {
    m.name: m for m in (
        _rl_model("qlearning", perseveration=False),
        _rl_model("reversal", perseveration=True),
        CognitiveModel("cpt", CPT_PARAMS, _read_lotteries,
                       lambda data: fit_cpt_pooled(_lottery_data(data)[0]), _cpt_logits),
        CognitiveModel("twostep", HYBRID_PARAMS, _read_twostep,
                       lambda data: fit_hybrid_pooled(TwoStepTrials.of(data)), _twostep_logits),
    )
}


# --------------------------------------------------------------------------------------------
# Fitting on a study's training participants, scoring sessions


def _where(session: Session) -> str:
    return f"{session.source or session.study}, line {session.line}"


def read_session(model: CognitiveModel, session: Session) -> Readout:
    """The model's data of ``session``; InvalidDataError naming file, line and reason if none."""
    try:
        return model.read(session)
    except Unreadable as exc:
        raise InvalidDataError(f"{_where(session)}: {exc}; the {model.name} model cannot "
                               "read it") from None


@dataclass(frozen=True)
class Fitted:
    """Parameters fitted on a study's training participants, and on how many."""

    params: dict[str, float]
    n_participants: int
    n_left_out: int


def fit_on_training(model: CognitiveModel, study: str | Path, *, seed: int = 0,
                    limit: int | None = None) -> Fitted:
    """Pooled ML parameters over the training participants of ``study`` (the first ``limit``).

    Sessions the model cannot read are left out while the rest covers at least
    :data:`~psych201.data.choices.MIN_COVERAGE` of the responses; below that, the first one is
    named (file, line, reason) before anything is fitted.
    """
    sessions = list(iter_split(study, "train", seed=seed))[:limit]
    if not sessions:
        raise UsageError(f"--engine-args train={study}: no training participants")
    readouts, unreadable, read_responses = [], [], 0
    for session in sessions:
        try:
            readout = model.read(session)
        except Unreadable as exc:
            unreadable.append((session, str(exc)))
            continue
        readouts.append(readout)
        read_responses += len(readout.indices)
    total = sum(len(s.responses) for s in sessions)
    if not readouts or read_responses < MIN_COVERAGE * total:
        session, reason = unreadable[0] if unreadable else (sessions[0], "no responses")
        raise InvalidDataError(
            f"--engine-args train={study}: {_where(session)}: {reason}; the {model.name} model "
            f"reads {read_responses / total if total else 0:.0%} of the training responses "
            f"(needs {MIN_COVERAGE:.0%})")
    values = model.fit([r.data for r in readouts])
    return Fitted(dict(zip(model.params, values, strict=True)), len(readouts), len(unreadable))


class CognitiveScorer:
    """A :class:`~psych201.scoring.protocols.SessionAwareScorer`: a model with fixed values."""

    def __init__(self, model: CognitiveModel, params: Mapping[str, float]) -> None:
        self.model = model
        self.values = [float(params[name]) for name in model.params]

    def score_paired(self, prompts: Sequence[Prompt], sessions: Sequence[Session]
                     ) -> list[list[SpanScore]]:
        readouts = [read_session(self.model, s) for s in sessions]  # all checked first
        logits = self.model.logits(self.values, [r.data for r in readouts])
        out = []
        for prompt, readout, z in zip(prompts, readouts, logits, strict=True):
            by_index = dict(zip(readout.indices, z.tolist(), strict=True))
            out.append([_span(span.index, by_index[span.index]) for span in prompt.spans])
        return out


def _span(index: int, logit: float) -> SpanScore:
    """The score of a two-option choice whose logit against the other option is ``logit``."""
    lp, lq = float(log_expit(logit)), float(log_expit(-logit))
    entropy = -(math.exp(lp) * lp + math.exp(lq) * lq)
    return SpanScore(index=index, n_tokens=1, nll=-lp, top1_correct=logit > 0, entropy=entropy,
                     context_tokens=0, truncated=False, n_offered=2, offered_correct=logit > 0)


def build(spec: ScorerSpec) -> BuiltScorer:
    """The cognitive model ``spec.model``, fitted on ``options["train"]`` or given values."""
    check_model_name("cognitive", spec.model)
    model = MODELS[spec.model]
    options: dict[str, Any] = dict(spec.options)
    train = options.pop("train", None)
    seed = int(options.pop("split_seed", 0))
    limit = options.pop("train_limit", None)
    if limit is not None and int(limit) < 1:
        raise UsageError(f"--engine-args train_limit={limit}: at least 1 training participant")
    given = {k: float(options.pop(k)) for k in model.params if k in options}
    if options:
        raise UsageError(f"--engine-args: the cognitive model {model.name} takes train, "
                         f"split_seed, train_limit, {', '.join(model.params)}, not "
                         f"{', '.join(sorted(options))}")
    if train is not None:
        fitted = fit_on_training(model, str(train), seed=seed,
                                 limit=None if limit is None else int(limit))
        params = fitted.params
        left_out = f", {fitted.n_left_out} unreadable left out" if fitted.n_left_out else ""
        source = (f"fitted on {fitted.n_participants} training participants of {train} "
                  f"(split seed {seed}{left_out})")
    elif len(given) == len(model.params):
        params, source = given, "given parameters"
    else:
        raise UsageError(f"--engine cognitive --model {model.name} needs --engine-args "
                         f"train=STUDY (fit on its training participants) or "
                         f"{','.join(f'{p}=…' for p in model.params)}")
    model_id = f"cognitive-{model.name}"
    info = EngineInfo(name="cognitive", model_id=model_id, dtype="float64", device="cpu",
                      max_context=None, extra={**params, "source": source})
    model_info = {"id": model_id, "source": source, "file_sha256": None, "max_context": None,
                  **params}
    return BuiltScorer(CognitiveScorer(model, params), info, None, model_id, model_info)
