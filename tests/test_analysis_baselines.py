"""Random baseline / pseudo-R² and the population baseline (the latter on the real data)."""

from __future__ import annotations

import math

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
    studies = ("frey2017lotteries", "franke2024bayesian", "olschewski2024skewness")
    train = [s for st in studies for s in iter_split(DATA / st, "train")]
    test = [s for st in studies for s in iter_split(DATA / st, "test")]
    return train, test


@needs_data
def test_population_baseline_on_real_studies(real_split: tuple[list, list]) -> None:
    train, test = real_split
    # olschewski2024skewness (1200 long sessions) only slows the options parser down here
    train = [s for s in train if s.study != "olschewski2024skewness"]
    train_rows = trial_responses(train)
    test_rows = trial_responses([s for s in test if s.study != "olschewski2024skewness"])
    result = population_baseline(train_rows, test_rows)
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
    result = population_baseline(train_rows, trial_responses(test, options), min_train=5)
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
