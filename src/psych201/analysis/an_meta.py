"""Model-level meta-analysis (the paper's Fig. 3 question, with its uncertainty): does the
post-training effect depend on model size, post-training type and family?

Every pair contributes its per-study d (post-trained − base, the paper's formula); the per-study
values are regressed on log10 size and the post-training type, with crossed random intercepts
for the model family and the study (statsmodels MixedLM, REML; crossed effects as variance
components of one group). Pairs of one family share a base line and the same studies are scored
by every pair, so neither pairs nor (pair, study) values are independent: the random effects
carry that. Coefficients get t intervals with between–within degrees of freedom (a term
constant within families or studies counts their levels, one varying within them the residual;
:func:`between_within_df`), not Wald z, which claims certainty from a handful of studies.
Beside the model, the pairs' own p-values are adjusted for multiplicity
(Benjamini–Hochberg, see :func:`psych201.analysis.effects.fdr_q_values`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from psych201.analysis import bootstrap as bs
from psych201.analysis.an_post_training import (
    COHEN_NOTE,
    LESS_HUMAN_LIKE,
    PostTrainingResult,
    pair_arrays,
)
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionTable
from psych201.analysis.registry import ModelPair, ModelRegistry

#: Least data the regression needs: pairs, studies, and families for a family random effect.
MIN_PAIRS, MIN_STUDIES, MIN_FAMILIES = 3, 2, 3


@dataclass(frozen=True)
class MetaFit:
    """The fitted regression: one row per fixed effect, and what the fit left out and why."""

    coefficients: pd.DataFrame  # term, estimate, ci_low, ci_high, p_value, df
    variance: pd.DataFrame  # component, variance
    formula: str
    notes: tuple[str, ...]
    n_pairs: int
    n_studies: int
    n_families: int


def pair_study_d(frame: pd.DataFrame, pairs: Sequence[ModelPair], registry: ModelRegistry, *,
                 condition: str, sd: bs.SD = "sample",
                 allow_missing: bool = False) -> pd.DataFrame:
    """One row per (pair, shared study): the study's paper d and the pair's size, type, family.

    Size is the base model's parameter count (the post-trained model's where the base has none).
    """
    by_model = {str(m): g for m, g in frame.groupby("model", observed=True)}
    rows = []
    for pair in pairs:
        arrays = pair_arrays(frame, by_model, pair, condition, allow_missing)
        base, post = registry.get(pair.base), registry.get(pair.post)
        params = next((m.params_b for m in (base, post) if m is not None and m.params_b), None)
        family = next((m.family for m in (base, post) if m is not None), "unknown")
        for study, d in zip(arrays.studies, bs.per_study(arrays, "d", sd=sd), strict=True):
            rows.append({"post": pair.post, "base": pair.base, "type": pair.post_training,
                         "family": family, "params_b": params, "study": study, "d": float(d)})
    out = pd.DataFrame(rows, columns=["post", "base", "type", "family", "params_b", "study",
                                      "d"])
    out = out[np.isfinite(out["d"])]
    out["log10_params"] = np.log10(out["params_b"].astype(float))
    return out.reset_index(drop=True)


def fit_meta(rows: pd.DataFrame, *, ci: float = 0.95) -> MetaFit | str:
    """Fit ``d ~ log10 size + type + (1 | family) + (1 | study)``; a reason string where the
    data cannot support it. Terms without variation (one size, one type, < 3 families) are
    left out with a note rather than fitted to noise."""
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    data = rows[np.isfinite(rows["d"])].copy()
    data["pair"] = data["post"] + " vs " + data["base"]
    n_pairs, n_studies = int(data["pair"].nunique()), int(data["study"].nunique())
    n_families = int(data["family"].nunique())
    if n_pairs < MIN_PAIRS or n_studies < MIN_STUDIES:
        return (f"needs at least {MIN_PAIRS} pairs and {MIN_STUDIES} shared studies "
                f"({n_pairs} pairs, {n_studies} studies here)")
    notes, terms = [], []
    sized = data["log10_params"].notna()
    if int(data.loc[sized, "log10_params"].nunique()) >= 2:
        if not sized.all():
            notes.append(f"{int((~sized).sum())} (pair, study) values without a known size "
                         "left out")
            data = data[sized]
        terms.append("log10_params")
    else:
        notes.append("one model size (or none known): no size term")
    if data["type"].nunique() >= 2:
        terms.append("C(type, Treatment('instruct'))" if "instruct" in set(data["type"])
                     else "C(type)")
    else:
        notes.append(f"one post-training type ({data['type'].iat[0]}): no type term")
    components = {"study": "0 + C(study)"}
    if n_families >= MIN_FAMILIES:
        components["family"] = "0 + C(family)"
    else:
        notes.append(f"{n_families} famil{'y' if n_families == 1 else 'ies'}: too few for a "
                     f"family random effect (needs {MIN_FAMILIES}); left out")
    formula = "d ~ " + (" + ".join(terms) if terms else "1")
    data["all"] = 1
    model = smf.mixedlm(formula, data, groups="all", re_formula="0", vc_formula=components)
    with warnings.catch_warnings():
        for category in (ConvergenceWarning, RuntimeWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        fit = model.fit(reml=True)
    dfs = between_within_df(model.exog, data[list(components)])
    coefficients = []
    for (term, estimate), df in zip(fit.fe_params.items(), dfs, strict=True):
        se = float(fit.bse_fe[term])
        half = float(sps.t.ppf(1 - (1 - ci) / 2, df)) * se
        p = float(2 * sps.t.sf(abs(estimate) / se, df)) if se > 0 else math.nan
        coefficients.append({"term": _term_label(str(term)), "estimate": float(estimate),
                             "ci_low": float(estimate) - half, "ci_high": float(estimate) + half,
                             "p_value": p, "df": df})
    names = list(components)
    variance = pd.DataFrame({"component": [*names, "residual"],
                             "variance": [*map(float, fit.vcomp), float(fit.scale)]})
    return MetaFit(pd.DataFrame(coefficients), variance, formula + "".join(
        f" + (1 | {n})" for n in names), tuple(notes), n_pairs, n_studies, n_families)


def between_within_df(exog: np.ndarray, factors: pd.DataFrame) -> list[int]:
    """Degrees of freedom of each fixed effect by the between–within rule (SAS DDFM=BW).

    A column constant within every level of a random factor is estimated from that factor's
    levels (df = levels − the fixed columns that are between for it, e.g. the intercept over
    studies); a column varying within levels is estimated from the residual (df = rows −
    levels − fixed columns). With crossed factors the smaller df is taken: the conservative side,
    and a t with those df instead of a Wald z that claims certainty from three families.
    """
    n_rows, n_fixed = exog.shape
    columns = range(n_fixed)
    candidates: list[list[int]] = [[] for _ in columns]
    within_df = n_rows - sum(int(factors[f].nunique()) for f in factors) - n_fixed
    for factor in factors:
        codes = pd.factorize(factors[factor])[0]
        levels = int(codes.max()) + 1
        between = [all(np.ptp(exog[codes == g, j]) == 0 for g in range(levels))
                   for j in columns]
        n_between = sum(between)
        for j in columns:
            candidates[j].append(levels - n_between if between[j] else within_df)
    return [max(1, min(c)) if c else max(1, n_rows - n_fixed) for c in candidates]


def _term_label(term: str) -> str:
    """``C(type, Treatment('instruct'))[T.reasoning]`` → ``type: reasoning − instruct``."""
    if term == "Intercept":
        return "intercept"
    if term == "log10_params":
        return "log10 size (per tenfold parameters)"
    if "[T." in term:
        level = term.split("[T.", 1)[1].rstrip("]")
        reference = "instruct" if "Treatment('instruct')" in term else "reference"
        return f"type: {level} − {reference}"
    return term


COEFFICIENT_COLUMNS = (
    Column("term", "term", "text"), Column("estimate", "estimate (d)"),
    Column("ci_low", "interval", "interval"), Column("p_value", "p", "p"),
    Column("df", "df", "int"))

VARIANCE_COLUMNS = (Column("component", "component", "text"), Column("variance", "variance"))

FDR_COLUMNS = (
    Column("post", "post-trained", "text"), Column("base", "base", "text"),
    Column("type", "type", "text"), Column("d", "pair d"), Column("diff_nats", "nats"),
    Column("p_value", "p", "p"), Column("q_value", "q (BH)", "p"),
    Column("discovery", "q < 0.05", "text"))


@dataclass(frozen=True)
class MetaResult:
    """The regression over pairs (or why there is none) and the rows it was fitted on."""

    fit: MetaFit | str
    rows: pd.DataFrame


class MetaAnalysis:
    """Pair d across models: size, type and family (needs the post-training section)."""

    name = "meta-analysis"
    requires: Sequence[str] = ("post-training",)
    result_type: type | None = MetaResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        if len(context.pairs) < MIN_PAIRS:
            return (f"meta-analysis over pairs needs at least {MIN_PAIRS} base/post-trained "
                    f"pairs ({len(context.pairs)} scored)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        options = context.options
        rows = pair_study_d(context.main, context.pairs, context.registry,
                            condition=context.condition, sd=options.sd,
                            allow_missing=options.allow_missing)
        fit = fit_meta(rows, ci=options.ci)
        tables: list[SectionTable] = []
        notes: list[str] = []
        if isinstance(fit, str):
            notes.append(f"No regression over pairs: it {fit}.")
        else:
            notes.extend(fit.notes)
            tables += [SectionTable("coefficients", fit.coefficients, COEFFICIENT_COLUMNS,
                                    caption=f"{fit.formula} over {fit.n_pairs} pairs, "
                                            f"{fit.n_studies} studies, {fit.n_families} "
                                            "families"),
                       SectionTable("variance", fit.variance, VARIANCE_COLUMNS,
                                    caption="Variance components (d²)")]
        post_training = context.required("post-training", PostTrainingResult)
        if post_training is not None:
            pairs = post_training.pairs
            fdr = pairs[[c for c in ("post", "base", "type", "d", "diff_nats", "p_value",
                                     "q_value") if c in pairs.columns]].copy()
            fdr["discovery"] = np.where(fdr["q_value"] < 0.05, "yes", "no")
            tables.append(SectionTable("fdr", fdr, FDR_COLUMNS,
                                       caption="Pairs with Benjamini–Hochberg q-values"))
        tables.append(SectionTable("pair_study_d", rows, caption="The regression's data"))
        text = ("Per-study pair d regressed on log10 model size and post-training type, with "
                "random intercepts for model family and study (linear mixed model, REML): a "
                "positive size slope means larger models lose more human-likeness with "
                "post-training; a type row is that type's d minus instruction tuning's. "
                "Intervals are t intervals with between–within degrees of freedom (a term "
                "constant within families or studies counts their levels). Each pair's "
                "p-value is adjusted over the pairs shown "
                f"(Benjamini–Hochberg q). {LESS_HUMAN_LIKE} {COHEN_NOTE}")
        return Section(anchor=self.name, title="Meta-analysis over pairs", text=text,
                       tables=tuple(tables), notes=tuple(notes),
                       result=MetaResult(fit, rows))


ANALYSIS = MetaAnalysis()
