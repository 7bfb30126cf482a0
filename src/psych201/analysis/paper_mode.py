"""Paper mode: every figure's numbers exactly as the authors' plotting scripts compute them.

The published figures (the authors' plotting scripts) differ in places from psych201's defaults;
this module follows them point by point and returns one plain table per figure
(``compare --paper --json``):

* ``fig2`` — a model's point is the mean of its study means over *its own* studies;
* ``pairs`` / ``type_d`` — per study ``d = (mean_post − mean_base) / sqrt((sd_post² + sd_base²)/2)``
  over each model's own pooled responses (no pairing), sample SD; a pair needs ≥ 2 shared
  studies; type d = mean pair d per post-training type (Centaur is not a post-training type);
* ``generations`` — Qwen2 → 3.5 main-line pairs, kept with ≥ 1 shared study;
* ``domains`` — the authors' 25 pairs only, studies inner-joined with ``categories.csv``, four
  categories dropped, population SD;
* ``persona`` — the 11 + 11 models, two studies excluded, the no-persona reference is the model's
  ordinary score table (all test participants), population SD;
* ``accuracy`` — accuracy per model, and pair d / type d computed on the hits;
* ``chat_template`` — each model's score under its chat template (its own studies);
* ``centaur`` — ``d = (mean_base − mean_Centaur) / pooled SD`` (sample SD) on non-Psych-101 studies;
  mean and SEM of the per-study d.

Model names are reported as registry ids. Every table is built from per-(model, study) means and
SDs, so it is cheap on the full 101-model table.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from psych201.analysis.conditions import Roles, conditions_with_role, main_condition
from psych201.analysis.domains import load_categories, psych101_studies
from psych201.analysis.paper import QWEN_GENERATIONS
from psych201.analysis.registry import TYPE_LABELS, ModelRegistry
from psych201.prompts.records import ConditionRole

#: Categories the authors' Fig. 4 script drops.
DROPPED_DOMAINS: tuple[str, ...] = ("Intertemporal Choice", "Moral Judgment", "Psychophysics",
                                    "Cognitive Control")


def _qwen3_domain_pairs() -> list[tuple[str, str]]:
    out = [(f"Qwen/Qwen3-{s}B", f"Qwen/Qwen3-{s}B-Base") for s in ("0.6", "1.7", "4", "8", "14")]
    for vl, base in (("2", "1.7"), ("4", "4"), ("8", "8"), ("32", "14")):
        for kind in ("Instruct", "Thinking"):
            out.append((f"Qwen/Qwen3-VL-{vl}B-{kind}", f"Qwen/Qwen3-{base}B-Base"))
    return out


#: The 25 (post, base) pairs of the authors' domain heatmap (``plot_experiments.py``).
DOMAIN_PAIRS: tuple[tuple[str, str], ...] = (
    *_qwen3_domain_pairs(),
    ("allenai/Olmo-3-7B-Instruct", "allenai/Olmo-3-1025-7B"),
    ("allenai/Olmo-3-7B-Think", "allenai/Olmo-3-1025-7B"),
    ("allenai/Olmo-3.1-32B-Instruct", "allenai/Olmo-3-1125-32B"),
    ("allenai/Olmo-3.1-32B-Think", "allenai/Olmo-3-1125-32B"),
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B"),
    ("meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B"),
    ("meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "meta-llama/Llama-3.1-8B"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "meta-llama/Llama-3.1-70B"),
    ("unsloth/Llama-3.2-11B-Vision", "meta-llama/Llama-3.1-8B"),
    ("unsloth/Llama-3.2-90B-Vision", "meta-llama/Llama-3.1-70B"),
)

#: The 11 base models of the persona figure (``plot_meta.py``) and their post-trained partners.
PERSONA_PAIRS: tuple[tuple[str, str], ...] = (
    *((f"Qwen/Qwen3-{s}B", f"Qwen/Qwen3-{s}B-Base") for s in ("0.6", "1.7", "4", "8", "14")),
    ("allenai/Olmo-3-7B-Instruct", "allenai/Olmo-3-1025-7B"),
    ("allenai/Olmo-3.1-32B-Instruct", "allenai/Olmo-3-1125-32B"),
    ("meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B"),
    ("meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B"),
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B"),
)
PERSONA_MODELS: tuple[str, ...] = tuple(m for pair in PERSONA_PAIRS for m in pair)
#: Studies the persona figure leaves out.
PERSONA_EXCLUDED: tuple[str, ...] = ("evangelidis2023upscaling", "gunadi2021deferral")

CENTAUR = "marcelbinz/Llama-3.1-Centaur-70B-adapter"
CENTAUR_BASE = "unsloth/Meta-Llama-3.1-70B-bnb-4bit"

#: One line per figure: where psych201's default differs from the paper (report and CLI notes).
DEFAULT_DIFFERS: dict[str, str] = {
    "fig2": "psych201's default scores every model on the studies all models share; the paper "
            "averages each model over its own studies.",
    "pairs": "psych201's default adds paired bootstrap intervals; the paper's pair d pools each "
             "model's own responses (sample SD) with no pairing.",
    "generations": "the paper keeps a generation pair with ≥ 1 shared study (pair d needs ≥ 2).",
    "domains": "psych201's default uses every scored pair; the paper uses 25 pairs (population "
               "SD), four categories dropped.",
    "persona": "psych201's default compares the same participants on both sides; the paper's "
               "reference is every test participant (population SD).",
    "accuracy": "the paper's accuracy is the arg-max over the whole vocabulary; psych201 adds the "
                "arg-max among the offered options.",
    "chat_template": "psych201's default drops responses a template rewrites; the paper scores "
                     "them as trimmed (condition chat-template-paper).",
    "centaur": "Centaur is compared on non-Psych-101 studies only, against its 4-bit base, with "
               "d = (base − Centaur)/pooled SD (> 0: Centaur better).",
}


#: Report figure (file stem) → the :data:`DEFAULT_DIFFERS` line shown next to it.
FIGURE_KEYS: dict[str, str] = {
    "fig2_size": "fig2", "fig3a_generations": "generations", "fig4_domains": "domains",
    "fig5_persona": "persona", "fig_accuracy": "accuracy", "fig_chat_template": "chat_template",
}


def figure_note(name: str, *, paper_mode: bool = False) -> str:
    """One line for a report figure: how psych201's default differs from the paper (or '')."""
    key = FIGURE_KEYS.get(name)
    if key is None:
        return ""
    if paper_mode:
        return "Paper mode (--paper): drawn as the authors' plotting script computes it."
    return f"Differs from the paper: {DEFAULT_DIFFERS[key]} (--paper reproduces it.)"


@dataclass(frozen=True, eq=False)
class PaperTables:
    """One table per figure (see the module docstring) and what could not be computed."""

    tables: dict[str, pd.DataFrame]
    conditions: dict[str, str]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """JSON-ready: each table as records (NaN → null), plus conditions and notes."""
        out: dict[str, object] = {"conditions": dict(self.conditions), "notes": list(self.notes)}
        for name, table in self.tables.items():
            clean = table.astype(object).where(table.notna(), None)
            out[name] = [
                {k: _plain(v) for k, v in row.items()} for row in clean.to_dict(orient="records")
            ]
        return out


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- building blocks ------------------------------------------------------------------------------
def canonical_models(frame: pd.DataFrame, registry: ModelRegistry) -> pd.DataFrame:
    """``frame`` with each model name replaced by its registry id (unknown names kept)."""
    names = frame["model"].astype(str)
    mapping = {}
    for name in names.unique():
        info = registry.get(name)
        mapping[name] = info.id if info is not None else name
    return frame.assign(model=names.map(mapping))


def model_study_stats(rows: pd.DataFrame, *, value: str = "nll", ddof: int = 1) -> pd.DataFrame:
    """Mean, SD (``ddof``) and count of ``value`` per (model, study) over all rows given."""
    grouped = rows.groupby(["model", "study"], observed=True)[value]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=ddof),
                         "n": grouped.size()})


def _one(stats: pd.DataFrame, model: str) -> pd.DataFrame:
    if model not in stats.index.get_level_values("model"):
        return stats.iloc[0:0].droplevel("model")
    return stats.xs(model, level="model")


def study_d_from_stats(stats: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per shared study ``(mean_a − mean_b) / sqrt((sd_a² + sd_b²) / 2)`` (study index)."""
    sa, sb = _one(stats, a), _one(stats, b)
    common = sa.index.intersection(sb.index).sort_values()
    sa, sb = sa.loc[common], sb.loc[common]
    pooled = np.sqrt((sa["sd"] ** 2 + sb["sd"] ** 2) / 2)
    return pd.DataFrame({"mean_a": sa["mean"], "mean_b": sb["mean"],
                         "d": (sa["mean"] - sb["mean"]) / pooled})


def _registry_pairs(registry: ModelRegistry, present: Collection[str]) -> list[tuple[str, str]]:
    return [(p.post, p.base) for p in registry.pairs()
            if p.post in present and p.base in present and p.post_training != "human"]


def _pair_rows(stats: pd.DataFrame, pairs: Iterable[tuple[str, str]], registry: ModelRegistry,
               min_studies: int) -> pd.DataFrame:
    rows = []
    for post, base in pairs:
        per = study_d_from_stats(stats, post, base)
        if len(per) < min_studies:
            continue
        info = registry.get(post)
        kind = info.post_training if info else "unknown"
        rows.append({"post": post, "base": base, "post_training": kind,
                     "type": TYPE_LABELS.get(kind, kind),
                     "family": info.family if info else None,
                     "params_b": info.params_b if info and info.params_b else math.nan,
                     "d": float(per["d"].mean()), "n_studies": len(per)})
    return pd.DataFrame(rows, columns=["post", "base", "post_training", "type", "family",
                                       "params_b", "d", "n_studies"])


def _type_d(pairs: pd.DataFrame) -> pd.DataFrame:
    out = pairs.groupby(["post_training", "type"], as_index=False).agg(
        d=("d", "mean"), n_pairs=("d", "size"))
    return out.sort_values("d", kind="stable").reset_index(drop=True)


def _own_scores(stats: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean of its study means over its own studies."""
    means = stats["mean"].groupby(level="model", observed=True)
    return pd.DataFrame({"score": means.mean(), "n_studies": means.size()}).reset_index()


def _sem(values: pd.Series) -> float:
    n = int(values.notna().sum())
    return float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


# -- the figures ----------------------------------------------------------------------------------
def fig2_points(stats: pd.DataFrame, registry: ModelRegistry) -> pd.DataFrame:
    scores = _own_scores(stats)
    info = registry.describe(list(scores["model"])).reset_index()
    keep = ["model", "family", "line_label", "type", "is_base", "params_b"]
    return scores.merge(info[keep], on="model")[[*keep, "score", "n_studies"]]


def generation_tables(stats: pd.DataFrame, registry: ModelRegistry,
                      present: Collection[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per pair, per generation) for Qwen2 → Qwen3.5: main-line pairs with ≥ 1 shared study."""
    pairs = [(post, base) for post, base in _registry_pairs(registry, present)
             if registry[post].family in QWEN_GENERATIONS and registry[post].line == "main"]
    per_pair = _pair_rows(stats, pairs, registry, min_studies=1)
    order = {f: i for i, f in enumerate(QWEN_GENERATIONS)}
    per_pair = per_pair.assign(_o=per_pair["family"].map(order)).sort_values(
        ["_o", "params_b"], kind="stable").drop(columns="_o").reset_index(drop=True)
    means = per_pair.groupby("family", as_index=False, sort=False).agg(
        d=("d", "mean"), n_pairs=("d", "size"))
    return per_pair, means


def domain_tables(stats_population: pd.DataFrame,
                  categories: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pair × domain, per-domain mean over pairs) over :data:`DOMAIN_PAIRS`."""
    cols = [c for c in categories.columns if c not in DROPPED_DOMAINS]
    rows = []
    for post, base in DOMAIN_PAIRS:
        per = study_d_from_stats(stats_population, post, base)
        per = per[per.index.isin(categories.index)]
        if per.empty:
            continue
        member = categories.loc[per.index, cols]
        for domain in cols:
            mask = member[domain].to_numpy(bool)
            if mask.any():
                rows.append({"post": post, "base": base, "domain": domain,
                             "d": float(per["d"].to_numpy()[mask].mean()),
                             "n_studies": int(mask.sum())})
    cells = pd.DataFrame(rows, columns=["post", "base", "domain", "d", "n_studies"])
    means = cells.groupby("domain", as_index=False).agg(d=("d", "mean"), n_pairs=("d", "size"))
    return cells, means.sort_values("d", kind="stable").reset_index(drop=True)


def persona_tables(reference: pd.DataFrame, persona: pd.DataFrame,
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per model and study, per model) persona benefit, population SD, reference = all."""
    ref = reference[~reference["study"].isin(PERSONA_EXCLUDED)]
    per = persona[~persona["study"].isin(PERSONA_EXCLUDED)]
    models = [m for m in PERSONA_MODELS if m in set(per["model"]) and m in set(ref["model"])]
    ref, per = ref[ref["model"].isin(models)], per[per["model"].isin(models)]
    stats = pd.concat([model_study_stats(ref.assign(model="r\x1f" + ref["model"]), ddof=0),
                       model_study_stats(per.assign(model="p\x1f" + per["model"]), ddof=0)])
    rows = []
    for model in models:
        d = study_d_from_stats(stats, "r\x1f" + model, "p\x1f" + model)
        rows += [{"model": model, "study": s, "d": float(v)} for s, v in d["d"].items()]
    per_study = pd.DataFrame(rows, columns=["model", "study", "d"])
    summary = per_study.groupby("model", sort=False, as_index=False).agg(
        d=("d", "mean"), sem=("d", _sem), n_studies=("d", "size"))
    return per_study, summary


def accuracy_tables(rows: pd.DataFrame, registry: ModelRegistry,
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per model, pair d, type d) on top-1 hits (arg-max over the whole vocabulary)."""
    hits = rows[rows["top1_correct"].notna()]
    hits = hits.assign(hit=hits["top1_correct"].astype(float))
    stats = model_study_stats(hits, value="hit", ddof=1)
    per_model = _own_scores(stats).rename(columns={"score": "accuracy"})
    pairs = _pair_rows(stats, _registry_pairs(registry, set(per_model["model"])), registry,
                       min_studies=2)
    return per_model, pairs, _type_d(pairs)


def chat_template_table(template: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    t = _own_scores(model_study_stats(template)).rename(
        columns={"score": "template", "n_studies": "n_studies"})
    r = _own_scores(model_study_stats(reference[reference["model"].isin(t["model"])])).rename(
        columns={"score": "no_template", "n_studies": "n_studies_no_template"})
    return t.merge(r, on="model", how="left")[["model", "template", "n_studies", "no_template",
                                               "n_studies_no_template"]]


def centaur_tables(rows: pd.DataFrame, psych101: Collection[str],
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per study, summary) of Centaur against its 4-bit base on non-Psych-101 studies."""
    rows = rows[rows["model"].isin((CENTAUR, CENTAUR_BASE)) & ~rows["study"].isin(psych101)]
    per = study_d_from_stats(model_study_stats(rows, ddof=1), CENTAUR_BASE, CENTAUR)
    per_study = per.rename(columns={"mean_a": "mean_base", "mean_b": "mean_centaur"}
                           ).reset_index()
    summary = pd.DataFrame([{"post": CENTAUR, "base": CENTAUR_BASE,
                             "d": float(per["d"].mean()) if len(per) else math.nan,
                             "sem": _sem(per["d"]), "n_studies": len(per)}])
    return per_study, summary


def _pick(conditions: Iterable[str], role: ConditionRole, roles: Roles | None) -> str | None:
    """The condition of ``role``; a paper-mode one (name contains ``paper``) is preferred."""
    found = conditions_with_role(conditions, role, roles)
    papers = [c for c in found if "paper" in c.lower()]
    return (papers or found)[0] if found else None


def paper_tables(frame: pd.DataFrame, registry: ModelRegistry, *, condition: str | None = None,
                 psych101: Collection[str] = (), categories: str | None = None,
                 roles: Roles | None = None) -> PaperTables:
    """Every figure's table as the authors compute it (see the module docstring).

    ``frame`` is a response table (any conditions). The Centaur comparison leaves out the
    studies ``categories.csv`` marks as Psych-101, those in ``psych101`` and those a table's
    ``is_psych101`` column flags. ``roles``: each condition's recorded role
    (:meth:`~psych201.analysis.tables.Results.condition_roles`; the rest go by name).
    """
    frame = canonical_models(frame, registry)
    all_conditions = list(frame["condition"].unique())
    # the paper's own text variant is the main condition when it was scored
    main = main_condition(all_conditions, condition if condition is not None else (
        "paper" if "paper" in all_conditions else None), roles)
    used = {"main": main}
    notes: list[str] = []
    rows = frame[frame["condition"] == main]
    stats = model_study_stats(rows, ddof=1)
    present = set(rows["model"])
    tables: dict[str, pd.DataFrame] = {"fig2": fig2_points(stats, registry)}
    tables["pairs"] = _pair_rows(stats, _registry_pairs(registry, present), registry,
                                 min_studies=2)
    tables["type_d"] = _type_d(tables["pairs"])
    tables["generation_pairs"], tables["generations"] = generation_tables(stats, registry,
                                                                          present)
    tables["domains"], tables["domain_means"] = domain_tables(
        model_study_stats(rows, ddof=0), load_categories(categories))

    persona_condition = _pick(all_conditions, ConditionRole.PERSONA, roles)
    if persona_condition is not None:
        used["persona"] = persona_condition
        tables["persona_per_study"], tables["persona"] = persona_tables(
            rows, frame[frame["condition"] == persona_condition])
    else:
        notes.append("no persona condition: persona figure skipped")

    discrete = _pick(all_conditions, ConditionRole.DISCRETE, roles)
    acc_condition = discrete if discrete is not None else (
        main if rows["top1_correct"].notna().any() else None)
    if acc_condition is not None:
        used["accuracy"] = acc_condition
        tables["accuracy"], tables["accuracy_pairs"], tables["accuracy_type_d"] = \
            accuracy_tables(frame[frame["condition"] == acc_condition], registry)
    else:
        notes.append("no top-1 hits: accuracy figure skipped")

    chat = _pick(all_conditions, ConditionRole.CHAT_TEMPLATE, roles)
    if chat is not None:
        used["chat_template"] = chat
        tables["chat_template"] = chat_template_table(frame[frame["condition"] == chat], rows)
    else:
        notes.append("no chat-template condition: chat-template figure skipped")

    if {CENTAUR, CENTAUR_BASE} <= present:
        excluded = set(psych101) | psych101_studies(categories)
        if "is_psych101" in rows.columns:
            flags = rows["is_psych101"].astype("boolean").fillna(False).astype(bool)
            excluded |= set(rows.loc[flags, "study"])
        tables["centaur_per_study"], tables["centaur"] = centaur_tables(rows, excluded)
    else:
        notes.append(f"Centaur comparison needs {CENTAUR} and {CENTAUR_BASE}: skipped")
    return PaperTables(tables, used, tuple(notes))


