"""Random baseline / pseudo-R² and the population baseline (the latter on the real data)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paths import DATA, needs_data
from psych201.analysis.baselines import (
    POPULATION_MODEL,
    option_counts,
    population_baseline,
    pseudo_r2,
    random_nll,
    trial_responses,
    with_option_counts,
)
from psych201.data.split import iter_split
from psych201.results.schema import RESPONSE_KEY


def _table(nll: list[float], k: list[float], study: str = "s") -> pd.DataFrame:
    n = len(nll)
    return pd.DataFrame({
        "model": "m", "condition": "raw", "study": study, "experiment": "e",
        "participant": [str(i // 2) for i in range(n)], "line": [i // 2 + 1 for i in range(n)],
        "response_index": [i % 2 for i in range(n)], "nll": nll, "n_options": k,
    })


def test_random_nll_is_log_k_where_known() -> None:
    out = random_nll([2, 4, None, 1, float("nan"), 26])
    np.testing.assert_allclose(out[[0, 1, 5]], np.log([2, 4, 26]))
    assert np.isnan(out[[2, 3, 4]]).all()


def test_pseudo_r2_is_one_minus_the_likelihood_ratio() -> None:
    table = pd.concat([_table([0.2, 0.5, 1.0, 3.0], [2, 2, 4, float("nan")], "a"),
                       _table([0.1, 0.1], [3, 3], "b")], ignore_index=True)
    per_study, per_model = pseudo_r2(table, condition="raw")
    a = 1 - (0.2 + 0.5 + 1.0) / (2 * math.log(2) + math.log(4))  # the unknown-k row is left out
    b = 1 - 0.2 / (2 * math.log(3))
    got = per_study.set_index("study")["pseudo_r2"]
    assert got["a"] == pytest.approx(a) and got["b"] == pytest.approx(b)
    assert per_model.loc[0, "pseudo_r2"] == pytest.approx((a + b) / 2)
    pooled = 1 - (0.2 + 0.5 + 1.0 + 0.2) / (2 * math.log(2) + math.log(4) + 2 * math.log(3))
    assert per_model.loc[0, "pseudo_r2_pooled"] == pytest.approx(pooled)
    assert per_model.loc[0, "n_responses"] == 5


def test_option_counts_can_come_from_a_separate_table() -> None:
    table = _table([0.3, 0.3], [float("nan")] * 2).drop(columns="n_options")
    with pytest.raises(ValueError, match="no option counts"):
        with_option_counts(table)
    counts = table[RESPONSE_KEY].assign(n_options=[2.0, 5.0])
    merged = with_option_counts(table, counts)
    assert list(merged["n_options"]) == [2.0, 5.0]


@pytest.fixture(scope="module")
def real_split() -> tuple[list, list]:
    """Training sessions of two studies, test sessions of three: olschewski2024skewness (1200
    long sessions) is only read where a test uses it, the option counts of its test sessions."""
    studies = ("frey2017lotteries", "franke2024bayesian", "olschewski2024skewness")
    train = [s for st in studies[:2] for s in iter_split(DATA / st, "train")]
    test = [s for st in studies for s in iter_split(DATA / st, "test")]
    return train, test


@needs_data
def test_population_baseline_on_real_studies(real_split: tuple[list, list]) -> None:
    train, test = real_split
    # olschewski2024skewness (1200 long sessions) only slows the options parser down here
    train_rows = trial_responses(train)
    test_rows = trial_responses([s for s in test if s.study != "olschewski2024skewness"])
    result = population_baseline(train_rows, test_rows, alpha=0.5)
    studies = result.studies.set_index("study")
    # frey2017lotteries: the same lottery pairs for everyone (trials recur); all discrete
    assert studies.loc["frey2017lotteries", "aligned"]
    assert studies.loc["frey2017lotteries", "discrete"] == 1.0
    assert result.covered_studies == [s for s in studies.index if studies.loc[s, "aligned"]]
    rows = result.responses
    assert (rows["model"] == POPULATION_MODEL).all()
    for study in studies.index[~studies["aligned"]]:
        assert rows.loc[rows["study"] == study, "nll"].isna().all()
        assert studies.loc[study, "reason"]
    frey = rows[rows["study"] == "frey2017lotteries"].merge(test_rows, on=RESPONSE_KEY)
    assert frey["nll"].notna().mean() >= 0.5
    # lottery B is chosen far more often than A: the population beats guessing (log 2)
    assert frey["nll"].mean() < math.log(2) - 0.05
    # one trial by hand: (count + α) / (N + α k), counts over the same stimulus in training
    first = frey.dropna(subset=["nll"]).iloc[0]
    trial = train_rows[(train_rows["study"] == "frey2017lotteries")
                       & (train_rows["trial"] == first["trial"])]
    count = int((trial["choice"] == first["choice"]).sum())
    p = (count + 0.5) / (len(trial) + 0.5 * 2)
    assert first["nll"] == pytest.approx(-math.log(p))


def test_population_baseline_keys_trials_by_stimulus_with_letters_normalised() -> None:
    """Two participants see the same lotteries under other letters: one trial, one choice."""
    from psych201.data.markers import parse_responses
    from psych201.data.records import Session

    def session(pid: str, a: str, b: str, pick_first: bool) -> Session:
        text = (f"Lottery {a}: 5 points. Lottery {b}: 3 points. You choose "
                f"<<{a if pick_first else b}>>.\nWrite a word: <<apple>>")
        return Session("s", "e", pid, int(pid), text, parse_responses(text))

    def options(s: Session) -> list[frozenset[str] | None]:
        letters = [w[0] for w in s.text.split() if len(w) == 2 and w.endswith(":")]
        return [frozenset(letters), None]

    train = [session(str(i), *("AB" if i % 2 else "KQ"), pick_first=i < 5) for i in range(6)]
    test = [session("9", "X", "Y", pick_first=True)]
    train_rows = trial_responses(train, options)
    assert train_rows["trial"].dropna().nunique() == 1  # A/B and K/Q lotteries: one trial
    assert train_rows["trial"].isna().sum() == 6  # the free-text answers get no key
    result = population_baseline(train_rows, trial_responses(test, options), alpha=0.5,
                                 min_train=5)
    nll = result.responses.set_index("response_index")["nll"]
    # 5 of 6 chose the first-listed lottery: P = (5 + .5) / (6 + .5 · 2)
    assert nll[0] == pytest.approx(-math.log(5.5 / 7))
    assert math.isnan(nll[1])  # free text: no likelihood claimed
    assert result.studies.loc[0, "discrete"] == 0.5


@needs_data
def test_option_counts_of_real_sessions(real_split: tuple[list, list]) -> None:
    _, test = real_split
    counts = option_counts(test)
    assert len(counts) == sum(len(s.responses) for s in test)
    frey = counts[counts["study"] == "frey2017lotteries"]["n_options"]
    assert (frey == 2).all()  # lotteries A and B
    franke = counts[counts["study"] == "franke2024bayesian"]["n_options"]
    assert franke.notna().mean() > 0.9 and franke.min() >= 2


def test_population_baseline_needs_positive_smoothing() -> None:
    with pytest.raises(ValueError, match="alpha"):
        population_baseline(pd.DataFrame(), pd.DataFrame(), alpha=0)


def _bandit_tables(n_participants: int, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from psych201.data.readers import discover_studies
    from psych201.simulate import simulate_study, write_study

    write_study(simulate_study("bandit", n_participants=n_participants, seed=0),
                tmp_path / "bandit.jsonl")
    source = discover_studies(tmp_path)[0]
    return (trial_responses(iter_split(source, "train", seed=0)),
            trial_responses(iter_split(source, "test", seed=0)))


def test_a_bandit_is_keyed_by_trial_not_by_the_previous_outcome(tmp_path: Path) -> None:
    """Issue 25 row 3: the machines are named only in the instructions and each trial's text
    starts with the outcome of the previous one; keys were (previous outcome, trial number)
    over ~25 raw letters, and the baseline gave 3.21 nats against 0.69 for guessing."""
    train, test = _bandit_tables(200, tmp_path)
    keys = train["trial"].dropna().unique()
    assert not any("won" in key for key in keys)  # the previous outcome is not in the key
    assert len(keys) == train.groupby("participant").size().max()  # one key per trial number
    assert set(train["choice"]) == {"<1>", "<2>"}  # letters named in the instructions
    assert all(sorted(labels.values()) == ["<1>", "<2>"] for labels in train["labels"])
    result = population_baseline(train, test)
    assert result.covered_studies == ["bandit"]
    nll = result.responses["nll"].mean()
    assert nll <= math.log(2) + 0.002  # never (meaningfully) worse than guessing


@needs_data
def test_dezfouli_trials_are_not_keyed_by_the_previous_outcome() -> None:
    """Issue 25 row 3 on real data: dezfouli2019's 'trials' were (previous outcome, block),
    e.g. ' and received a food reward.\\nBlock 7: You pressed '."""
    from itertools import islice

    sessions = list(islice(iter_split(DATA / "dezfouli2019", "all"), 6))
    trials = trial_responses(sessions)
    later = trials[trials["response_index"] > 0]  # the first trial's text is the instructions
    keys = later["trial"].dropna().unique()
    assert later["trial"].notna().all() and len(keys) > 1
    assert all(re.fullmatch(r"Block \d+: You pressed\n\[options: <1>, <2>\]", key)
               for key in keys), keys[:3]


def _choices(study: str, trial: str, picks: list[str]) -> pd.DataFrame:
    """A trial table: participant i chose ``picks[i]`` of two options at ``trial``."""
    return pd.DataFrame({
        "study": study, "experiment": "e", "participant": [str(i) for i in range(len(picks))],
        "line": range(1, len(picks) + 1), "response_index": 0, "trial": trial,
        "choice": picks, "n_options": 2.0,
        "labels": [{"K": "<1>", "Q": "<2>"}] * len(picks)})


def test_a_training_participant_is_scored_without_their_own_choice() -> None:
    """Issue 25 row 9: with --split all the baseline was in-sample (a participant's own choice
    was among the frequencies that scored it), without a word."""
    everyone = _choices("s", "t", ["<1>"] * 5 + ["<2>"])
    result = population_baseline(everyone, everyone, alpha=0.5, min_train=5)
    nll = result.responses["nll"].to_numpy()
    assert nll[0] == pytest.approx(-math.log((4 + 0.5) / (5 + 1)))  # 4 of the 5 others
    assert nll[5] == pytest.approx(-math.log((0 + 0.5) / (5 + 1)))  # none of the others
    assert result.studies.loc[0, "in_sample"] == 6


def test_the_population_section_states_in_sample_and_unpooled_studies() -> None:
    from psych201.analysis.an_population import PopulationBaseline as Section
    from psych201.analysis.plugin import AnalysisContext, AnalysisInputs, AnalysisOptions
    from psych201.analysis.registry import ModelRegistry
    from psych201.analysis.tables import Results

    pooled = _choices("a", "t", ["<1>"] * 8 + ["<2>"] * 2)
    own = pd.concat([_choices("b", f"own {i}", ["<1>"]).assign(participant=str(i))
                     for i in range(10)], ignore_index=True)  # every trial seen once
    everyone = pd.concat([pooled, own], ignore_index=True)
    result = population_baseline(everyone, everyone)
    frame = everyone[RESPONSE_KEY].assign(model="m", condition="raw", nll=0.5)
    context = AnalysisContext(
        results=Results(frame, ()), frame=frame, main=frame, condition="raw",
        studies=("a", "b"), models=("m",), registry=ModelRegistry([]),
        options=AnalysisOptions(n_boot=50), pairs=(),
        inputs=AnalysisInputs(population=result))
    section = Section().run(context)
    assert section is not None
    assert any(n.startswith("b: not pooled") for n in section.notes), section.notes
    assert any(n.startswith("a: 10 responses are of participants whose choices")
               for n in section.notes), section.notes
    row = section.table("population").set_index("study").loc["a"]
    assert row["nll_guessing"] == pytest.approx(math.log(2))
    assert row["nll_population"] < row["nll_guessing"]  # people prefer <1>: better than guessing
