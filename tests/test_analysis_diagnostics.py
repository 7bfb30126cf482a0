"""Per-response diagnostics on tables with planted effects: known losers, known over-confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import cli_output
from psych201.analysis.an_diagnostics import (
    TOP_N,
    Diagnostics,
    confidence,
    offered_confidence,
    participant_differences,
)
from psych201.analysis.offered import MAX_SLOPE, fit_slopes
from psych201.analysis.plugin import AnalysisContext, AnalysisInputs, AnalysisOptions
from psych201.analysis.registry import ModelPair, ModelRegistry
from psych201.analysis.tables import Results

PAIR = ModelPair("post", "base", "instruct")
PLANTED = 50.0  # nats added to the post-trained model's NLL on the planted responses


def _planted(n_participants: int = 20, n_responses: int = 30, k: int = 4,
             seed: int = 0) -> tuple[pd.DataFrame, set[tuple[str, int]]]:
    """``base`` is calibrated: each choice is drawn from its own predicted distribution q, so
    its NLL equals its entropy in expectation. ``post`` predicts q sharpened (temperature 0.4):
    over-confident, NLL above entropy. On ten known responses ``post`` is also far worse."""
    rng = np.random.default_rng(seed)
    rows = []
    cells = rng.choice(n_participants * n_responses, min(TOP_N, n_participants * n_responses),
                       replace=False)
    planted = {(str(c // n_responses), int(c % n_responses)) for c in cells}
    for p in range(n_participants):
        for r in range(n_responses):
            q = rng.dirichlet(np.ones(k))
            sharp = q ** 2.5
            sharp /= sharp.sum()
            c = int(rng.choice(k, p=q))
            key = {"condition": "raw", "study": "s", "experiment": "e", "participant": str(p),
                   "line": p + 1, "response_index": r, "response_text": "ABCD"[c],
                   "n_tokens": 1}
            extra = PLANTED if (str(p), r) in planted else 0.0
            for model, dist, add in (("base", q, 0.0), ("post", sharp, extra)):
                rows.append({**key, "model": model, "nll": -np.log(dist[c]) + add,
                             "entropy": float(-(dist * np.log(dist)).sum()),
                             "offered_options": list("ABCD"[:k]),
                             "offered_logprobs": list(np.log(dist))})
    return pd.DataFrame(rows), planted


def _context(table: pd.DataFrame, trials: pd.DataFrame | None) -> AnalysisContext:
    main = table[["model", "condition", "study", "experiment", "participant", "line",
                  "response_index", "nll"]]  # as summarize trims it: the rest comes from results
    return AnalysisContext(
        results=Results(table, ()), frame=main, main=main, condition="raw", studies=("s",),
        models=("base", "post"), registry=ModelRegistry([]), options=AnalysisOptions(),
        pairs=(PAIR,), inputs=AnalysisInputs(trials=trials))


def test_the_planted_losses_are_the_largest_and_over_confidence_shows() -> None:
    table, planted = _planted()
    trials = table[table["model"] == "base"][["study", "experiment", "participant", "line",
                                              "response_index"]].assign(snippet="pick one")
    section = Diagnostics().run(_context(table, trials))
    assert section is not None and section.anchor == "diagnostics"
    top = section.table("largest_losses")
    assert len(top) == TOP_N
    assert set(zip(top["participant"], top["response_index"], strict=True)) == planted
    assert (top["context"] == "pick one").all() and top["response_text"].notna().all()
    assert top["rank"].tolist() == list(range(1, TOP_N + 1))
    assert top["diff"].is_monotonic_decreasing
    conf = section.table("confidence").set_index("model")
    # the calibrated base: NLL ≈ entropy; the sharpened post: NLL well above its entropy
    unplanted = confidence(table[table["nll"] < PLANTED / 2]).set_index("model")
    assert abs(unplanted.loc["base", "difference"]) < 0.1
    assert unplanted.loc["post", "difference"] > 0.3
    # one-token responses: the same numbers when the table does not say so
    pd.testing.assert_frame_equal(confidence(table.drop(columns="n_tokens")), section.table(
        "confidence"))
    assert conf.loc["post", "entropy"] < conf.loc["base", "entropy"]
    assert conf.loc["post", "ratio"] > 1.5
    assert not section.notes
    # over the offered options the sharpened post is over-confident (β = 1/2.5), the base not
    offered = section.table("offered_confidence").set_index("model")
    assert offered.loc["post", "slope"] == pytest.approx(0.4, abs=0.1)
    assert offered.loc["post", "verdict"] == "over-confident"
    assert offered.loc["base", "slope_ci_low"] < 1 < offered.loc["base", "slope_ci_high"]
    assert offered.loc["post", "accuracy_gap"] > 0.1 and offered.loc["post", "gap_ci_low"] > 0
    assert len(section.figures) == 2 and all(f.draw() is not None for f in section.figures)


def test_without_transcripts_the_losses_come_without_context() -> None:
    table, _ = _planted(n_participants=6, n_responses=5)
    section = Diagnostics().run(_context(table, None))
    assert section is not None
    assert "context" not in section.table("largest_losses").columns
    assert any("without context" in n for n in section.notes)


def test_without_a_pair_only_the_per_model_views_run() -> None:
    """No pair: the section still runs where entropy or offered log-probs are recorded (the
    over-confidence views are per model), says the pair views are left out, and is skipped only
    where neither column has a value."""
    table, _ = _planted(n_participants=6, n_responses=4)
    context = _context(table, None)
    from dataclasses import replace

    alone = replace(context, pairs=())
    assert Diagnostics().skip(context) is None
    assert Diagnostics().skip(alone) is None
    section = Diagnostics().run(alone)
    assert section is not None
    names = [t.name for t in section.tables]
    assert "offered_confidence" in names and "confidence" in names
    assert "largest_losses" not in names and "participant_summary" not in names
    assert any("no base/post-trained pair" in n for n in section.notes)
    assert section.text.startswith("Is the model over-confident")
    bare = table.assign(entropy=np.nan, offered_logprobs=None)
    assert Diagnostics().skip(replace(_context(bare, None), pairs=())) is not None


def test_share_of_participants_fit_worse() -> None:
    rng = np.random.default_rng(1)
    shift = np.where(np.arange(20) < 6, 0.5, -0.5)  # six of twenty are fit worse
    rows = [{"study": "s", "experiment": "e", "participant": str(p), "line": p + 1,
             "response_index": r, "diff": shift[p] + rng.normal(0, 0.1)}
            for p in range(20) for r in range(15)]
    per = participant_differences(pd.DataFrame(rows))
    assert len(per) == 20 and (per["n_responses"] == 15).all()
    assert float((per["mean_diff"] > 0).mean()) == pytest.approx(0.3)
    table, _ = _planted(n_participants=8, n_responses=6)
    section = Diagnostics().run(_context(table, None))
    assert section is not None
    summary = section.table("participant_summary").iloc[0]
    assert summary["n_participants"] == 8
    assert 0 <= summary["share_worse"] <= 1
    assert len(section.table("participants")) == 8


def test_both_analyses_are_registered_under_the_contract() -> None:
    from psych201.analysis.plugin import Analysis
    from psych201.analysis.sections import ANALYSES

    names = [a.name for a in ANALYSES]
    assert {"population-fit", "diagnostics"} <= set(names)
    assert all(isinstance(a, Analysis) for a in ANALYSES)


def _two_option_table(p_first: float, q_first: float, *, n_participants: int = 60,
                      n_responses: int = 50, seed: int = 0) -> pd.DataFrame:
    """People choose option A with ``p_first``; "model" gives A ``q_first`` (B the rest), "base"
    gives the people's own p."""
    rng = np.random.default_rng(seed)
    chose_a = rng.random((n_participants, n_responses)) < p_first
    rows = []
    for model, qa in (("model", q_first), ("base", p_first)):
        q = np.array([qa, 1 - qa])
        for i in range(n_participants):
            for r in range(n_responses):
                c = 0 if chose_a[i, r] else 1
                rows.append({"model": model, "condition": "raw", "study": "s",
                             "experiment": "e", "participant": str(i), "line": i + 1,
                             "response_index": r, "response_text": "AB"[c], "n_tokens": 1,
                             "nll": -np.log(q[c]), "entropy": float(-(q * np.log(q)).sum()),
                             "offered_options": ["A", "B"],
                             "offered_logprobs": list(np.log(q))})
    return pd.DataFrame(rows)


def test_right_confidence_on_the_wrong_favourite_is_not_over_confidence() -> None:
    """Issue 25, row 7: p = .7 vs q = .3. NLL − entropy is +0.34 nats (the old table read it as
    over-confidence); over the offered options the slope is −1 and the accuracies say why."""
    table = _two_option_table(0.7, 0.3)
    conf = confidence(table).set_index("model")
    assert conf.loc["model", "difference"] == pytest.approx(
        0.7 * -np.log(0.3) + 0.3 * -np.log(0.7) - (-(0.3 * np.log(0.3) + 0.7 * np.log(0.7))),
        abs=0.03)  # ≈ +0.34: a misfit index
    offered = offered_confidence(table, n_boot=300).set_index("model")
    model = offered.loc["model"]
    assert model["slope"] == pytest.approx(-1.0, abs=0.1)
    assert model["verdict"].startswith("wrong favourite")
    assert model["expected_accuracy"] == pytest.approx(0.7)
    assert model["observed_accuracy"] == pytest.approx(0.3, abs=0.03)
    assert offered.loc["base", "slope"] == pytest.approx(1.0, abs=0.15)
    assert offered.loc["base", "verdict"] == "calibrated within its interval"
    assert offered.loc["base", "offered_mass"] == pytest.approx(1.0)
    section = Diagnostics().run(AnalysisContext(
        results=Results(table, ()), frame=table, main=table, condition="raw", studies=("s",),
        models=("base", "model"), registry=ModelRegistry([]),
        options=AnalysisOptions(n_boot=200), pairs=(ModelPair("model", "base", "instruct"),)))
    assert section is not None
    assert "0 of 2 model × study cells are over-confident" in section.text
    assert "1 prefer another option" in section.text


def test_a_separating_favourite_stays_finite() -> None:
    log_q = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    beta = fit_slopes(log_q, np.array([0, 1]), np.ones((1, 2)))
    assert beta[0] == pytest.approx(MAX_SLOPE)


@pytest.mark.slow
def test_share_worse_under_a_pure_temperature_distortion(tmp_path: Path) -> None:
    """Issue 25, row 8: the oracle at T = 0.5 is worse than the oracle for every participant in
    expectation (the difference is a KL divergence), yet only ~¾ of 200 participants come out
    worse. The share now has an interval and sits beside the share a pure temperature
    distortion of the base gives, which explains it (here they coincide by construction).

    Measured (risky choice, 200 participants, seed 3): share 0.730 [0.665, 0.790], expected under
    a temperature 0.730 (t = 0.50)."""
    data = tmp_path / "risky.jsonl"
    code, output = cli_output("simulate", "risky", "-n", "200", "--seed", "3", "--out", str(data))
    assert code == 0, output
    tables = []
    for name, args in (("exact", []), ("sharp", ["--engine-args", "temperature=0.5"])):
        code, output = cli_output("score", "--engine", "oracle", "--data", str(data), "--out",
                                  str(tmp_path / name), "--split", "all", "-q", *args)
        assert code == 0, output
        tables.append(pd.read_parquet(tmp_path / name / "responses.parquet"))
    table = pd.concat(tables, ignore_index=True)
    condition = str(table["condition"].iloc[0])
    section = Diagnostics().run(AnalysisContext(
        results=Results(table, ()), frame=table, main=table, condition=condition,
        studies=("risky",), models=("oracle", "oracle-T0.5"), registry=ModelRegistry([]),
        options=AnalysisOptions(n_boot=1000),
        pairs=(ModelPair("oracle-T0.5", "oracle", "instruct"),)))
    assert section is not None
    row = section.table("participant_summary").iloc[0]
    assert row["n_participants"] == 200
    assert row["share_ci_low"] < row["share_worse"] < row["share_ci_high"] < 1.0
    assert row["share_ci_low"] <= row["share_temperature"] <= row["share_ci_high"]
    assert row["temperature_matched"] == pytest.approx(0.5, rel=0.1)
    assert "pure temperature distortion" in section.text
    # over the offered options the tempered oracle is over-confident with slope 1/2
    offered = section.table("offered_confidence").set_index("model")
    assert offered.loc["oracle-T0.5", "slope"] == pytest.approx(0.5, abs=0.05)
    assert offered.loc["oracle-T0.5", "verdict"] == "over-confident"
    assert offered.loc["oracle", "verdict"] == "calibrated within its interval"
    print(row[["share_worse", "share_ci_low", "share_ci_high", "share_temperature",
               "temperature_matched"]].to_dict())


def test_a_slope_interval_reaching_zero_is_not_read_as_over_confidence() -> None:
    """β's interval below 1 but reaching 0 cannot tell a too-sharp model from one whose option
    preferences say nothing about people's choices: the verdict says so instead of
    "over-confident"."""
    from psych201.analysis.offered import UNINFORMATIVE, Overconfidence

    def verdict(low: float, high: float) -> str:
        return Overconfidence(n_participants=10, n_responses=100, offered_mass=0.9,
                              slope=(low + high) / 2, slope_ci=(low, high),
                              expected_accuracy=0.7, observed_accuracy=0.5, accuracy_gap=0.2,
                              gap_ci=(0.1, 0.3)).verdict

    assert verdict(-0.19, 0.43) == UNINFORMATIVE
    assert verdict(0.05, 0.43) == "over-confident"
    assert verdict(-0.6, -0.1).startswith("wrong favourite")
    assert verdict(0.8, 1.3) == "calibrated within its interval"
    assert verdict(1.1, 1.6) == "under-confident"


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_the_calibration_slope_interval_covers_the_planted_slope(beta: float) -> None:
    """Seeded: 30 participants × 40 two-option choices, the model's option probabilities q drawn
    per response and people choosing with p ∝ q^β: the clustered 95 % interval of β covers the
    planted β in 93–97 % of 600 datasets (measured at β = 0.5 on 1,000: 94.9 %)."""
    from psych201.analysis.offered import OfferedChoices, overconfidence

    rng = np.random.default_rng(int(beta * 10))
    n_people, n_choices = 30, 40
    rows = pd.DataFrame({
        "model": "m", "study": "s", "experiment": "e",
        "participant": np.repeat(np.arange(n_people), n_choices).astype(str),
        "line": np.repeat(np.arange(n_people), n_choices) + 1,
        "response_index": np.tile(np.arange(n_choices), n_people)})
    hits, datasets = 0, 600
    for _ in range(datasets):
        logits = rng.normal(0, 1.5, size=(len(rows), 2))
        log_q = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        chosen = (rng.random(len(rows)) >= np.exp(beta * log_q[:, 0])
                  / np.exp(beta * log_q).sum(axis=1)).astype(np.intp)
        low, high = overconfidence(OfferedChoices(rows, log_q, chosen, np.ones(len(rows))),
                                   n_boot=20).slope_ci
        hits += low <= beta <= high
    assert 0.93 <= hits / datasets <= 0.97, hits / datasets


def test_over_confidence_reads_a_discrete_variant_where_the_main_condition_has_no_options(
) -> None:
    """Runs scored raw (no option log-probs) beside a discrete variant that has them: the
    offered-options table comes from the variant, as the population fit's does, with a note."""
    from dataclasses import replace

    table, _ = _planted(n_participants=8, n_responses=6)
    raw = table.assign(offered_logprobs=None, offered_options=None)
    both = pd.concat([raw, table.assign(condition="discrete")], ignore_index=True)
    context = _context(both, None)
    frame = both[["model", "condition", "study", "experiment", "participant", "line",
                  "response_index", "nll"]]
    context = replace(context, frame=frame, main=frame[frame["condition"] == "raw"])
    section = Diagnostics().run(context)
    assert section is not None
    offered = section.table("offered_confidence")
    assert set(offered["model"]) == {"base", "post"}
    assert any("from condition discrete" in note for note in section.notes)
    alone = Diagnostics().run(_context(raw, None))
    assert alone is not None and "offered_confidence" not in [t.name for t in alone.tables]
