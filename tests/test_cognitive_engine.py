"""The task's cognitive model as a scored model (``--engine cognitive``): its likelihood is the
agent's own, its fit on training participants recovers planted values, and its run is a row
``compare`` reads like any model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import cli_output
from psych201.data.markers import parse_responses
from psych201.data.records import Session
from psych201.results.io import read_responses
from psych201.scoring.cognitive_engine import _sequence, fit_on_training
from psych201.simulate import CognitivePlayers, play_study, simulate_study, write_study
from psych201.simulate.bandit import QLearner
from psych201.simulate.fit import q_learning_logliks


def test_the_fitted_likelihood_is_the_agents_own() -> None:
    for r in simulate_study("bandit", n_participants=5, n_trials=40, seed=2):
        session = Session("s", "e", r["participant"], 1, r["text"], parse_responses(r["text"]))
        seq = _sequence(session)
        assert seq is not None
        choices, rewards, _ = seq
        np.testing.assert_allclose(
            q_learning_logliks(r["param_alpha"], r["param_beta"], choices, rewards),
            r["loglik"], rtol=1e-12, atol=1e-14)


def _planted_study(path: Path, n: int = 60) -> Path:
    records, _ = play_study("bandit", CognitivePlayers(lambda rng, d: QLearner(0.4, 5.0)),
                            n_participants=n, n_trials=80, seed=5)
    return write_study(records, path / "planted" / "prompts.jsonl")


def test_the_fit_on_training_participants_recovers_planted_values(tmp_path: Path) -> None:
    study = _planted_study(tmp_path).parent
    alpha, beta, n_train = fit_on_training(study)
    assert n_train == 54  # 60 minus the 10 % held out
    assert abs(alpha - 0.4) < 0.08 and abs(beta - 5.0) < 1.0, (alpha, beta)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_scored_run_matches_the_oracle_with_the_true_values(tmp_path: Path) -> None:
    study = _planted_study(tmp_path, n=20).parent
    code, output = cli_output("score", "--engine", "cognitive", "--model", "qlearning",
                              "--engine-args", "alpha=0.4,beta=5.0", "--data", str(study),
                              "--split", "all", "--out", str(tmp_path / "run"))
    assert code == 0, output
    table = read_responses(tmp_path / "run")
    records = pd.read_json(study / "prompts.jsonl", lines=True)
    expected = -np.concatenate(records["loglik"].tolist())
    np.testing.assert_allclose(np.sort(table["nll"].to_numpy()), np.sort(expected), rtol=1e-9)


@pytest.mark.parametrize(("args", "message"), [
    ("", "needs --engine-args train=STUDY"),
    ("alpha=0.4,beta=5,gamma=1", "not gamma"),
])
def test_bad_engine_args_are_one_line(tmp_path: Path, args: str, message: str) -> None:
    study = simulate_study("bandit", n_participants=2, n_trials=5, seed=0)
    path = write_study(study, tmp_path / "s" / "prompts.jsonl")
    code, output = cli_output("score", "--engine", "cognitive", "--model", "qlearning",
                              *(["--engine-args", args] if args else []), "--data",
                              str(path.parent), "--split", "all", "--out", str(tmp_path / "run"))
    assert code == 2, output
    assert message in " ".join(output.split())
