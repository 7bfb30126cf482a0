"""Paper parity: the paper-mode statistics equal a direct transcription of the authors' scripts.

The ``authors_*`` functions below transcribe ``0_analyses/plotting/*.py`` of the Psych-201
repository line by line (their CSV has the study in a column named ``experiment``): pair d with
pandas' sample SD and ≥ 2 shared studies (plot.py), generation d with ≥ 1 shared study
(plot_evolution.py), the domain heatmap and the persona benefit with the streaming population SD
(plot_experiments.py, plot_meta.py). psych201 must give the same numbers on synthetic tables
with known structure, and those numbers must recover the structure that was planted.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from psych201.analysis import bootstrap as bs
from psych201.analysis import paper
from psych201.analysis.an_persona import PersonaResult
from psych201.analysis.domains import PAPER_DOMAINS, load_categories
from psych201.analysis.registry import ModelPair, load_registry
from psych201.analysis.synthetic import SyntheticDesign, synthetic_responses, true_pair_d
from psych201.analysis.tables import results_from_frame

REGISTRY = load_registry()
PAIR_MODELS = [
    "Qwen/Qwen2-0.5B", "Qwen/Qwen2-0.5B-Instruct", "Qwen/Qwen2-1.5B", "Qwen/Qwen2-1.5B-Instruct",
    "Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-1.7B",
    "Qwen/Qwen3-VL-2B-Instruct", "allenai/Olmo-3-1025-7B", "allenai/Olmo-3-7B-Instruct",
    "allenai/Olmo-3-7B-Think",
]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    design = SyntheticDesign(n_participants=5, n_responses=12, seed=3)
    frame = synthetic_responses([REGISTRY[m] for m in PAIR_MODELS], design=design,
                                conditions=("raw", "persona", "discrete"))
    # unequal study sets, as in real result collections: one model lacks two studies, and the
    # OLMo Think model was scored on a single study (the paper's scripts then skip the pair)
    drop = (frame["model"] == "Qwen/Qwen3-1.7B") & frame["study"].isin(
        ["dezfouli2019", "xu2023augmenting"])
    single = (frame["model"] == "allenai/Olmo-3-7B-Think") & (frame["study"] != "frey2017lotteries")
    return results_from_frame(frame[~drop & ~single].reset_index(drop=True)).responses


def authors_frame(table: pd.DataFrame, condition: str = "raw") -> pd.DataFrame:
    """The authors' CSV: model, experiment (= study folder), nll."""
    rows = table[table["condition"] == condition]
    return pd.DataFrame({"model": rows["model"].astype(str).to_numpy(),
                         "experiment": rows["study"].astype(str).to_numpy(),
                         "nll": rows["nll"].to_numpy()})


# -- transcriptions of the authors' scripts ------------------------------------------------------
def authors_pair_d(df: pd.DataFrame, post_model: str, base_model: str,
                   min_common: int = 2) -> float | None:
    base_data = df[df["model"] == base_model]
    post_data = df[df["model"] == post_model]
    if base_data.empty or post_data.empty:
        return None
    base_by_exp = base_data.groupby("experiment")["nll"]
    post_by_exp = post_data.groupby("experiment")["nll"]
    common = base_by_exp.mean().index.intersection(post_by_exp.mean().index)
    if len(common) < min_common:
        return None
    base_mean = base_by_exp.mean().loc[common]
    base_sd = base_by_exp.std().loc[common]
    post_mean = post_by_exp.mean().loc[common]
    post_sd = post_by_exp.std().loc[common]
    pooled_sd = np.sqrt((base_sd**2 + post_sd**2) / 2)
    cohen_d = (post_mean - base_mean) / pooled_sd
    return float(cohen_d.mean())


def authors_streaming_stats(df: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """plot_experiments.py / plot_meta.py: per (experiment, model) mean and population SD."""
    stats: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for row in df.itertuples(index=False):
        s = stats[(row.experiment, row.model)]
        s[0] += row.nll
        s[1] += row.nll * row.nll
        s[2] += 1
    out = {}
    for key, (s, sq, n) in stats.items():
        mean = s / n
        out[key] = (mean, math.sqrt(max(sq / n - mean**2, 0.0)))
    return out


def authors_domain_matrix(df: pd.DataFrame, pairs: list[tuple[str, str]],
                          categories: pd.DataFrame, category_cols: list[str]) -> dict:
    stats = authors_streaming_stats(df)
    heat = {}
    for post_model, base_model in pairs:
        exps = sorted({e for (e, m) in stats if m == post_model} &
                      {e for (e, m) in stats if m == base_model} & set(categories.index))
        if not exps:
            continue
        d = {}
        for e in exps:
            pm, ps = stats[(e, post_model)]
            bm, bsd = stats[(e, base_model)]
            d[e] = (pm - bm) / math.sqrt((ps**2 + bsd**2) / 2)
        heat[post_model] = {
            cat: float(np.mean([d[e] for e in exps if categories.loc[e, cat]]))
            if any(categories.loc[e, cat] for e in exps) else math.nan
            for cat in category_cols
        }
    return heat


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sd", ["sample", "population"])
def test_study_d_is_the_paper_formula(table: pd.DataFrame, sd: str) -> None:
    df = authors_frame(table)
    post, base = "Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B-Base"
    ours = paper.study_d(df.rename(columns={"experiment": "study"})[df["model"] == post],
                         df.rename(columns={"experiment": "study"})[df["model"] == base], sd=sd)
    ddof = 1 if sd == "sample" else 0
    for study, row in ours.iterrows():
        a = df[(df["model"] == post) & (df["experiment"] == study)]["nll"].to_numpy()
        b = df[(df["model"] == base) & (df["experiment"] == study)]["nll"].to_numpy()
        expected = (a.mean() - b.mean()) / math.sqrt((a.std(ddof=ddof) ** 2 +
                                                       b.std(ddof=ddof) ** 2) / 2)
        assert row["d"] == pytest.approx(expected, rel=1e-12)


def test_pair_and_type_d_equal_the_authors_script(table: pd.DataFrame) -> None:
    df = authors_frame(table)
    pairs = paper.pairs_present(table, REGISTRY, condition="raw")
    ours = paper.pair_table(table, pairs, REGISTRY, condition="raw", sd="sample")
    records = []
    for pair in pairs:
        expected = authors_pair_d(df, pair.post, pair.base)
        got = ours.set_index("post").loc[pair.post, "d"]
        if expected is None:  # the script skips pairs with < 2 shared studies
            assert math.isnan(got), pair
        else:
            assert got == pytest.approx(expected, rel=1e-12), pair
            records.append({"type": pair.type_label, "cohens_d": expected})
    assert any(math.isnan(v) for v in ours["d"]), "the single-study pair must be skipped"
    authors_types = pd.DataFrame(records).groupby("type")["cohens_d"].mean()
    for _, row in paper.type_d(ours).iterrows():
        assert row["d"] == pytest.approx(authors_types[row["type"]], rel=1e-12)
    # the model with two studies missing is compared on the shared ones only
    n = ours.set_index("post").loc["Qwen/Qwen3-1.7B", "n_studies"]
    assert n == table["study"].nunique() - 2


def test_generation_trend_equals_the_authors_script(table: pd.DataFrame) -> None:
    df = authors_frame(table)
    trend = paper.generation_trend(table, REGISTRY, condition="raw",
                                   families=("Qwen2", "Qwen3"))
    # plot_evolution.py: Instruct / hybrid pairs, ≥ 1 shared study; VL models are excluded
    expected = {
        "Qwen2": np.mean([authors_pair_d(df, f"Qwen/Qwen2-{s}-Instruct", f"Qwen/Qwen2-{s}", 1)
                          for s in ("0.5B", "1.5B")]),
        "Qwen3": np.mean([authors_pair_d(df, f"Qwen/Qwen3-{s}", f"Qwen/Qwen3-{s}-Base", 1)
                          for s in ("0.6B", "1.7B")]),
    }
    got = trend.mean_d.set_index("family")["d"]
    assert list(got.index) == ["Qwen2", "Qwen3"]
    for family, value in expected.items():
        assert got[family] == pytest.approx(value, rel=1e-12)
    assert "Qwen/Qwen3-VL-2B-Instruct" not in set(trend.pair_d["post"])
    # base curve = the paper's model score: mean over studies of pooled study means
    base = trend.base_scores.set_index("model")["score"]
    direct = df[df["model"] == "Qwen/Qwen2-1.5B"].groupby("experiment")["nll"].mean().mean()
    assert base["Qwen/Qwen2-1.5B"] == pytest.approx(direct, rel=1e-12)


def test_domain_heatmap_equals_the_authors_script(table: pd.DataFrame) -> None:
    df = authors_frame(table)
    categories = load_categories()
    pairs = [p for p in paper.pairs_present(table, REGISTRY, condition="raw")
             if p.post != "allenai/Olmo-3-7B-Think"]
    ours = paper.domain_d(table, pairs, categories, condition="raw", sd="population")
    expected = authors_domain_matrix(df, [(p.post, p.base) for p in pairs], categories,
                                     list(PAPER_DOMAINS))
    for post, row in expected.items():
        for domain, value in row.items():
            if math.isnan(value):
                assert domain not in ours.columns or math.isnan(ours.loc[post, domain])
            else:
                assert ours.loc[post, domain] == pytest.approx(value, rel=1e-10)
    average = pd.DataFrame(expected).T[ours.columns].mean(axis=0, skipna=True)
    np.testing.assert_allclose(ours.loc["Average"].to_numpy(float), average.to_numpy(float),
                               rtol=1e-10)


def test_persona_paper_mode_equals_the_authors_script(table: pd.DataFrame) -> None:
    model = "Qwen/Qwen3-0.6B"
    # plot_meta.py: directory "data" (every participant) against "data_meta" (persona rows)
    data = authors_frame(table, "raw")
    meta = authors_frame(table, "persona")
    stats_data = authors_streaming_stats(data[data["model"] == model])
    stats_meta = authors_streaming_stats(meta[meta["model"] == model])
    ours = paper.persona_benefit(table, model, persona_condition="persona",
                                 reference_condition="raw", same_participants=False)
    for study, row in ours.iterrows():
        dm, dsd = stats_data[(study, model)]
        mm, msd = stats_meta[(study, model)]
        expected = (dm - mm) / math.sqrt((msd**2 + dsd**2) / 2)
        assert row["d"] == pytest.approx(expected, rel=1e-10)
    # the fixed comparison uses the persona participants on both sides
    fixed = paper.persona_benefit(table, model, persona_condition="persona",
                                  reference_condition="raw")
    assert (fixed["n_reference"] == fixed["n_persona"]).all()
    assert (ours["n_reference"] > ours["n_persona"]).any()


def test_accuracy_is_mean_per_study_then_over_studies(table: pd.DataFrame) -> None:
    per_study, per_model = paper.accuracy(table, condition="discrete")
    rows = table[(table["condition"] == "discrete") & (table["model"] == "Qwen/Qwen2-0.5B")]
    direct = rows.groupby("study", observed=True)["top1_correct"].apply(
        lambda x: x.astype(float).mean()).mean()
    got = per_model.set_index("model").loc["Qwen/Qwen2-0.5B", "accuracy"]
    assert got == pytest.approx(direct, rel=1e-12)
    assert set(per_study["study"]) == set(rows["study"])


def test_bootstrap_point_estimate_matches_the_paper_d(table: pd.DataFrame) -> None:
    """The vectorised engine (sums per participant) computes the same d as pandas does."""
    a = table[(table["condition"] == "raw") & (table["model"] == "Qwen/Qwen3-0.6B")]
    b = table[(table["condition"] == "raw") & (table["model"] == "Qwen/Qwen3-0.6B-Base")]
    arrays = bs.participant_arrays(a, b)
    for sd in ("sample", "population"):
        expected = paper.study_d(a, b, sd=sd)["d"].to_numpy()  # type: ignore[arg-type]
        np.testing.assert_allclose(bs.per_study(arrays, "d", sd=sd), expected, rtol=1e-9)  # type: ignore[arg-type]
        assert bs.estimate(arrays, "d", sd=sd) == pytest.approx(expected.mean(), rel=1e-9)  # type: ignore[arg-type]


def test_planted_structure_is_recovered() -> None:
    """On a larger synthetic table, type d recovers the planted post-training penalties."""
    design = SyntheticDesign(n_participants=20, n_responses=20, seed=11)
    models = [REGISTRY[m] for m in ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct",
                                    "Qwen/Qwen2.5-Coder-7B", "Qwen/Qwen2.5-Math-7B",
                                    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")]
    frame = results_from_frame(synthetic_responses(models, design=design)).responses
    pairs = paper.pairs_present(frame, REGISTRY, condition="raw")
    types = paper.type_d(paper.pair_table(frame, pairs, REGISTRY, condition="raw"))
    for _, row in types.iterrows():
        assert row["d"] == pytest.approx(true_pair_d(design, row["post_training"]), abs=0.03)
    # d is positive and ordered as planted: code < instruct < reasoning < math
    assert list(types["post_training"]) == ["code", "instruct", "reasoning", "math"]


def test_extra_pairs_come_first_and_use_table_names(table: pd.DataFrame) -> None:
    extra = ModelPair("allenai/Olmo-3-7B-Instruct", "Qwen/Qwen3-0.6B-Base", "instruct")
    pairs = paper.pairs_present(table, REGISTRY, condition="raw", extra=(extra,))
    assert pairs[0] == extra
    assert ModelPair("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-1.7B-Base", "vision") in pairs


def test_paired_persona_benefit_recovers_the_planted_effect() -> None:
    """Own persona vs none and vs a shuffled persona, per study in nats with paired intervals."""
    from psych201.analysis.plugin import AnalysisOptions
    from psych201.analysis.summary import summarize
    from psych201.analysis.tables import results_from_frame

    design = SyntheticDesign(n_participants=30, n_responses=20, seed=4, persona_effect=0.3)
    frame = synthetic_responses([REGISTRY["gemma-3-270m"]], design=design,
                                conditions=("raw", "no-persona", "persona", "persona-shuffled"))
    summary = summarize(results_from_frame(frame), REGISTRY, AnalysisOptions(n_boot=400))
    persona = summary.result("persona", PersonaResult)
    assert persona is not None
    paired, overall = persona.paired, persona.per_model.set_index("comparison")
    assert set(paired["comparison"]) == set(overall.index)
    # The reference is the same text without a preamble (no-persona), not the main condition.
    assert set(overall.index) == {"persona vs no-persona", "persona vs persona-shuffled"}
    for comparison, rows in paired.groupby("comparison"):
        # Each study's interval holds the planted 0.3 nats (independent noise per condition).
        covered = ((rows["ci_low"] <= 0.3) & (rows["ci_high"] >= 0.3)).mean()
        assert covered >= 0.75, (comparison, rows)
        # ...and is informative: pairing removes the participant variance, so it excludes 0.
        assert (rows["ci_low"] > 0).all() and (rows["ci_high"] - rows["ci_low"] < 0.5).all()
        pooled = overall.loc[comparison]
        assert pooled["benefit_ci_low"] < 0.3 < pooled["benefit_ci_high"]
        assert pooled["benefit_ci_high"] - pooled["benefit_ci_low"] < 0.2
        assert pooled["benefit"] == pytest.approx(0.3, abs=0.1)
        # Paired on the same responses: both sides count the same responses per study.
        assert (rows["n_responses"] > 0).all()
        assert int(pooled["n_responses"]) == int(rows["n_responses"].sum())
    # The reference is restricted to persona participants, so the counts match the persona rows.
    persona_rows = frame[frame["condition"] == "persona"]
    assert int(paired["n_responses"].iloc[0]) == int(
        (persona_rows["study"] == paired["study"].iloc[0]).sum())


def test_group_interval_averages_every_pair_of_one_post_trained_model() -> None:
    """One post-trained model paired with two bases: the group uses both pairs' replicates."""
    from psych201.analysis.plugin import AnalysisOptions
    from psych201.analysis.summary import _group_intervals, _pair_rows

    post, bases = "Qwen/Qwen2.5-7B-Instruct", ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-Coder-7B")
    design = SyntheticDesign(n_participants=12, n_responses=10, seed=3)
    frame = results_from_frame(synthetic_responses(
        [REGISTRY[m] for m in (post, *bases)], design=design)).responses
    pairs = [ModelPair(post, base, "instruct") for base in bases]
    options = AnalysisOptions(n_boot=300)
    table, replicates = _pair_rows(frame, pairs, REGISTRY, options, "raw")
    assert set(replicates) == {(post, base) for base in bases}
    assert not np.allclose(replicates[(post, bases[0])], replicates[(post, bases[1])])
    groups = pd.DataFrame({"post_training": ["instruct"]})
    got = _group_intervals(groups, table, "post_training", replicates, options).iloc[0]
    mean = (replicates[(post, bases[0])] + replicates[(post, bases[1])]) / 2
    n = int(table["n_studies"].max())
    members = table[table["d"].notna()]
    expected = bs.infer(mean, options.ci, n, n - 1, point=float(members["d"].mean()))
    low, high = expected.ci_low, expected.ci_high
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high))
