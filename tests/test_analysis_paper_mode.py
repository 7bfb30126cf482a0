"""`compare --paper --json`: every figure's table against an independent plain-pandas computation.

The score table has known structure (``analysis/synthetic.py``) plus the irregularities that make
the paper's figures differ from psych201's defaults: models scored on different studies, a pair
with a single shared study, a study without categories, the two studies the persona figure
excludes, a Psych-101 study (left out of the Centaur comparison), and a model named by an alias.
Each expected value is computed here from PROTOCOL §6 with plain pandas, not with psych201.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from psych201.analysis.an_domains import DomainsResult
from psych201.analysis.an_persona import PersonaResult
from psych201.analysis.an_post_training import PostTrainingResult
from psych201.analysis.registry import load_registry
from psych201.analysis.synthetic import SyntheticDesign, synthetic_responses
from psych201.cli import app

REGISTRY = load_registry()
CATEGORIES = Path(__file__).parents[1] / "src" / "psych201" / "analysis" / "categories.csv"
TOL = 1e-10
Paper = dict[str, list[dict[str, Any]]]

STUDIES = {
    "alsobay2025publicGoodsGame": None,  # Economic Games
    "busch2024_stroop": 3,  # Cognitive Control only: dropped from the heatmap
    "dezfouli2019": 2,  # Reinforcement Learning
    "frey2017lotteries": 2,  # Risky Choice
    "guenther2020LDT": 2,  # Psycholinguistics
    "xu2023augmenting": 2,  # Reasoning
    "evangelidis2023upscaling": None,  # excluded from the persona figure
    "gunadi2021deferral": 2,  # excluded from the persona figure; Intertemporal Choice only
    "badham2017deficits": 2,  # Psych-101: not in the Centaur comparison
    "zz2026uncategorised": 2,  # not in categories.csv
}
MODELS = (
    "Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-VL-2B-Instruct",
    "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "Qwen/Qwen2-0.5B", "Qwen/Qwen2-0.5B-Instruct",
    "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-Coder-0.5B",
    "unsloth/Meta-Llama-3.1-70B-bnb-4bit", "marcelbinz/Llama-3.1-Centaur-70B-adapter",
)
PERSONA = ("Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B",
           "meta-llama/Llama-3.1-8B-Instruct")
#: Registry id → the name the table uses (an alias: the JSON must report the registry id).
ALIAS = {"Qwen/Qwen3-0.6B": "Qwen-Qwen3-0.6B.pth"}
#: Studies each model lacks (the paper averages each model over its own studies).
MISSING = {
    "Qwen/Qwen3-0.6B": ("xu2023augmenting",),
    "Qwen/Qwen2.5-0.5B-Instruct": tuple(s for s in STUDIES if s != "dezfouli2019"),
    "Qwen/Qwen2-0.5B": ("frey2017lotteries", "guenther2020LDT"),
}


def _table() -> pd.DataFrame:
    design = SyntheticDesign(studies=STUDIES, n_participants=5, n_responses=6, seed=11,
                             persona_effect=0.05)
    models = [REGISTRY[m] for m in MODELS]
    main = synthetic_responses(models, design=design,
                               conditions=("raw", "discrete", "chat-template"))
    persona = synthetic_responses([REGISTRY[m] for m in PERSONA], design=design,
                                  conditions=("persona",))
    frame = pd.concat([main, persona], ignore_index=True)
    drop = np.zeros(len(frame), dtype=bool)
    for model, studies in MISSING.items():
        drop |= (frame["model"] == model).to_numpy() & frame["study"].isin(studies).to_numpy()
    frame = frame[~drop].reset_index(drop=True)
    frame["model"] = frame["model"].replace(ALIAS)
    return frame


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    frame = _table()
    frame["model"] = frame["model"].replace({v: k for k, v in ALIAS.items()})
    return frame


@pytest.fixture(scope="module")
def paper_json(tmp_path_factory: pytest.TempPathFactory) -> Paper:
    folder = tmp_path_factory.mktemp("paper")
    parquet = folder / "scores.parquet"
    _table().to_parquet(parquet)  # a plain Parquet table in the response schema
    out = folder / "paper.json"
    result = CliRunner().invoke(app, ["compare", str(parquet), "--paper", "--json", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    data: Paper = json.loads(out.read_text())
    return data


# -- independent reference computations (plain pandas, PROTOCOL §6) ------------------------------
def _rows(frame: pd.DataFrame, model: str, condition: str = "raw",
          value: str = "nll") -> pd.DataFrame:
    rows = frame[(frame["model"] == model) & (frame["condition"] == condition)]
    return rows[rows[value].notna()]


def _sd(x: pd.Series, kind: str) -> float:
    v = x.to_numpy(float)
    if kind == "population":
        return float(np.sqrt(np.mean(v ** 2) - np.mean(v) ** 2))
    return float(np.std(v, ddof=1))


def _d_per_study(a: pd.DataFrame, b: pd.DataFrame, kind: str, value: str = "nll") -> pd.Series:
    out = {}
    for study in sorted(set(a["study"]) & set(b["study"])):
        xa = a.loc[a["study"] == study, value].astype(float)
        xb = b.loc[b["study"] == study, value].astype(float)
        pooled = math.sqrt((_sd(xa, kind) ** 2 + _sd(xb, kind) ** 2) / 2)
        out[study] = (xa.mean() - xb.mean()) / pooled
    return pd.Series(out, dtype=float)


def _by(records: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in records}


def _registry_pairs(models: set[str]) -> list[tuple[str, str, str]]:
    return [(p.post, p.base, p.post_training) for p in REGISTRY.pairs()
            if p.post in models and p.base in models and p.post_training != "human"]


# -- the tests ------------------------------------------------------------------------------------
def test_fig2_points_average_each_model_over_its_own_studies(
        table: pd.DataFrame, paper_json: Paper) -> None:
    got = _by(paper_json["fig2"], "model")
    assert set(got) == {(m,) for m in MODELS}  # registry ids, also for the aliased model
    for model in MODELS:
        rows = _rows(table, model)
        expected = rows.groupby("study")["nll"].mean().mean()
        assert abs(float(got[(model,)]["score"]) - expected) < TOL
        assert got[(model,)]["n_studies"] == rows["study"].nunique()
    assert got[("Qwen/Qwen3-0.6B",)]["n_studies"] == len(STUDIES) - 1


def test_pair_d_needs_two_shared_studies_and_type_d_averages_pairs(
        table: pd.DataFrame, paper_json: Paper) -> None:
    expected = {}
    for post, base, kind in _registry_pairs(set(MODELS)):
        per = _d_per_study(_rows(table, post), _rows(table, base), "sample")
        if len(per) >= 2:
            expected[(post, base)] = (per.mean(), len(per), kind)
    got = _by(paper_json["pairs"], "post", "base")
    assert set(got) == set(expected)
    assert ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B") not in got  # one shared study
    assert ("marcelbinz/Llama-3.1-Centaur-70B-adapter",
            "unsloth/Meta-Llama-3.1-70B-bnb-4bit") not in got  # Centaur has its own figure
    for key, (d, n, _) in expected.items():
        assert abs(float(got[key]["d"]) - d) < TOL
        assert got[key]["n_studies"] == n
    types = pd.DataFrame([{"type": k, "d": d} for d, _, k in expected.values()])
    want = types.groupby("type")["d"].mean()
    got_types = _by(paper_json["type_d"], "post_training")
    assert set(got_types) == {(t,) for t in want.index}
    for kind, d in want.items():
        assert abs(float(got_types[(kind,)]["d"]) - d) < TOL


def test_generations_keep_pairs_with_one_shared_study(
        table: pd.DataFrame, paper_json: Paper) -> None:
    expected: dict[str, list[float]] = {}
    for post, base, _ in _registry_pairs(set(MODELS)):
        info = REGISTRY[post]
        if info.family in ("Qwen2", "Qwen2.5", "Qwen3", "Qwen3.5") and info.line == "main":
            per = _d_per_study(_rows(table, post), _rows(table, base), "sample")
            if len(per) >= 1:
                expected.setdefault(info.family, []).append(float(per.mean()))
    assert len(expected["Qwen2.5"]) == 1  # the single-study pair counts here
    got = _by(paper_json["generations"], "family")
    assert set(got) == {(f,) for f in expected}
    for family, values in expected.items():
        assert abs(float(got[(family,)]["d"]) - float(np.mean(values))) < TOL
        assert got[(family,)]["n_pairs"] == len(values)


def test_domains_use_the_authors_pairs_population_sd_and_seven_domains(
        table: pd.DataFrame, paper_json: Paper) -> None:
    cats = pd.read_csv(CATEGORIES).set_index("experiment").drop(columns="dataset")
    cats = cats.drop(columns=["Intertemporal Choice", "Moral Judgment", "Psychophysics",
                              "Cognitive Control"])
    authors = [("Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B-Base"),
               ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-1.7B-Base"),
               ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
               ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "meta-llama/Llama-3.1-8B")]
    expected = {}
    for post, base in authors:
        per = _d_per_study(_rows(table, post), _rows(table, base), "population")
        joined = cats.join(per.rename("d"), how="inner")
        for domain in cats.columns:
            cell = joined.loc[joined[domain] == 1, "d"]
            if len(cell):
                expected[(post, domain)] = cell.mean()
    got = _by(paper_json["domains"], "post", "domain")
    assert set(got) == set(expected)  # Qwen2/2.5 pairs are not among the authors' 25
    for key, d in expected.items():
        assert abs(float(got[key]["d"]) - d) < TOL
    means = pd.Series(expected).groupby(level=1).mean()
    got_means = _by(paper_json["domain_means"], "domain")
    for domain, d in means.items():
        assert abs(float(got_means[(domain,)]["d"]) - d) < TOL
    assert "Cognitive Control" not in {k[1] for k in got}


def test_persona_reference_is_every_test_participant_population_sd(
        table: pd.DataFrame, paper_json: Paper) -> None:
    excluded = {"evangelidis2023upscaling", "gunadi2021deferral"}
    got = _by(paper_json["persona_per_study"], "model", "study")
    got_model = _by(paper_json["persona"], "model")
    for model in PERSONA:
        ref = _rows(table, model)
        per = _rows(table, model, "persona")
        d = _d_per_study(ref[~ref["study"].isin(excluded)], per[~per["study"].isin(excluded)],
                         "population")
        assert len(per.groupby(["study", "participant"])) < len(ref.groupby(
            ["study", "participant"]))  # the reference has participants without persona
        for study, value in d.items():
            assert abs(float(got[(model, study)]["d"]) - value) < TOL
        assert {s for (m, s) in got if m == model} == set(d.index)
        assert abs(float(got_model[(model,)]["d"]) - d.mean()) < TOL
        sem = d.std(ddof=1) / math.sqrt(len(d))
        assert abs(float(got_model[(model,)]["sem"]) - sem) < TOL


def test_accuracy_with_pair_d_and_type_d_on_hits(
        table: pd.DataFrame, paper_json: Paper) -> None:
    disc = table[table["condition"] == "discrete"]
    got = _by(paper_json["accuracy"], "model")
    for model in MODELS:
        rows = _rows(disc, model, "discrete", "top1_correct")
        expected = rows.assign(h=rows["top1_correct"].astype(float)).groupby("study")["h"].mean()
        assert abs(float(got[(model,)]["accuracy"]) - expected.mean()) < TOL
    pairs = {}
    for post, base, kind in _registry_pairs(set(MODELS)):
        a = _rows(disc, post, "discrete", "top1_correct")
        b = _rows(disc, base, "discrete", "top1_correct")
        a, b = a.assign(h=a["top1_correct"].astype(float)), b.assign(h=b["top1_correct"].astype(
            float))
        per = _d_per_study(a, b, "sample", value="h")
        if len(per) >= 2:
            pairs[(post, base)] = (per.mean(), kind)
    got_pairs = _by(paper_json["accuracy_pairs"], "post", "base")
    assert set(got_pairs) == set(pairs)
    for key, (d, _) in pairs.items():
        assert abs(float(got_pairs[key]["d"]) - d) < TOL
    types = pd.DataFrame([{"t": k, "d": d} for d, k in pairs.values()]).groupby("t")["d"].mean()
    got_types = _by(paper_json["accuracy_type_d"], "post_training")
    for kind, d in types.items():
        assert abs(float(got_types[(kind,)]["d"]) - d) < TOL


def test_chat_template_scores_each_model_over_its_own_studies(
        table: pd.DataFrame, paper_json: Paper) -> None:
    got = _by(paper_json["chat_template"], "model")
    templated = set(table.loc[table["condition"] == "chat-template", "model"])
    assert set(got) == {(m,) for m in templated}
    for model in templated:
        rows = _rows(table, model, "chat-template")
        expected = rows.groupby("study")["nll"].mean().mean()
        assert abs(float(got[(model,)]["template"]) - expected) < TOL
        raw = _rows(table, model).groupby("study")["nll"].mean().mean()
        assert abs(float(got[(model,)]["no_template"]) - raw) < TOL


def test_centaur_against_its_4bit_base_on_non_psych101_studies(
        table: pd.DataFrame, paper_json: Paper) -> None:
    base = _rows(table, "unsloth/Meta-Llama-3.1-70B-bnb-4bit")
    centaur = _rows(table, "marcelbinz/Llama-3.1-Centaur-70B-adapter")
    psych101 = set(pd.read_csv(CATEGORIES).query("dataset == 'Psych-101'")["experiment"])
    assert "badham2017deficits" in psych101
    per = {}
    for study in sorted(set(base["study"]) - psych101):
        b = base.loc[base["study"] == study, "nll"]
        c = centaur.loc[centaur["study"] == study, "nll"]
        sd_b, sd_c = b.sem() * math.sqrt(len(b)), c.sem() * math.sqrt(len(c))  # sample SD
        per[study] = (b.mean() - c.mean()) / math.sqrt((sd_b ** 2 + sd_c ** 2) / 2)
    d = pd.Series(per)
    got = _by(paper_json["centaur_per_study"], "study")
    assert set(got) == {(s,) for s in d.index}
    for study, value in d.items():
        assert abs(float(got[(study,)]["d"]) - value) < TOL
    (summary,) = paper_json["centaur"]
    assert abs(float(summary["d"]) - d.mean()) < TOL
    assert abs(float(summary["sem"]) - d.sem()) < TOL
    assert float(summary["d"]) > 0  # the human fine-tuned model fits


def test_share_of_positive_pairs_respects_that_pairs_share_their_data() -> None:
    """Many pairs, nearly all positive, but on two studies only: little evidence beyond them.

    A sign test over pairs (the former statistic) calls that significant (p < 0.01);
    the coupled bootstrap over studies and participants does not, because the pairs all score the
    same two studies' responses (and two studies are too few for any interval on the share).
    """
    from scipy import stats as sps

    from psych201.analysis.plugin import AnalysisOptions
    from psych201.analysis.summary import PAIR_SHARE, summarize
    from psych201.analysis.tables import results_from_frame

    design = SyntheticDesign(studies={"dezfouli2019": 2, "frey2017lotteries": 2},
                             n_participants=6, n_responses=10, seed=3)
    models = [m for m in REGISTRY if m.family == "Qwen3" and m.params_b is not None]
    frame = synthetic_responses(models, design=design, conditions=("raw",))
    summary = summarize(results_from_frame(frame), REGISTRY,
                        AnalysisOptions(n_boot=400, detail_pairs=0))
    post_training = summary.result("post-training", PostTrainingResult)
    assert post_training is not None
    effect = post_training.sign_test
    assert effect is not None and effect.name == PAIR_SHARE
    d = post_training.pairs["d"]
    assert effect.estimate == pytest.approx(float((d > 0).mean()))
    positive = int((d > 0).sum())
    assert sps.binomtest(positive, len(d), 0.5).pvalue < 0.01  # what the sign test reported
    # two studies cannot carry an interval on a share: none is claimed, and the method says why
    assert not effect.p_value < 0.05
    assert "cannot reach" in effect.method


def test_report_paper_mode_on_a_parquet_table(tmp_path: Path) -> None:
    """`report --paper` reads a plain Parquet table, draws paper figures, lists paper tables."""
    parquet = tmp_path / "scores.parquet"
    frame = _table()
    keep = frame["condition"].isin(["raw", "persona"]) & frame["model"].isin(
        [ALIAS.get(m, m) for m in PERSONA])
    frame[keep].to_parquet(parquet)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(parquet), "-o", str(out), "--paper",
                                      "--n-boot", "100", "--detail", "0", "--allow-missing"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "Paper mode: domains" in page and "Paper mode: persona" in page
    assert "Paper mode (--paper): drawn as the authors" in page  # next to each figure


def test_default_figures_say_where_they_differ_from_the_paper(table: pd.DataFrame) -> None:
    from psych201.analysis.paper_mode import figure_note, paper_tables
    from psych201.analysis.paper_summary import paper_summary
    from psych201.analysis.plugin import AnalysisOptions
    from psych201.analysis.summary import summarize
    from psych201.analysis.tables import results_from_frame

    for name in ("fig2_size", "fig3a_generations", "fig4_domains", "fig5_persona",
                 "fig_accuracy", "fig_chat_template"):
        assert figure_note(name).startswith("Differs from the paper:")
    assert figure_note("leaderboard") == ""
    rows = table[table["condition"].isin(["raw", "persona"])]
    results = results_from_frame(rows)
    summary = summarize(results, REGISTRY, AnalysisOptions(n_boot=100, detail_pairs=0,
                                                           allow_missing=True))
    tables = paper_tables(results.responses, REGISTRY)
    drawn = paper_summary(summary, results.responses, REGISTRY, tables)
    ours_result, theirs_result = (s.result("domains", DomainsResult) for s in (summary, drawn))
    assert ours_result is not None and theirs_result is not None
    ours, theirs = ours_result.matrix, theirs_result.matrix
    # the default heatmap shows every pair; the paper's only the authors' 25 (here 4)
    assert len(ours) - 1 > len(theirs) - 1 == 4
    assert abs(theirs.loc["Average"].dropna().sort_index()
               - tables.tables["domain_means"].set_index("domain")["d"].sort_index()).max() < TOL
    persona = drawn.result("persona", PersonaResult)
    assert persona is not None
    assert set(persona.per_study["model"]) == set(PERSONA)


# -- chat-template control in paper mode (prompts/chat.py) ----------------------------------------
class _Llama3Style:
    """A stand-in whose template trims every content, as Llama 3.x templates do."""

    chat_template = (
        "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{{ m.content | trim }}<|eot_id|>{% endfor %}"
    )
    bos_token = None
    bos_token_id = None
    name_or_path = "llama3-style stand-in"

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        import jinja2

        return jinja2.Environment().from_string(self.chat_template).render(messages=messages)


def test_chat_template_paper_mode_scores_trimmed_and_merges_back_to_back() -> None:
    from psych201.data.markers import parse_responses
    from psych201.data.records import Session
    from psych201.prompts.conditions import make_condition

    text = "Rate it. <<-3>> Now two keys. <<A>><<B>> Last. << 7 >>"
    session = Session("s", "e", "1", 1, text, parse_responses(text))
    tokenizer = _Llama3Style()
    (default,) = make_condition("chat-template", tokenizer=tokenizer).render_study([session])
    (paper,) = make_condition("chat-template", tokenizer=tokenizer,
                              paper=True).render_study([session])
    # default: the padded responses (" -3" after the clean-up is only in paper mode; " 7 ") are
    # not what the participant wrote once trimmed, so they are dropped
    assert [(s.index, s.text) for s in default.spans] == [(0, "-3"), (1, "A"), (2, "B")]
    # paper: "<< -3>>" (clean-up) and "<< 7 >>" are scored trimmed; "A" and "B" form one turn
    assert [(s.index, s.text) for s in paper.spans] == [(0, "-3"), (1, "AB"), (3, "7")]
    for span in paper.spans:
        assert paper.text[span.start:span.end] == span.text
        assert paper.text[:span.start].endswith("assistant<|end_header_id|>\n\n")
        assert paper.text[span.end:].startswith("<|eot_id|>")


def test_persona_paper_mode_counts_a_blank_metadata_value_as_present() -> None:
    from psych201.data.fields import HARMONISED_FIELDS, NA
    from psych201.data.markers import parse_responses
    from psych201.data.records import Session
    from psych201.prompts.conditions import make_condition

    text = "Pick one. <<A>>"
    harmonised = {name: NA for name in HARMONISED_FIELDS} | {"age": ""}
    session = Session("s", "e", "1", 1, text, parse_responses(text), harmonised=harmonised)
    assert not make_condition("persona").eligible(session)  # psych201: blank is missing
    paper = make_condition("persona", paper=True)
    assert paper.eligible(session)
    (prompt,) = paper.render_study([session])
    assert prompt.text.startswith("Interviewer: What is your age?\nInterviewee: \n\nPick one.")
    assert [s.text for s in prompt.spans] == ["A"]
