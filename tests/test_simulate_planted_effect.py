"""Ground truth for the analysis layer: a planted effect between two oracles is recovered.

The exact oracle and a lapsed oracle (a known mixture with random guessing) score the very same
simulated responses. The true mean NLL difference per study is computed independently on a large
fresh population, in expectation over each response given its context (so it carries almost no
Monte-Carlo noise). The analysis layer's paired effect on a small sample must have the right sign
and a 95 % interval that covers that truth; the oracle's pseudo-R² must be what its NLL implies.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from psych201.analysis.baselines import option_counts, pseudo_r2
from psych201.analysis.effects import MEAN_DIFF, MIXED, compare_pair
from psych201.data.markers import parse_responses
from psych201.data.records import Session
from psych201.results.schema import RESPONSE_SCHEMA
from psych201.scoring.oracle import OracleScorer
from psych201.simulate import simulate_study

#: The three one-response-per-trial studies this test pools (three studies, 40 people each).
KINDS = ("bandit", "risky", "lexical")
LAPSE = 0.3
N_TRIALS = 30


def _sessions(kind: str, n: int, seed: int) -> list[Session]:
    out = []
    for line, rec in enumerate(
        simulate_study(kind, n_participants=n, n_trials=N_TRIALS, seed=seed)
    ):
        meta = {k: v for k, v in rec.items() if k not in ("text", "experiment", "participant")}
        out.append(
            Session(
                study=f"sim_{kind}",
                experiment=rec["experiment"],
                participant=rec["participant"],
                line=line + 1,
                text=rec["text"],
                responses=parse_responses(rec["text"]),
                metadata=meta,
            )
        )
    return out


def _table(sessions: list[Session], oracle: OracleScorer) -> pd.DataFrame:
    rows = []
    for session, spans in zip(sessions, oracle.score_sessions(sessions), strict=True):
        for response, score in zip(session.responses, spans, strict=True):
            rows.append(
                {
                    "model": oracle.info.model_id,
                    "condition": "raw",
                    "study": session.study,
                    "experiment": session.experiment,
                    "participant": session.participant,
                    "line": session.line,
                    "response_index": score.index,
                    "response_text": response.text,
                    "n_tokens": score.n_tokens,
                    "nll": score.nll,
                    "top1_correct": score.top1_correct,
                    "entropy": score.entropy,
                    "context_tokens": score.context_tokens,
                    "truncated": score.truncated,
                }
            )
    return pd.DataFrame(rows, columns=RESPONSE_SCHEMA.names)


def _true_mean_difference(kind: str) -> float:
    """E[NLL_lapsed − NLL_exact] per response in the population, for one study (task)."""
    # 600 × 30 responses: Monte-Carlo error ~2e-4 nats, far below the interval's width.
    records = simulate_study(kind, n_participants=600, n_trials=N_TRIALS, seed=999)
    ll = np.concatenate([r["loglik"] for r in records])
    p = np.stack([np.exp(ll), -np.expm1(ll)])  # chosen and other option, given the context
    lapsed = (1 - LAPSE) * p + LAPSE / 2
    return float(np.mean(np.sum(p * (np.log(p) - np.log(lapsed)), axis=0)))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    sessions = [s for k in KINDS for s in _sessions(k, 40, seed=17)]
    return pd.concat(
        [_table(sessions, OracleScorer()), _table(sessions, OracleScorer(lapse=LAPSE))],
        ignore_index=True,
    )


def test_planted_effect_is_recovered_with_its_sign_and_a_covering_interval(
    frame: pd.DataFrame,
) -> None:
    truth = float(np.mean([_true_mean_difference(k) for k in KINDS]))
    assert truth > 0.02  # a real effect, not a rounding error
    lapsed = f"oracle-lapse{LAPSE:g}"
    result = compare_pair(
        frame, lapsed, "oracle", condition="raw", n_boot=1000, seed=3, levels="participants"
    )
    effect = result.effect(MEAN_DIFF)
    assert effect.n_participants == 120 and effect.n_studies == len(KINDS)
    assert effect.estimate > 0 and effect.ci_low > 0  # right sign, clearly detected
    assert effect.ci_low <= truth <= effect.ci_high, (truth, effect)
    mixed = result.effect(MIXED)
    assert mixed.estimate > 0 and mixed.ci_low <= truth <= mixed.ci_high
    # Swapping the roles flips the sign and nothing else.
    flipped = compare_pair(
        frame, "oracle", lapsed, condition="raw", n_boot=1000, seed=3, levels="participants"
    ).effect(MEAN_DIFF)
    assert flipped.estimate == pytest.approx(-effect.estimate)
    assert flipped.ci_high < 0


def test_oracle_pseudo_r2_matches_its_nll_and_the_options_read_from_the_text(
    frame: pd.DataFrame,
) -> None:
    sessions = [s for k in KINDS for s in _sessions(k, 40, seed=17)]
    counts = option_counts(sessions)  # read from each transcript by the prompts layer
    stored = [k for s in sessions for k in s.metadata["n_options"]]
    assert counts["n_options"].tolist() == [float(k) for k in stored]
    per_study, per_model = pseudo_r2(frame, condition="raw", counts=counts)
    exact = frame[frame["model"] == "oracle"]
    for study, group in exact.groupby("study"):
        expected = 1 - group["nll"].sum() / (len(group) * math.log(2))
        got = per_study[(per_study["model"] == "oracle") & (per_study["study"] == study)]
        assert float(got["pseudo_r2"].iloc[0]) == pytest.approx(expected, rel=1e-12)
        assert 0.2 < expected < 0.7  # informative but far from deterministic, like people
    by_model = per_model.set_index("model")["pseudo_r2"]
    assert by_model["oracle"] > by_model[f"oracle-lapse{LAPSE:g}"]
