"""The tasks' cognitive models as scored models (``--engine cognitive --model M``): each model's
likelihood is its agent's own, its pooled fit on training participants recovers planted values,
its run is a row ``compare`` reads like any model's, and on real studies it predicts people
better than guessing."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_expit

from cli_helpers import cli_output
from paths import DATA, needs_data
from psych201.data.markers import parse_responses
from psych201.data.records import Session
from psych201.data.split import iter_split
from psych201.errors import InvalidDataError
from psych201.results.io import read_responses
from psych201.scoring.cognitive_engine import MODELS, fit_on_training, read_session
from psych201.scoring.engines import engine_entry
from psych201.simulate import CognitivePlayers, play_study, simulate_study, write_study
from psych201.simulate.bandit import QLearner
from psych201.simulate.reversal import StickyQLearner
from psych201.simulate.risky import ProspectTheory, ProspectTheoryAgent
from psych201.simulate.twostep import HybridAgent

#: Simulated task and the model that reads it.
TASK_OF = {"qlearning": "bandit", "reversal": "reversal", "cpt": "risky", "twostep": "twostep"}
#: Planted population (every participant the same) and how closely the pooled fit recovers it.
PLANTED: dict[str, tuple[Callable[[], Any], dict[str, float], dict[str, float], int, int]] = {
    # model: (agent, truth, absolute tolerance, participants, trials)
    "qlearning": (lambda: QLearner(0.4, 5.0), {"alpha": 0.4, "beta": 5.0},
                  {"alpha": 0.08, "beta": 1.0}, 60, 80),
    "reversal": (lambda: StickyQLearner(0.4, 5.0, 0.8), {"alpha": 0.4, "beta": 5.0, "kappa": 0.8},
                 {"alpha": 0.1, "beta": 1.0, "kappa": 0.3}, 60, 100),
    "cpt": (lambda: ProspectTheoryAgent(ProspectTheory(0.8, 2.0, 0.6), 0.3),
            {"alpha": 0.8, "lambda": 2.0, "gamma": 0.6, "theta": 0.3},
            {"alpha": 0.1, "lambda": 0.5, "gamma": 0.1, "theta": 0.15}, 60, 60),
    "twostep": (lambda: HybridAgent(0.5, 5.0, 0.6, 0.4),
                {"alpha": 0.5, "beta": 5.0, "w": 0.6, "pers": 0.4},
                {"alpha": 0.15, "beta": 1.5, "w": 0.2, "pers": 0.25}, 60, 100),
}


def _sessions(records: list[dict[str, Any]]) -> list[Session]:
    return [Session("s", "e", r["participant"], i + 1, r["text"], parse_responses(r["text"]))
            for i, r in enumerate(records)]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_models_likelihood_is_its_agents_own(model: str) -> None:
    records = simulate_study(TASK_OF[model], n_participants=6, n_trials=40, seed=2)
    fitted = MODELS[model]
    data = [read_session(fitted, s).data for s in _sessions(records)]
    for record, one in zip(records, data, strict=True):
        logits = fitted.logits([record[f"param_{p}"] for p in fitted.params], [one])[0]
        np.testing.assert_allclose(log_expit(logits), record["loglik"], rtol=1e-9, atol=1e-12)


def test_the_registry_names_each_model_and_what_it_reads() -> None:
    assert set(engine_entry("cognitive").models) == set(MODELS)


def _planted_study(path: Path, model: str, n: int | None = None) -> Path:
    agent, _, _, participants, trials = PLANTED[model]
    records, _ = play_study(TASK_OF[model], CognitivePlayers(lambda rng, d: agent()),
                            n_participants=n or participants, n_trials=trials, seed=5)
    return write_study(records, path / "planted" / "prompts.jsonl").parent


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_pooled_fit_on_training_participants_recovers_planted_values(
        tmp_path: Path, model: str) -> None:
    _, truth, tolerance, participants, _ = PLANTED[model]
    fitted = fit_on_training(MODELS[model], _planted_study(tmp_path, model))
    assert fitted.n_participants == participants - participants // 10  # 10 % held out
    for name, value in truth.items():
        assert abs(fitted.params[name] - value) < tolerance[name], (name, fitted.params)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_scored_run_matches_the_oracle_with_the_true_values(tmp_path: Path, model: str
                                                               ) -> None:
    study = _planted_study(tmp_path, model, n=8)
    truth = PLANTED[model][1]
    code, output = cli_output("score", "--engine", "cognitive", "--model", model,
                              "--engine-args", ",".join(f"{k}={v}" for k, v in truth.items()),
                              "--data", str(study), "--split", "all",
                              "--out", str(tmp_path / "run"))
    assert code == 0, output
    table = read_responses(tmp_path / "run")
    records = pd.read_json(study / "prompts.jsonl", lines=True)
    expected = -np.concatenate(records["loglik"].tolist())
    np.testing.assert_allclose(np.sort(table["nll"].to_numpy()), np.sort(expected), rtol=1e-9)


@pytest.mark.usefixtures("one_torch_thread")
def test_compare_shows_the_fitted_cognitive_row_next_to_the_oracle(tmp_path: Path) -> None:
    path = write_study(simulate_study("reversal", n_participants=40, n_trials=60, seed=4),
                       tmp_path / "rev" / "prompts.jsonl").parent
    common = ["--data", str(path), "--split", "test"]
    code, output = cli_output("score", "--engine", "cognitive", "--model", "reversal",
                              "--engine-args", f"train={path},train_limit=30", *common,
                              "--out", str(tmp_path / "cognitive"))
    assert code == 0, output
    manifest = json.loads((tmp_path / "cognitive" / "manifest.json").read_text())
    assert manifest["model"]["source"].startswith("fitted on 30 training participants of")
    assert set(manifest["model"]) >= {"alpha", "beta", "kappa"}
    code, output = cli_output("score", "--engine", "oracle", *common,
                              "--out", str(tmp_path / "oracle"))
    assert code == 0, output
    code, output = cli_output("compare", str(tmp_path / "cognitive"), str(tmp_path / "oracle"),
                              "--format", "json", "--n-boot", "200")
    assert code == 0, output
    rows = {r["model"]: r for r in json.loads(output)["leaderboard"]}
    assert set(rows) == {"cognitive-reversal", "oracle"}
    # the oracle knows each participant's own parameters: the pooled fit cannot beat it
    assert rows["oracle"]["score"] <= rows["cognitive-reversal"]["score"] < math.log(2)


@pytest.mark.parametrize(("args", "message", "exit_code"), [
    (["--model", "qlearning"], "needs --engine-args train=STUDY", 2),
    (["--model", "qlearning", "--engine-args", "alpha=0.4,beta=5,gamma=1"], "not gamma", 2),
    (["--model", "qlearning", "--engine-args", "train=RISKY,train_limit=0"],
     "train_limit=0: at least 1", 2),
    (["--model", "ddm", "--engine-args", "alpha=1"],
     "unknown model 'ddm' (choose one of qlearning:", 2),
    # the scored sessions are read before any fit: bandit transcripts describe no lotteries
    (["--model", "cpt", "--engine-args", "train=RISKY"], "line 1: response 0 (", 1),
    (["--model", "twostep", "--engine-args", "alpha=1,beta=1,w=1,pers=0"],
     "not a two-step transcript", 1),
])
def test_bad_models_arguments_and_sessions_are_one_line(
        tmp_path: Path, args: list[str], message: str, exit_code: int) -> None:
    path = write_study(simulate_study("bandit", n_participants=12, n_trials=5, seed=0),
                       tmp_path / "s" / "prompts.jsonl").parent
    risky = write_study(simulate_study("risky", n_participants=12, n_trials=5, seed=0),
                        tmp_path / "r" / "prompts.jsonl").parent
    args = [a.replace("RISKY", str(risky)) for a in args]
    code, output = cli_output("score", "--engine", "cognitive", *args, "--data", str(path),
                              "--split", "all", "--out", str(tmp_path / "run"))
    assert code == exit_code, output
    assert message in " ".join(output.split())
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_a_training_study_the_model_cannot_read_is_named_before_the_fit(tmp_path: Path) -> None:
    bandit = write_study(simulate_study("bandit", n_participants=12, n_trials=5, seed=0),
                         tmp_path / "b" / "prompts.jsonl").parent
    with pytest.raises(InvalidDataError, match=r"prompts.jsonl, line \d+: .*the cpt model reads "
                       r"0% of the training responses"):
        fit_on_training(MODELS["cpt"], bandit)


@needs_data
@pytest.mark.parametrize(("study", "model"), [("frey2017lotteries", "cpt"),
                                              ("thoma2025problearn", "reversal")])
def test_fitted_on_people_the_model_predicts_test_participants_better_than_guessing(
        study: str, model: str) -> None:
    fitted_model = MODELS[model]
    fitted = fit_on_training(fitted_model, DATA / study, limit=120)
    assert fitted.n_participants == 120
    test = [read_session(fitted_model, s).data for s in iter_split(DATA / study, "test")][:40]
    logits = fitted_model.logits([fitted.params[p] for p in fitted_model.params], test)
    nll = -float(np.mean(np.concatenate([log_expit(z) for z in logits])))
    assert nll < math.log(2) - 0.02, (fitted.params, nll)
