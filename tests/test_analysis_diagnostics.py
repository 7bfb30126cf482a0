"""Per-response diagnostics on tables with planted effects: known losers, known over-confidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from psych201.analysis.an_diagnostics import (
    TOP_N,
    Diagnostics,
    confidence,
    participant_differences,
)
from psych201.analysis.plugin import AnalysisContext
from psych201.analysis.registry import ModelPair, ModelRegistry
from psych201.analysis.summary import AnalysisOptions
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
                             "entropy": float(-(dist * np.log(dist)).sum())})
    return pd.DataFrame(rows), planted


def _context(table: pd.DataFrame, extras: dict[str, object]) -> AnalysisContext:
    main = table[["model", "condition", "study", "experiment", "participant", "line",
                  "response_index", "nll"]]  # as summarize trims it: the rest comes from results
    return AnalysisContext(
        results=Results(table, ()), frame=main, main=main, condition="raw", studies=("s",),
        models=("base", "post"), registry=ModelRegistry([]), options=AnalysisOptions(),
        pairs=(PAIR,), extras=extras)


def test_the_planted_losses_are_the_largest_and_over_confidence_shows() -> None:
    table, planted = _planted()
    trials = table[table["model"] == "base"][["study", "experiment", "participant", "line",
                                              "response_index"]].assign(snippet="pick one")
    section = Diagnostics().run(_context(table, {"trials": trials}))
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
    assert len(section.figures) == 2 and all(f.draw() is not None for f in section.figures)


def test_without_transcripts_the_losses_come_without_context() -> None:
    table, _ = _planted(n_participants=6, n_responses=5)
    section = Diagnostics().run(_context(table, {}))
    assert section is not None
    assert "context" not in section.table("largest_losses").columns
    assert any("without context" in n for n in section.notes)


def test_skipped_without_a_pair() -> None:
    table, _ = _planted(n_participants=2, n_responses=2)
    context = _context(table, {})
    from dataclasses import replace

    assert Diagnostics().skip(replace(context, pairs=())) is not None
    assert Diagnostics().skip(context) is None


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
    section = Diagnostics().run(_context(table, {}))
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
