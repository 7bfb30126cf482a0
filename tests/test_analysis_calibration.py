"""Calibration control (issue 12, point 2): cross-fitted temperatures on simulated ground truth."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from psych201.analysis import an_calibration as cal
from psych201.analysis.effects import MEAN_DIFF, PAPER_D_SAMPLE, compare_pair
from psych201.analysis.plugin import AnalysisContext, AnalysisOptions, Section
from psych201.analysis.registry import ModelPair, ModelRegistry
from psych201.analysis.sections import ANALYSES
from psych201.analysis.tables import results_from_frame, select
from psych201.scoring.engine import TEMPERATURE_GRID

GRID = np.asarray(TEMPERATURE_GRID)
ONE = TEMPERATURE_GRID.index(1.0)
CONDITION = "plain"
PAIR = ModelPair(post="sharp", base="oracle", post_training="instruct")
OPTIONS = AnalysisOptions(n_boot=300, seed=3)


def nll_curves(logits: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Exact NLL of ``choice`` under softmax(logits / T) for every grid temperature."""
    scaled = logits[:, None, :] / GRID[None, :, None]
    top = scaled.max(axis=2, keepdims=True)
    lse = np.log(np.exp(scaled - top).sum(axis=2)) + top[..., 0]
    n = len(choice)
    return lse - scaled[np.arange(n)[:, None], np.arange(len(GRID))[None, :], choice[:, None]]


def draw(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One choice per row from softmax(z)."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (rng.random(len(z))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)


def simulate(*, studies: int = 3, participants: int = 25, trials: int = 40, k: int = 3,
             seed: int = 0, factor: float = 2.0, noise: float = 0.0) -> pd.DataFrame:
    """People choose from softmax(z); "oracle" scores with z, "sharp" with 2z (p² renormalised:
    over-confident, true temperature 2.0). With ``noise`` > 0 "sharp" scores with
    ``factor · (z + ε)``, ε ~ N(0, noise²): a temperature then removes only part of its gap."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(studies):
        n = participants * trials
        z = rng.normal(0.0, 1.5, size=(n, k))
        choice = draw(z, rng)
        eps = rng.normal(0.0, noise, size=(n, k)) if noise > 0 else 0.0
        for model, logits in (("oracle", z), ("sharp", factor * (z + eps))):
            curves = nll_curves(logits, choice)
            frame = pd.DataFrame({
                "model": model, "condition": CONDITION, "study": f"study{s}",
                "experiment": "exp", "participant": np.repeat(
                    [f"p{i}" for i in range(participants)], trials),
                "line": np.tile(np.arange(trials), participants), "response_index": 0,
                "response_text": choice.astype(str), "n_tokens": 1, "nll": curves[:, ONE],
                "top1_correct": None, "entropy": 0.5, "context_tokens": 10, "truncated": False,
            })
            frame["nll_temperature"] = list(curves)
            # the options' whole-vocabulary log-probs: half the mass on tokens that are no option
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_q = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            frame["offered_options"] = [[str(o) for o in range(k)]] * n
            frame["offered_logprobs"] = list(log_q + np.log(0.5))
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def context_of(frame: pd.DataFrame, pairs: tuple[ModelPair, ...] = (PAIR,),
               options: AnalysisOptions = OPTIONS) -> AnalysisContext:
    results = results_from_frame(frame)
    main = select(results.responses, condition=CONDITION)
    return AnalysisContext(
        results=results, frame=results.responses, main=main, condition=CONDITION,
        studies=tuple(sorted(main["study"].unique())), models=tuple(results.models),
        registry=ModelRegistry([]), options=options, pairs=pairs,
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def section(table: pd.DataFrame) -> Section:
    out = cal.CalibrationAnalysis().run(context_of(table))
    assert out is not None
    return out


def test_fit_temperature_refines_between_grid_points() -> None:
    curve = (np.log(GRID) - math.log(2.3)) ** 2  # a parabola in log T: the vertex is exact
    assert cal.fit_temperature(curve) == pytest.approx(2.3, rel=1e-9)
    assert 2.3 not in TEMPERATURE_GRID
    assert cal.fit_temperature(-np.log(GRID)) == TEMPERATURE_GRID[-1]  # clamped to the grid
    assert cal.fit_temperature(np.log(GRID)) == TEMPERATURE_GRID[0]


def test_nll_at_interpolates_exact_curves() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(200, 4))
    choice = rng.integers(0, 4, size=200)
    matrix = nll_curves(z, choice)
    assert np.array_equal(cal.nll_at(matrix, 1.0), matrix[:, ONE])
    for t in (0.3, 1.37, 2.0, 3.3):
        exact = nll_curves(z / t, choice)[:, ONE]
        assert np.allclose(cal.nll_at(matrix, t), exact, rtol=2e-3, atol=1e-4)
    assert np.array_equal(cal.nll_at(matrix, 9.0), matrix[:, -1])  # clamped


def test_recovers_known_temperatures(section: Section) -> None:
    per_study = section.table("per_study").set_index(["model", "study"])
    for study in ("study0", "study1", "study2"):
        assert per_study.loc[("sharp", study), "temperature"] == pytest.approx(2.0, rel=0.10)
        assert per_study.loc[("oracle", study), "temperature"] == pytest.approx(1.0, rel=0.10)
        assert per_study.loc[("sharp", study), "n_folds"] == 5
        low, high = per_study.loc[("sharp", study), ["fold_t_min", "fold_t_max"]]
        assert low <= per_study.loc[("sharp", study), "temperature"] <= high * 1.0001
        # the bootstrap interval (fit inside) is wider than the fold range and covers T = 2
        ci_low, ci_high = per_study.loc[("sharp", study),
                                        ["temperature_ci_low", "temperature_ci_high"]]
        assert ci_low < 2.0 < ci_high and ci_high - ci_low > high - low
    # over the offered options only: the same temperature, and the mass the options get
    assert per_study.loc["sharp", "temperature_offered"].to_numpy() == pytest.approx(2.0, rel=0.1)
    assert per_study.loc["oracle", "temperature_offered"].to_numpy() == pytest.approx(1.0, rel=0.1)
    assert per_study["offered_mass"].to_numpy() == pytest.approx(0.5)
    per_model = section.table("per_model").set_index("model")
    assert per_model.loc["sharp", "temperature"] == pytest.approx(2.0, rel=0.10)
    assert per_model.loc["oracle", "temperature"] == pytest.approx(1.0, rel=0.10)
    # calibrated over-confident model ≈ the plain oracle (within 2 %); it was much worse before
    oracle = per_model.loc["oracle", "nll"]
    assert per_model.loc["sharp", "nll_calibrated"] == pytest.approx(oracle, rel=0.02)
    assert per_model.loc["sharp", "nll"] > 1.1 * oracle
    # study-weighted: mean per study, then over studies
    assert per_model.loc["sharp", "nll"] == pytest.approx(
        per_study.loc["sharp", "nll"].mean())
    assert per_model.loc["sharp", "gain_ci_low"] > 0


def test_cross_fit_never_uses_a_responses_own_fold() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, size=(400, 3))
    choice = draw(z, rng)
    matrix = nll_curves(z, choice)
    participant = np.repeat(np.arange(10), 40)
    folds = np.arange(10) % 5
    honest = cal.cross_fit(matrix, participant, folds=folds)
    # fold 0 turns adversarial: its responses now want the hottest temperature, strongly
    attacked = matrix.copy()
    held = folds[participant] == 0
    attacked[held] = 50.0 * (np.log(GRID[-1]) - np.log(GRID))[None, :] + matrix[held]
    adversarial = cal.cross_fit(attacked, participant, folds=folds)
    # fold 0's responses are still scored at the temperature the other folds chose
    assert adversarial.fold_temperatures[0] == honest.fold_temperatures[0]
    assert np.array_equal(adversarial.row_temperature[held], honest.row_temperature[held])
    assert adversarial.row_temperature[held][0] < 2.0
    # ...while every other fold's fit (which sees fold 0) and the all-data fit are pulled away
    assert (adversarial.fold_temperatures[1:] > honest.fold_temperatures[1:]).all()
    assert adversarial.temperature == TEMPERATURE_GRID[-1]
    # and the held-out score is the interpolated NLL at that foreign temperature
    assert np.allclose(adversarial.calibrated[held],
                       cal.nll_at(attacked[held], honest.fold_temperatures[0]))


def test_folds_are_seeded_and_shrink_with_few_participants() -> None:
    a = cal.participant_folds(12, seed=4, salt="s")
    assert np.array_equal(a, cal.participant_folds(12, seed=4, salt="s"))
    assert not np.array_equal(a, cal.participant_folds(12, seed=5, salt="s"))
    assert np.bincount(a).tolist() == [3, 3, 2, 2, 2]
    assert sorted(cal.participant_folds(3).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError):
        cal.participant_folds(1)


def test_pairs_before_and_after_equal_compare_pair(table: pd.DataFrame,
                                                   section: Section) -> None:
    pairs = section.table("pairs").set_index(["post", "base"])
    row = pairs.loc[("sharp", "oracle")]
    kw = {"condition": CONDITION, "n_boot": OPTIONS.n_boot, "ci": OPTIONS.ci,
          "seed": OPTIONS.seed, "levels": OPTIONS.levels, "mixed_level": None}
    # before: the plain table, independent of the calibration code
    before = compare_pair(results_from_frame(table).responses, "sharp", "oracle", **kw)
    # after: the same comparison with each response's cross-fitted NLL in place of nll
    responses = cal.calibrate(table, condition=CONDITION, seed=OPTIONS.seed).responses
    after = compare_pair(responses.assign(nll=responses["nll_calibrated"]), "sharp", "oracle",
                         **kw)
    for prefix, comparison in (("before", before), ("after", after)):
        for column, name in (("d", PAPER_D_SAMPLE), ("diff", MEAN_DIFF)):
            effect = comparison.effect(name)
            assert row[f"{column}_{prefix}"] == pytest.approx(effect.estimate, rel=1e-12)
            assert row[f"{column}_{prefix}_ci_low"] == pytest.approx(effect.ci_low, rel=1e-12)
            assert row[f"{column}_{prefix}_ci_high"] == pytest.approx(effect.ci_high, rel=1e-12)
    diff_before = before.effect(MEAN_DIFF).estimate
    diff_after = after.effect(MEAN_DIFF).estimate
    assert row["share"] == pytest.approx(1 - diff_after / diff_before)
    # the whole gap of an over-confident model is a temperature's doing
    assert row["share"] == pytest.approx(1.0, abs=0.1)
    assert row["share_ci_low"] <= row["share"] <= row["share_ci_high"]
    assert diff_before > 0.05 and before.effect(MEAN_DIFF).ci_low > 0
    assert "removes" in section.text and "% [" in section.text


def test_section_shape_and_lazy_figure(section: Section) -> None:
    assert section.anchor == "calibration"
    assert [t.name for t in section.tables] == ["per_model", "per_study", "pairs"]
    for t in section.tables:
        missing = [c.name for c in t.columns if c.name not in t.frame.columns]
        assert not missing, (t.name, missing)
    assert list(section.table("pairs").columns) == cal.PAIR_TABLE_COLUMNS
    assert [f.name for f in section.figures] == ["fig_calibration"]
    fig = section.figures[0].draw()
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].lines) >= 4  # two curves, two fitted-temperature marks
    assert any(isinstance(a, cal.CalibrationAnalysis) for a in ANALYSES)


def test_models_without_the_column_are_skipped_with_a_note(table: pd.DataFrame) -> None:
    partial = table.copy()
    sharp = (partial["model"] == "sharp").to_numpy()
    partial["nll_temperature"] = [None if s else v
                                  for s, v in zip(sharp, partial["nll_temperature"], strict=True)]
    context = context_of(partial)
    analysis = cal.CalibrationAnalysis()
    assert analysis.skip(context) is None
    out = analysis.run(context)
    assert out is not None
    assert list(out.table("per_model")["model"]) == ["oracle"]
    assert out.table("pairs").empty
    assert list(out.table("pairs").columns) == cal.PAIR_TABLE_COLUMNS
    assert any("sharp" in n and "nll_temperature" in n for n in out.notes)
    assert any("sharp vs oracle" in n for n in out.notes)
    # no model has it (or the table predates the column): the whole analysis is skipped
    none = partial.assign(nll_temperature=None)
    reason = analysis.skip(context_of(none))
    assert reason is not None and "nll_temperature" in reason
    bare = context_of(none.drop(columns="nll_temperature"))
    assert analysis.skip(bare) is not None


def test_a_study_too_small_for_two_folds_is_named_and_left_out() -> None:
    """Issue 25, row 5: with 2 participants a temperature is fitted on one person."""
    frame = simulate(studies=2, participants=12, trials=30, seed=5)
    small = (frame["study"] == "study1") & ~frame["participant"].isin([f"p{i}" for i in
                                                                        range(9)])
    result = cal.calibrate(frame[~small.to_numpy()], condition=CONDITION, n_boot=50)
    assert set(result.per_study["study"]) == {"study0"}
    assert (result.per_study["n_folds"] == 2).all()  # 12 participants: 2 folds of ≥ 5
    assert any("left out" in n and "study1 (9)" in n for n in result.notes)


def test_reading_follows_the_numbers() -> None:
    frame = simulate(studies=1, participants=10, trials=30, seed=6)
    reverse = ModelPair(post="oracle", base="sharp", post_training="instruct")
    out = cal.CalibrationAnalysis().run(context_of(frame, pairs=(PAIR, reverse)))
    assert out is not None
    # one study: its participants are the resampling units, so the gap has an interval
    # (issue 25: one study is a first-class case, no longer "no interval")
    assert re.search(r"gap of [+-]\d\.\d{3} nats \[-?\d\.\d{3}, -?\d\.\d{3}\]", out.text)
    assert "For oracle against sharp" in out.text and "not worse before calibration" in out.text
    fitted = out.result_as(cal.CalibrationResult).temperatures
    assert fitted["sharp"] == pytest.approx(2.0, rel=0.15)


def test_inconsistent_engine_is_noted() -> None:
    frame = simulate(studies=1, participants=4, trials=10, seed=7)
    frame["nll"] = frame["nll"] + 0.05  # the plain NLL no longer matches T = 1
    result = cal.calibrate(frame, condition=CONDITION)
    assert any("differs from nll" in n for n in result.notes)
    assert not any("differs" in n for n in cal.calibrate(simulate(studies=1, participants=4,
                                                                  trials=10),
                                                         condition=CONDITION).notes)


def test_pairs_use_only_responses_both_models_calibrated() -> None:
    frame = simulate(studies=2, participants=11, trials=20, seed=8)
    gap = ((frame["model"] == "sharp") & (frame["participant"] == "p0")).to_numpy()
    frame["nll_temperature"] = [None if g else v
                                for g, v in zip(gap, frame["nll_temperature"], strict=True)]
    out = cal.CalibrationAnalysis().run(context_of(frame, options=AnalysisOptions(n_boot=50)))
    assert out is not None
    assert out.table("pairs")["n_responses"].tolist() == [(11 - 1) * 20 * 2]
    assert any("sharp: 40 of 440 responses lack" in n for n in out.notes)
    assert any("40 calibrated by one only" in n for n in out.notes)


def test_with_no_study_large_enough_the_section_says_so() -> None:
    out = cal.CalibrationAnalysis().run(context_of(simulate(studies=2, participants=4,
                                                            trials=10)))
    assert out is not None and out.table("per_model").empty
    assert "nothing is calibrated" in out.text
    assert any("study1 (4)" in n for n in out.notes)


def test_one_study_has_a_temperature_interval_at_every_level() -> None:
    """One study: the participants are the resampling units (no study-level draw to make)."""
    frame = simulate(studies=1, participants=20, trials=30, seed=9)
    for levels in ("both", "studies", "participants"):
        per_model = cal.calibrate(frame, condition=CONDITION, n_boot=200,
                                  levels=levels).per_model.set_index("model")
        low, high = per_model.loc["sharp", ["temperature_ci_low", "temperature_ci_high"]]
        assert low < per_model.loc["sharp", "temperature"] < high, levels
        assert per_model.loc["sharp", "temperature_interval"].startswith("["), levels


def test_the_calibrated_gap_carries_the_uncertainty_of_the_fit() -> None:
    """Issue 25, row 5: the temperatures were fitted once, outside the bootstrap, so the
    calibrated gap's interval left out the fit's own noise. Refitted per replicate it is wider
    than with the temperatures held fixed (10 participants per study: 2 folds of 5; "sharp" is
    sharper and noisy, so a temperature removes only part of its gap)."""
    for seed in range(3):
        table = simulate(studies=4, participants=10, trials=30, factor=1.6, noise=1.0,
                         seed=seed)
        kw = {"n_boot": 300, "seed": seed, "levels": "participants"}
        result = cal.calibrate(table, condition=CONDITION, **kw)
        pair = cal.compare_calibrated(result.responses, PAIR, condition=CONDITION, **kw)
        fixed = compare_pair(result.responses.assign(nll=result.responses["nll_calibrated"]),
                             "sharp", "oracle", condition=CONDITION, mixed_level=None,
                             **kw).effect(MEAN_DIFF)
        assert pair.diff_after.estimate == pytest.approx(fixed.estimate)
        assert "refitted" in pair.diff_after.method
        assert pair.diff_after.ci_high - pair.diff_after.ci_low > fixed.ci_high - fixed.ci_low
        assert 0 < pair.share_ci_low < pair.share < pair.share_ci_high < 1
