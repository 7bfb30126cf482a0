"""Behavioural signatures from transcripts: planted parameters recovered, the two-step
signature of model-based vs model-free learners, and the choice parser on real studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from paths import needs_data
from psych201.analysis.signatures import (
    bandit_signatures,
    risky_signatures,
    twostep_participant,
    twostep_trials,
)
from psych201.data.choices import reward_of, session_choices, session_options, study_choices
from psych201.data.markers import parse_responses
from psych201.data.readers import discover_studies, iter_sessions
from psych201.data.records import Session
from psych201.simulate import TASKS, CognitivePlayers, play_study
from psych201.simulate.twostep import HybridAgent


def _sessions(records: list[dict]) -> list[Session]:
    return [Session("s", r["experiment"], r["participant"], i + 1, r["text"],
                    parse_responses(r["text"])) for i, r in enumerate(records)]


def test_learning_rate_and_inverse_temperature_are_recovered_from_played_transcripts() -> None:
    # 100 Q-learners play 200 bandit trials; the signatures see only the transcripts.
    records, _ = play_study("bandit", CognitivePlayers(TASKS["bandit"].agent),
                            n_participants=100, n_trials=200, seed=7)
    parsed = study_choices("bandit", _sessions(records))
    assert parsed.coverage == 1.0 and parsed.table["reward"].notna().all()
    fitted = bandit_signatures(parsed.table).set_index("participant")
    truth = pd.DataFrame({"alpha": [r["param_alpha"] for r in records],
                          "beta": [r["param_beta"] for r in records]},
                         index=[r["participant"] for r in records])
    both = fitted.join(truth, rsuffix="_true")
    r_alpha = stats.pearsonr(both["alpha"], both["alpha_true"])[0]
    r_beta = stats.pearsonr(np.log(both["beta"]), np.log(both["beta_true"]))[0]
    # measured: r(alpha) = 0.93, r(log beta) = 0.89 (0.86 / 0.82 at 100 trials)
    assert r_alpha >= 0.8 and r_beta >= 0.8, (r_alpha, r_beta)


@pytest.mark.parametrize(("w", "sign"), [(0.0, 0), (1.0, 1)])
def test_two_step_interaction_follows_the_model_based_weight(w: float, sign: int) -> None:
    def agent(rng: np.random.Generator, demographics: object) -> HybridAgent:
        return HybridAgent(alpha=0.5, beta=5.0, w=w, pers=0.0)

    records, _ = play_study("twostep", CognitivePlayers(agent), n_participants=60,
                            n_trials=150, seed=3)
    mb, mf = [], []
    for session in _sessions(records):
        table = session_choices(session)
        assert table is not None
        one = twostep_participant(twostep_trials(session.text, table["choice"].tolist(),
                                                 table["reward"].tolist()))
        mb.append(one["mb_index"])
        mf.append(one["mf_index"])
    t_mb = stats.ttest_1samp(mb, 0.0)
    if sign:  # model-based: stay after rewarded common and unrewarded rare transitions
        assert t_mb.statistic > 4, t_mb
    else:  # model-free: reward matters, the transition does not
        assert abs(t_mb.statistic) < 3 and stats.ttest_1samp(mf, 0.0).statistic > 4, t_mb


@pytest.mark.parametrize(
    ("feedback", "reward"),
    [
        (" and won 1 point.\n", 1.0),
        (" and won nothing.\n", 0.0),
        (" and received no food reward.\n", 0.0),
        (". At house 'S', there is no animal hiding.\nYour choice was correct and you receive "
         "a reward.\n", 1.0),
        (".\n\nLottery A: gain 70 points with a 70% chance.\n", None),
        (" and fly to the red planet. ", None),
        (" and it is wrong.\n", 0.0),  # simulate reversal's feedback
        (" and it is correct (1 point).\n", 1.0),
    ],
)
def test_rewards_are_read_from_the_last_sentence_that_speaks_of_one(
    feedback: str, reward: float | None
) -> None:
    assert reward_of(feedback) == reward


def _real(shared_data: Path, study: str) -> list[Session]:
    (source,) = discover_studies(shared_data / study)
    return list(iter_sessions(source))


@needs_data
def test_people_of_dezfouli2019_give_bandit_signatures(shared_data: Path) -> None:
    sessions = _real(shared_data, "dezfouli2019")[:12]
    parsed = study_choices("dezfouli2019", sessions)
    assert parsed.parseable and parsed.table["reward"].notna().all()
    sig = bandit_signatures(parsed.table)
    assert len(sig) == 12 and sig["win_stay"].between(0, 1).all()
    assert (sig["alpha"] > 0).all() and (sig["beta"] > 0).all()


@needs_data
def test_people_of_a_risky_choice_study_give_loss_aversion(shared_data: Path) -> None:
    sessions = _real(shared_data, "spektor2024lossaversion")[:10]
    parsed = study_choices("spektor2024lossaversion", sessions)
    assert parsed.parseable and parsed.table["lotteries"].notna().all()
    sig = risky_signatures(parsed.table)
    assert len(sig) == 10 and sig["loss_aversion"].between(0.1, 10).all()
    assert sig["risky_share"].between(0, 1).all()


@needs_data
@pytest.mark.parametrize(("study", "parseable"), [
    ("thoma2025problearn", True),  # probability learning: not what the parser was written for
    ("little2024functionestimation", False),  # numeric estimates: named unparseable
])
def test_a_study_the_parser_was_not_written_for(shared_data: Path, study: str,
                                                parseable: bool) -> None:
    parsed = study_choices(study, _real(shared_data, study))
    assert parsed.parseable is parseable, parsed.reason
    if parseable:
        # measured: 100 % of thoma2025problearn's responses (the half-quoted pair below)
        assert parsed.coverage >= 0.95 and parsed.table["reward"].notna().mean() > 0.99
    else:
        assert parsed.reason.startswith("unparseable")


def test_a_participant_who_always_chose_the_same_option_is_kept() -> None:
    # A model (or person) that never switches still chose between two options: the other one
    # comes from the instructions; dropping the session would hide the most perseverative.
    text = ("In this task, you will repeatedly choose between two slot machines, labelled K and "
            "A.\n\nTrial 1: You chose machine <<A>> and won nothing.\n"
            "Trial 2: You chose machine <<A>> and won 1 point.\n")
    table = session_choices(Session("s", "e", "1", 1, text, parse_responses(text)))
    assert table is not None and table["options"].iloc[0] == ["A", "K"]
    sig = bandit_signatures(table, fit=False)
    assert sig["switch_rate"].tolist() == [0.0]


def test_the_other_option_is_read_from_a_half_quoted_pair() -> None:
    # thoma2025problearn's instructions: "two houses labeled 'H' and L'"; a child who always
    # chose H still chose between H and L.
    head = ("In this experiment you will repeatedly see two houses labeled 'H' and L' and have "
            "to predict behind which house an animal will hide next.\n")
    assert session_options(["H", "H", "H"], head) == ("H", "L")
    assert session_options(["L", "L"], head) == ("H", "L")
