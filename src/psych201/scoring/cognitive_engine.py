"""The task's cognitive model as a scored model: ``psych201 score --engine cognitive``.

``--model qlearning`` is the bandit's Q-learning model (learning rate ``alpha``, inverse
temperature ``beta``). ``--engine-args train=STUDY`` fits one ``(alpha, beta)`` by maximum
likelihood to the *training* participants of that study (the seeded split, ``split_seed``,
default 0), pooled; the run then scores the sessions it is given (``--split test``) like any
model: each response's NLL is the model's, given the participant's own history of choices and
rewards, read from the transcript by :mod:`psych201.data.choices`. ``alpha=…,beta=…`` instead
scores with given values. Its row in ``compare`` is the reference readers of the paper ask
for: a classic cognitive model of the task, fitted on people, next to the language models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psych201.data.choices import session_choices, study_choices
from psych201.data.records import Session
from psych201.data.split import iter_split
from psych201.errors import InvalidDataError, UsageError
from psych201.prompts.records import Prompt
from psych201.scoring.engine import EngineInfo
from psych201.scoring.engines import BuiltScorer, ScorerSpec, register_engine
from psych201.scoring.scorer import SpanScore
from psych201.simulate.fit import fit_q_learning_pooled, q_learning_logliks

MODELS = ("qlearning",)


def _sequence(session: Session) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    table = session_choices(session)
    if table is None or any(len(o) != 2 for o in table["options"]):
        return None
    choices = np.array([list(o).index(c) for o, c in zip(table["options"], table["choice"],
                                                         strict=True)], dtype=np.float64)
    rewards = table["reward"].to_numpy(dtype=np.float64)
    return choices, rewards, table["response_index"].astype(int).tolist()


def fit_on_training(study: str | Path, *, seed: int = 0) -> tuple[float, float, int]:
    """Pooled ML ``(alpha, beta)`` over the training participants of ``study``, and their count."""
    sessions = list(iter_split(study, "train", seed=seed))
    parsed = study_choices(str(study), sessions)
    if not parsed.parseable:
        raise UsageError(f"--engine-args train={study}: {parsed.reason}")
    sequences = [s for s in (_sequence(x) for x in sessions) if s is not None]
    if not sequences:
        raise UsageError(f"--engine-args train={study}: no two-option choice sessions")
    alpha, beta = fit_q_learning_pooled([(c, r) for c, r, _ in sequences])
    return alpha, beta, len(sequences)


class QLearningScorer:
    """A :class:`~psych201.scoring.protocols.SessionAwareScorer` with fixed ``(alpha, beta)``."""

    def __init__(self, alpha: float, beta: float) -> None:
        self.alpha, self.beta = alpha, beta

    def score_paired(self, prompts: Sequence[Prompt], sessions: Sequence[Session]
                     ) -> list[list[SpanScore]]:
        out = []
        for prompt, session in zip(prompts, sessions, strict=True):
            seq = _sequence(session)
            if seq is None:
                raise InvalidDataError(
                    f"{session.source or session.study}, line {session.line}: not a choice "
                    "between two options with feedback; the Q-learning model cannot score it")
            choices, rewards, indices = seq
            logp = dict(zip(indices, q_learning_logliks(self.alpha, self.beta, choices, rewards)
                            .tolist(), strict=True))
            out.append([self._span(span.index, logp[span.index]) for span in prompt.spans])
        return out

    @staticmethod
    def _span(index: int, lp: float) -> SpanScore:
        p = math.exp(lp)
        q = 1.0 - p
        entropy = -(p * lp + (q * math.log(q) if q > 0 else 0.0))
        return SpanScore(index=index, n_tokens=1, nll=-lp, top1_correct=p > 0.5,
                         entropy=entropy, context_tokens=0, truncated=False, n_offered=2,
                         offered_correct=p > 0.5)


@register_engine("cognitive")
def build(spec: ScorerSpec) -> BuiltScorer:
    """The cognitive model ``spec.model``, fitted on ``options["train"]`` or given values."""
    if spec.model not in MODELS:
        raise UsageError(f"--engine cognitive: unknown model {spec.model!r} (choose one of "
                         f"{', '.join(MODELS)})")
    options: dict[str, Any] = dict(spec.options)
    train = options.pop("train", None)
    seed = int(options.pop("split_seed", 0))
    given = {k: float(options.pop(k)) for k in ("alpha", "beta") if k in options}
    if options:
        raise UsageError(f"--engine-args: the cognitive engine takes train, split_seed, alpha, "
                         f"beta, not {', '.join(sorted(options))}")
    if train is not None:
        alpha, beta, n_train = fit_on_training(str(train), seed=seed)
        source = f"fitted on {n_train} training participants of {train} (split seed {seed})"
    elif len(given) == 2:
        alpha, beta, source = given["alpha"], given["beta"], "given parameters"
    else:
        raise UsageError("--engine cognitive needs --engine-args train=STUDY (fit on its "
                         "training participants) or alpha=…,beta=…")
    model_id = "cognitive-qlearning"
    info = EngineInfo(name="cognitive", model_id=model_id, dtype="float64", device="cpu",
                      max_context=None, extra={"alpha": alpha, "beta": beta, "source": source})
    model_info = {"id": model_id, "source": source, "file_sha256": None, "max_context": None,
                  "alpha": alpha, "beta": beta}
    return BuiltScorer(QLearningScorer(alpha, beta), info, None, model_id, model_info)
