"""The paper's statistics, computed exactly as its analysis scripts do.

Per study ``d_s = (mean_post − mean_base) / sqrt((sd_post² + sd_base²) / 2)`` over response-level
NLLs; pair d = mean of d_s over the studies both models have; type d = mean of pair d over the
pairs of a post-training type. The authors' scripts use the sample SD (pandas ``.std()``) for the
pair, type and generation analyses and the population SD (``sqrt(E[x²] − mean²)``) for the domain
heatmap and the persona benefit; both are selectable everywhere (``sd="sample"|"population"``)
and each function defaults to the convention of the script it reproduces.

These numbers ignore that both models score the same responses; :mod:`psych201.analysis.effects`
reports the paired, interval-carrying versions beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from psych201.analysis.aggregate import model_scores
from psych201.analysis.bootstrap import SD, ddof_of
from psych201.analysis.domains import PAPER_DOMAINS
from psych201.analysis.registry import TYPE_LABELS, ModelPair, ModelRegistry
from psych201.analysis.tables import PARTICIPANT_KEY, select

#: Qwen generations of the paper's Fig. 3a, oldest first.
QWEN_GENERATIONS: tuple[str, ...] = ("Qwen2", "Qwen2.5", "Qwen3", "Qwen3.5")


def study_stats(rows: pd.DataFrame, *, sd: SD = "sample", value: str = "nll") -> pd.DataFrame:
    """Per study: mean, SD (chosen convention) and count of ``value`` over all responses."""
    grouped = rows.groupby("study", observed=True)[value]
    out = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=ddof_of(sd)),
                        "n": grouped.size()})
    return out


def study_d(a_rows: pd.DataFrame, b_rows: pd.DataFrame, *, sd: SD = "sample",
            value: str = "nll") -> pd.DataFrame:
    """Per-study Cohen's d of ``a`` minus ``b`` over the studies both have (paper formula).

    Columns: ``mean_a``, ``mean_b``, ``sd_a``, ``sd_b``, ``n_a``, ``n_b``, ``d``; indexed by study.
    """
    sa = study_stats(a_rows, sd=sd, value=value)
    sb = study_stats(b_rows, sd=sd, value=value)
    common = sa.index.intersection(sb.index)
    sa, sb = sa.loc[common], sb.loc[common]
    pooled = np.sqrt((sa["sd"] ** 2 + sb["sd"] ** 2) / 2)
    return pd.DataFrame(
        {
            "mean_a": sa["mean"], "mean_b": sb["mean"], "sd_a": sa["sd"], "sd_b": sb["sd"],
            "n_a": sa["n"], "n_b": sb["n"], "d": (sa["mean"] - sb["mean"]) / pooled,
        }
    ).sort_index()


@dataclass(frozen=True, eq=False)
class PairD:
    """The paper's pair d with the per-study values it averages."""

    post: str
    base: str
    post_training: str
    d: float
    n_studies: int
    per_study: pd.DataFrame


def pair_d(frame: pd.DataFrame, post: str, base: str, *, condition: str, sd: SD = "sample",
           min_studies: int = 2, post_training: str = "") -> PairD:
    """Mean over shared studies of d_s(post − base); NaN with fewer than ``min_studies``."""
    per = study_d(select(frame, model=post, condition=condition),
                  select(frame, model=base, condition=condition), sd=sd)
    d = float(per["d"].mean()) if len(per) >= max(1, min_studies) else math.nan
    return PairD(post, base, post_training, d, len(per), per)


def pairs_present(frame: pd.DataFrame, registry: ModelRegistry, *, condition: str,
                  extra: Sequence[ModelPair] = ()) -> list[ModelPair]:
    """``extra`` pairs, then registry pairs, whose two models both have rows under ``condition``.

    Pairs are returned with the model names *as the table spells them*.
    """
    present = set(select(frame, condition=condition)["model"].unique())
    by_id: dict[str, str] = {}
    for name in present:
        info = registry.get(name)
        if info is not None:
            by_id[info.id] = name
    out: list[ModelPair] = [p for p in extra if p.post in present and p.base in present]
    for pair in registry.pairs():
        if pair.post in by_id and pair.base in by_id:
            found = ModelPair(by_id[pair.post], by_id[pair.base], pair.post_training)
            if not any(p.post == found.post and p.base == found.base for p in out):
                out.append(found)
    return out


def pair_table(frame: pd.DataFrame, pairs: Sequence[ModelPair], registry: ModelRegistry, *,
               condition: str, sd: SD = "sample", min_studies: int = 2) -> pd.DataFrame:
    """One row per pair: post, base, type, family, size, pair d and number of studies."""
    rows = []
    for pair in pairs:
        result = pair_d(frame, pair.post, pair.base, condition=condition, sd=sd,
                        min_studies=min_studies, post_training=pair.post_training)
        info = registry.get(pair.post)
        rows.append(
            {
                "post": pair.post,
                "base": pair.base,
                "post_training": pair.post_training,
                "type": TYPE_LABELS.get(pair.post_training, pair.post_training),
                "family": info.family if info else None,
                "params_b": info.params_b if info else math.nan,
                "d": result.d,
                "n_studies": result.n_studies,
            }
        )
    columns = ["post", "base", "post_training", "type", "family", "params_b", "d", "n_studies"]
    return pd.DataFrame(rows, columns=columns)


def type_d(pairs: pd.DataFrame) -> pd.DataFrame:
    """Mean pair d per post-training type (pairs with an undefined d are left out)."""
    valid = pairs[pairs["d"].notna()]
    out = valid.groupby(["post_training", "type"], as_index=False).agg(
        d=("d", "mean"), n_pairs=("d", "size")
    )
    return out.sort_values("d").reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class GenerationTrend:
    """Fig. 3a: base NLL by size per generation, and the pair d of each generation's pairs."""

    base_scores: pd.DataFrame  # family, model, params_b, score
    pair_d: pd.DataFrame  # family, post, base, params_b, d
    mean_d: pd.DataFrame  # family, d, n_pairs


def generation_trend(frame: pd.DataFrame, registry: ModelRegistry, *, condition: str,
                     families: Sequence[str] = QWEN_GENERATIONS, sd: SD = "sample",
                     min_studies: int = 1) -> GenerationTrend:
    """Base-model NLL vs size and pair d of each family's main post-trained line, by generation.

    Like the paper's script: bases of each family, and pairs whose post-trained model is the
    family's standard release (``line: main`` — Instruct / Chat / hybrid), not Coder, Math, VL or
    distilled models; a pair counts with ≥ 1 shared study.
    """
    sub = select(frame, condition=condition)
    scores = model_scores(sub)
    base_rows, pair_rows = [], []
    for _, row in scores.iterrows():
        info = registry.get(row["model"])
        if info is not None and info.family in families and info.is_base:
            base_rows.append({"family": info.family, "model": row["model"],
                              "params_b": info.params_b, "score": row["score"]})
    for pair in pairs_present(frame, registry, condition=condition):
        info = registry[pair.post]
        if info.family in families and info.line == "main":
            result = pair_d(frame, pair.post, pair.base, condition=condition, sd=sd,
                            min_studies=min_studies)
            pair_rows.append({"family": info.family, "post": pair.post, "base": pair.base,
                              "params_b": info.params_b, "d": result.d})
    order = {f: i for i, f in enumerate(families)}
    base_df = pd.DataFrame(base_rows, columns=["family", "model", "params_b", "score"])
    pair_df = pd.DataFrame(pair_rows, columns=["family", "post", "base", "params_b", "d"])
    base_df = _in_order(base_df, order, "params_b")
    pair_df = _in_order(pair_df, order, "params_b")
    mean = pair_df.dropna(subset=["d"]).groupby("family", as_index=False).agg(
        d=("d", "mean"), n_pairs=("d", "size"))
    mean = _in_order(mean, order)
    return GenerationTrend(base_df, pair_df, mean)


def _in_order(table: pd.DataFrame, order: dict[str, int], *then: str) -> pd.DataFrame:
    """Rows sorted by family in the given order (then by ``then`` columns)."""
    ranked = table.assign(_order=table["family"].map(order))
    return ranked.sort_values(["_order", *then], kind="stable").drop(columns="_order").reset_index(
        drop=True)


def size_scaling(frame: pd.DataFrame, registry: ModelRegistry, *, condition: str,
                 value: str = "nll") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 2 data and per-line scaling fits.

    Returns (points, fits): ``points`` has model, family, line, params_b and score per model of
    known size; ``fits`` has, per family and line with ≥ 2 sizes, the least-squares slope of score
    on log10(parameters) — change in NLL per tenfold increase in size — and its n.
    """
    sub = select(frame, condition=condition)
    if value != "nll":
        sub = sub[sub[value].notna()]
    scores = model_scores(sub, value=value)
    rows = []
    for _, row in scores.iterrows():
        info = registry.get(row["model"])
        if info is None or info.params_b is None:
            continue
        rows.append({"model": row["model"], "display": info.name, "family": info.family,
                     "line": info.line_label, "type": info.type_label, "is_base": info.is_base,
                     "params_b": info.params_b, "score": row["score"]})
    points = pd.DataFrame(rows, columns=["model", "display", "family", "line", "type", "is_base",
                                         "params_b", "score"])
    fits = []
    for (family, line), group in points.groupby(["family", "line"], sort=False):
        sizes = group.groupby("params_b")["score"].mean()
        if len(sizes) >= 2:
            slope, intercept = np.polyfit(np.log10(sizes.index.to_numpy(float)),
                                          sizes.to_numpy(float), 1)
            fits.append({"family": family, "line": line, "slope_per_decade": float(slope),
                         "intercept": float(intercept), "n_sizes": len(sizes)})
    fit_df = pd.DataFrame(fits, columns=["family", "line", "slope_per_decade", "intercept",
                                         "n_sizes"])
    return points, fit_df


def domain_d(frame: pd.DataFrame, pairs: Sequence[ModelPair], categories: pd.DataFrame, *,
             condition: str, sd: SD = "population",
             domains: Sequence[str] | None = PAPER_DOMAINS) -> pd.DataFrame:
    """Pair × domain table of mean d_s over each domain's studies, plus an ``Average`` row.

    As the authors' Fig. 4 script: population SD by default, a study counts in every category it
    is marked with, studies without categories are dropped, the average row is the mean over
    pairs ignoring missing cells. Columns are sorted by that average, rows by their own mean.
    """
    cols = list(categories.columns) if domains is None else [
        d for d in domains if d in categories.columns]
    rows: dict[str, dict[str, float]] = {}
    for pair in pairs:
        per = study_d(select(frame, model=pair.post, condition=condition),
                      select(frame, model=pair.base, condition=condition), sd=sd)
        per = per[per.index.isin(categories.index)]
        if per.empty:
            continue
        member = categories.loc[per.index, cols]
        rows[pair.post] = {c: float(per["d"][member[c].to_numpy()].mean())
                           if member[c].any() else math.nan for c in cols}
    if not rows:
        return pd.DataFrame(columns=cols)
    matrix = pd.DataFrame.from_dict(rows, orient="index")[cols]
    matrix = matrix.dropna(axis=1, how="all")  # a domain none of the scored studies belongs to
    with np.errstate(all="ignore"):
        average = matrix.mean(axis=0, skipna=True)
        col_order = average.sort_values(kind="stable").index
        row_order = matrix.mean(axis=1, skipna=True).sort_values(kind="stable").index
    matrix = matrix.loc[row_order, col_order]
    matrix.loc["Average"] = average[col_order]
    return matrix


def persona_benefit(frame: pd.DataFrame, model: str, *, persona_condition: str,
                    reference_condition: str, same_participants: bool = True,
                    sd: SD = "population") -> pd.DataFrame:
    """Per-study persona benefit ``d_s = (mean_reference − mean_persona) / pooled SD``.

    Positive = the persona helps. ``same_participants=False`` reproduces the paper: the
    reference includes every participant, also those without metadata (who never get a
    persona). The default compares the same participants' responses on both sides.
    """
    persona = select(frame, model=model, condition=persona_condition)
    reference = select(frame, model=model, condition=reference_condition)
    if same_participants:
        keys = persona[["study", *PARTICIPANT_KEY]].drop_duplicates()
        reference = reference.merge(keys, on=["study", *PARTICIPANT_KEY])
    per = study_d(reference, persona, sd=sd)
    return per.rename(columns={"mean_a": "mean_reference", "mean_b": "mean_persona",
                               "sd_a": "sd_reference", "sd_b": "sd_persona",
                               "n_a": "n_reference", "n_b": "n_persona"})


def accuracy(frame: pd.DataFrame, *, condition: str,
             column: str = "top1_correct") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-1 accuracy per study and model (mean per study, then over studies).

    ``column="top1_correct"`` (the paper): the arg-max over the whole vocabulary is the human's
    response; only single-token responses count. ``column="offered_correct"``: the response is
    the most probable of the options the transcript offered; only responses whose options are
    known (and one token each) count, and ``chance`` is the mean of ``1 / n_offered``, the hit
    rate of guessing among them. Returns (per_study, per_model) tables.
    """
    sub = select(frame, condition=condition)
    sub = sub[sub[column].notna()]
    hits = sub.assign(hit=sub[column].astype(float))
    aggs: dict[str, tuple[str, str]] = {"accuracy": ("hit", "mean"), "n_responses": ("hit", "size")}
    if column == "offered_correct" and "n_offered" in hits.columns:
        hits = hits.assign(guess=1.0 / pd.to_numeric(hits["n_offered"], errors="coerce"))
        aggs["chance"] = ("guess", "mean")
    per_study = hits.groupby(["model", "study"], as_index=False, observed=True).agg(**aggs)
    model_aggs: dict[str, tuple[str, str]] = {
        "accuracy": ("accuracy", "mean"), "n_studies": ("study", "size"),
        "n_responses": ("n_responses", "sum")}
    if "chance" in per_study.columns:
        model_aggs["chance"] = ("chance", "mean")
    per_model = per_study.groupby("model", as_index=False, observed=True).agg(**model_aggs)
    return per_study, per_model


def chat_template_control(frame: pd.DataFrame, *, template_condition: str,
                          reference_condition: str) -> pd.DataFrame:
    """Per model scored both ways: study-weighted NLL without and with the chat template."""
    with_t = select(frame, condition=template_condition)
    models = sorted(with_t["model"].unique())
    rows = []
    for model in models:
        t_rows = select(with_t, model=model)
        r_rows = select(frame, model=model, condition=reference_condition,
                        studies=t_rows["study"].unique())
        if r_rows.empty:
            continue
        studies = sorted(set(t_rows["study"]) & set(r_rows["study"]))
        t_rows = t_rows[t_rows["study"].isin(studies)]
        t_score = float(t_rows.groupby("study", observed=True)["nll"].mean().mean())
        r_score = float(r_rows.groupby("study", observed=True)["nll"].mean().mean())
        rows.append({"model": model, "no_template": r_score, "template": t_score,
                     "n_studies": len(studies)})
    return pd.DataFrame(rows, columns=["model", "no_template", "template", "n_studies"])
