"""A summary whose figures are drawn from the paper-mode tables (:mod:`.paper_mode`): size
scaling, generations, the domain heatmap, persona, accuracy and chat template as the paper's
plotting scripts compute them."""

from __future__ import annotations

import pandas as pd

from psych201.analysis import (
    an_accuracy,
    an_chat_template,
    an_domains,
    an_generations,
    an_persona,
    an_scaling,
    paper,
)
from psych201.analysis.an_persona import PersonaResult
from psych201.analysis.paper import QWEN_GENERATIONS
from psych201.analysis.paper_mode import PaperTables, canonical_models
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.summary import Summary

# -- the figures drawn from the paper tables ------------------------------------------------------
PAPER_PERSONA_COMPARISON = "persona vs all test participants (paper)"


def domain_matrix(tables: PaperTables) -> pd.DataFrame | None:
    """The heatmap matrix (pairs × domains, ``Average`` row last) of the paper's domain table."""
    cells = tables.tables.get("domains")
    if cells is None or cells.empty:
        return None
    matrix = cells.pivot(index="post", columns="domain", values="d")
    means = tables.tables["domain_means"].set_index("domain")["d"]
    matrix = matrix[list(means.index)]
    order = matrix.mean(axis=1, skipna=True).sort_values(kind="stable").index
    matrix = matrix.loc[order]
    matrix.loc["Average"] = means
    matrix.columns.name = None
    return matrix


def paper_summary(summary: Summary, frame: pd.DataFrame, registry: ModelRegistry,
                  tables: PaperTables) -> Summary:
    """``summary`` with every figure's data replaced by its paper-mode version.

    Model names become registry ids (as in the paper tables); leaderboard, pair intervals and
    the other psych201 tables are left as they are.
    """
    frame = canonical_models(frame, registry)
    main = frame[frame["condition"] == tables.conditions["main"]]
    points, fits = paper.size_scaling(main, registry, condition=tables.conditions["main"])
    t = tables.tables
    families = summary.options.families
    redrawn = [an_scaling.section(points, fits, families)]
    dropped = []
    if not t["generation_pairs"].empty:
        bases = points[points["is_base"] & points["family"].isin(QWEN_GENERATIONS)]
        order = {f: i for i, f in enumerate(QWEN_GENERATIONS)}
        bases = bases.assign(_o=bases["family"].map(order)).sort_values(
            ["_o", "params_b"], kind="stable")[["family", "model", "params_b", "score"]]
        redrawn.append(an_generations.section(paper.GenerationTrend(
            bases.reset_index(drop=True),
            t["generation_pairs"][["family", "post", "base", "params_b", "d"]],
            t["generations"])))
    else:
        dropped.append(an_generations.ANALYSIS.name)
    matrix = domain_matrix(tables)
    if matrix is not None:
        redrawn.append(an_domains.section(matrix))
    else:
        dropped.append(an_domains.ANALYSIS.name)
    if "persona" in t and not t["persona"].empty:
        persona = PersonaResult(
            t["persona_per_study"].assign(comparison=PAPER_PERSONA_COMPARISON),
            t["persona"].assign(comparison=PAPER_PERSONA_COMPARISON))
        models = sorted(map(str, persona.per_study["model"].unique()))
        redrawn.append(an_persona.section(persona, an_persona.is_base(registry, models)))
    else:
        dropped.append(an_persona.ANALYSIS.name)
    if "accuracy" in t:
        info = registry.describe(list(t["accuracy"]["model"])).reset_index()
        redrawn.append(an_accuracy.section(t["accuracy"].merge(info, on="model").assign(
            condition=tables.conditions["accuracy"]), families=families))
    if "chat_template" in t:
        info = registry.describe(list(t["chat_template"]["model"])).reset_index()
        redrawn.append(an_chat_template.section(t["chat_template"].merge(info, on="model"),
                                                families))
    return summary.with_sections(redrawn, drop=dropped)
