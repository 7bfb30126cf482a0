"""Model-level meta-analysis over pairs and multiplicity control (issue 25, ★ and row 9).

The regression is checked on per-(pair, study) d values drawn with planted coefficients (size
slope, type contrast, family and study random intercepts), and end to end on the synthetic
score tables, whose generating model sets each type's d and no size effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from psych201.analysis.an_meta import fit_meta
from psych201.analysis.an_post_training import PostTrainingResult
from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import load_registry
from psych201.analysis.summary import summarize
from psych201.analysis.synthetic import (
    SyntheticDesign,
    default_models,
    synthetic_responses,
    true_pair_d,
)
from psych201.analysis.tables import results_from_frame

REGISTRY = load_registry()
FAMILIES = {"A": (0.5, 1.5, 7.0), "B": (1.0, 8.0, 70.0), "C": (0.6, 4.0, 14.0),
            "D": (2.0, 9.0, 32.0)}
SLOPE, REASONING = 0.05, 0.08  # d per tenfold parameters; reasoning − instruct


def planted_rows(rng: np.random.Generator, n_studies: int = 8) -> pd.DataFrame:
    """Per-(pair, study) d = 0.1 + SLOPE·log10 size + REASONING·[reasoning] + family + study +
    noise; every family has an instruct and a reasoning model at each size."""
    study_effect = 0.04 * rng.standard_normal(n_studies)
    rows = []
    for family, sizes in FAMILIES.items():
        family_effect = 0.03 * rng.standard_normal()
        for size in sizes:
            for kind in ("instruct", "reasoning"):
                for s in range(n_studies):
                    d = (0.1 + SLOPE * np.log10(size) + REASONING * (kind == "reasoning")
                         + family_effect + study_effect[s] + 0.05 * rng.standard_normal())
                    rows.append({"post": f"{family}-{size}-{kind}", "base": f"{family}-{size}",
                                 "type": kind, "family": family, "params_b": size,
                                 "study": f"s{s}", "d": d})
    frame = pd.DataFrame(rows)
    frame["log10_params"] = np.log10(frame["params_b"])
    return frame


def test_meta_regression_recovers_planted_size_and_type_effects() -> None:
    rng = np.random.default_rng(20)
    n_sims, covered_slope, covered_type, detected = 60, 0, 0, 0
    for _ in range(n_sims):
        fit = fit_meta(planted_rows(rng))
        assert not isinstance(fit, str), fit
        table = fit.coefficients.set_index("term")
        slope = table.loc["log10 size (per tenfold parameters)"]
        contrast = table.loc["type: reasoning − instruct"]
        covered_slope += slope["ci_low"] <= SLOPE <= slope["ci_high"]
        covered_type += contrast["ci_low"] <= REASONING <= contrast["ci_high"]
        detected += contrast["p_value"] < 0.05
    # between–within df: near nominal (200 datasets: slope 97.5 %, type 95 %), never Wald-short
    assert 0.9 <= covered_slope / n_sims <= 0.99 and 0.9 <= covered_type / n_sims <= 0.99
    assert detected / n_sims >= 0.8  # a planted 0.08 d contrast over 4 families, 8 studies
    assert set(fit.variance["component"]) == {"study", "family", "residual"}


def test_meta_regression_says_what_it_cannot_fit() -> None:
    rows = planted_rows(np.random.default_rng(1))
    few = rows[rows["post"].isin(rows["post"].unique()[:2])]
    assert fit_meta(few) == "needs at least 3 pairs and 2 shared studies (2 pairs, 8 studies here)"
    one_family = fit_meta(rows[rows["family"] == "A"])
    assert not isinstance(one_family, str)
    assert any("too few for a family random effect" in n for n in one_family.notes)


@pytest.fixture(scope="module")
def summary() -> object:
    design = SyntheticDesign(studies={s: k for s, k in list(SyntheticDesign().studies.items())
                                      [:8]}, n_participants=8, n_responses=10, seed=4)
    models = [m for m in default_models(REGISTRY) if m.family in ("Qwen2.5", "Qwen3")]
    frame = synthetic_responses(models, design=design)
    return summarize(results_from_frame(frame), REGISTRY,
                     AnalysisOptions(n_boot=300, detail_pairs=0))


def test_the_meta_analysis_section_recovers_the_synthetic_types(summary: object) -> None:
    section = summary.section("meta-analysis")  # type: ignore[attr-defined]
    assert section is not None
    table = section.table("coefficients").set_index("term")
    design = SyntheticDesign()
    for kind in ("code", "math", "reasoning"):
        row = table.loc[f"type: {kind} − instruct"]
        truth = true_pair_d(design, kind) - true_pair_d(design, "instruct")
        assert row["ci_low"] <= truth <= row["ci_high"], (kind, row)
    size = table.loc["log10 size (per tenfold parameters)"]
    assert abs(size["estimate"]) < 0.05  # no size effect was planted
    assert "Cohen" in section.text and "higher NLL on the human responses" in section.text


def test_pair_p_values_are_adjusted_for_multiplicity(summary: object) -> None:
    """Row 9: per-pair p-values were printed with no multiplicity control."""
    pairs = summary.result("post-training", PostTrainingResult).pairs  # type: ignore[attr-defined, union-attr]
    finite = pairs["p_value"].notna()
    assert finite.sum() >= 10
    expected = multipletests(pairs.loc[finite, "p_value"], method="fdr_bh")[1]
    np.testing.assert_allclose(pairs.loc[finite, "q_value"], expected)
    assert (pairs.loc[finite, "q_value"] >= pairs.loc[finite, "p_value"]).all()
    assert np.isfinite(pairs["diff_nats"]).all()  # nats beside every d
