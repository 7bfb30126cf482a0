"""Persona induction: benefit d per model and study (and the shuffled-persona control), and the
paired benefit in nats on the same responses of the same participants."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sps

from psych201.analysis import paper
from psych201.analysis.conditions import Roles, conditions_with_role, persona_reference
from psych201.analysis.effects import bootstrap_effect, per_study_table, sign_test
from psych201.analysis.plots import fig_persona
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionFigure, SectionTable
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.tables import select
from psych201.prompts.records import ConditionRole
from psych201.results.schema import RESPONSE_KEY

if TYPE_CHECKING:
    from psych201.analysis.plugin import AnalysisOptions


@dataclass(frozen=True, eq=False)
class PersonaResult:
    """Per model and study: persona benefit d (and the shuffled-persona control where scored).

    ``paired`` is the individual-level analysis: per study, the mean NLL benefit in nats
    (reference − persona, positive = the persona helps) over the very same responses of the
    same participants, with a participant-bootstrap interval; ``per_model`` adds the pooled
    benefit over studies and participants (``benefit``, ``benefit_ci_low``/``high``).
    """

    per_study: pd.DataFrame  # model, study, d, comparison
    per_model: pd.DataFrame  # model, comparison, d, ci_low, ci_high, n_studies, benefit, ...
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)


def _persona(frame: pd.DataFrame, reference: str, options: AnalysisOptions,
             roles: Roles | None = None) -> PersonaResult | None:
    conditions = list(frame["condition"].unique())
    persona = conditions_with_role(conditions, ConditionRole.PERSONA, roles)
    shuffled = conditions_with_role(conditions, ConditionRole.PERSONA_SHUFFLED, roles)
    if not persona:
        return None
    rows, summary, paired = [], [], []
    for p_cond in persona:
        own_reference = persona_reference(conditions, p_cond, reference)
        for model in sorted(select(frame, condition=p_cond)["model"].unique()):
            comparisons = [(f"{p_cond} vs {own_reference}", own_reference,
                            options.persona_same_participants)]
            comparisons += [(f"{p_cond} vs {s}", s, True) for s in shuffled]
            for label, ref, same in comparisons:
                if select(frame, model=model, condition=ref).empty:
                    continue
                per = paper.persona_benefit(frame, model, persona_condition=p_cond,
                                            reference_condition=ref, same_participants=same,
                                            sd="population")
                for study, d in per["d"].items():
                    rows.append({"model": model, "study": study, "d": float(d),
                                 "comparison": label})
                values = per["d"].to_numpy(float)
                test = sign_test(values, name=label, ci=options.ci, unit="studies")
                n = int(np.isfinite(values).sum())
                mean = float(np.nanmean(values)) if n else math.nan
                sem = float(np.nanstd(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
                # studies as the units: a t interval over the per-study d values
                half = float(sps.t.ppf(0.5 + options.ci / 2, n - 1)) * sem if n > 1 else math.nan
                benefit = _paired_benefit(frame, model, ref, p_cond, options)
                if benefit is not None:
                    per_study_paired, pooled = benefit
                    paired.append(per_study_paired.assign(model=model, comparison=label))
                else:
                    pooled = {}
                summary.append({"model": model, "comparison": label, "d": mean,
                                "ci_low": mean - half, "ci_high": mean + half, "sem": sem,
                                "n_studies": n, "sign_p": test.p_value, **pooled})
    paired_table = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()
    if not paired_table.empty:
        first = ["model", "comparison", "study"]
        paired_table = paired_table[first + [c for c in paired_table if c not in first]]
    return PersonaResult(pd.DataFrame(rows), pd.DataFrame(summary), paired_table)


def _paired_benefit(frame: pd.DataFrame, model: str, reference: str, persona: str,
                    options: AnalysisOptions) -> tuple[pd.DataFrame, dict[str, float]] | None:
    """Benefit in nats on the responses scored under both conditions, per study and pooled."""
    with_persona = select(frame, model=model, condition=persona)
    without = select(frame, model=model, condition=reference)
    keys = with_persona[RESPONSE_KEY].merge(without[RESPONSE_KEY], on=RESPONSE_KEY)
    if keys.empty:
        return None
    a = without.merge(keys, on=RESPONSE_KEY)
    b = with_persona.merge(keys, on=RESPONSE_KEY)
    per_study = per_study_table(a, b, n_boot=max(200, options.n_boot // 2), ci=options.ci,
                                seed=options.seed)
    per_study = per_study.rename(columns={"mean_post": "mean_reference",
                                          "mean_base": "mean_persona", "mean_diff": "benefit"})
    per_study = per_study.drop(columns=["d_sample", "d_population"])
    pooled = bootstrap_effect(a, b, "mean_diff", name="persona benefit", levels=options.levels,
                              n_boot=options.n_boot, ci=options.ci, seed=options.seed,
                              units="nats")
    return per_study, {"benefit": pooled.estimate, "benefit_ci_low": pooled.ci_low,
                       "benefit_ci_high": pooled.ci_high,
                       "n_participants": int(per_study["n_participants"].sum()),
                       "n_responses": int(per_study["n_responses"].sum())}


CAPTION = "Persona benefit d per study (positive = persona helps; paper Fig. 5)."

TEXT = ("Benefit d = (mean without persona − mean with persona) / pooled SD per study (population "
        "SD), averaged over studies; positive = the persona helps. Benefit in nats: the same "
        "difference per response, paired on the same responses of the same participants, with a "
        "bootstrap interval (pooled: studies and participants; per study: participants).")

MODEL_COLUMNS = (
    Column("model", "model", "text"), Column("comparison", "comparison", "text"),
    Column("d", "mean d"), Column("ci_low", "t interval", "interval"),
    Column("n_studies", "studies", "int"), Column("sign_p", "sign test p", "p"),
    Column("benefit", "benefit (nats)", optional=True),
    Column("benefit_ci_low", "interval", "interval", optional=True),
    Column("n_participants", "participants", "int", optional=True))

PAIRED_COLUMNS = (
    Column("model", "model", "text"), Column("comparison", "comparison", "text"),
    Column("study", "study", "text"), Column("n_participants", "participants", "int"),
    Column("n_responses", "responses", "int"), Column("mean_reference", "NLL without"),
    Column("mean_persona", "NLL with"), Column("benefit", "benefit (nats)"),
    Column("ci_low", "participant bootstrap", "interval"))


def is_base(registry: ModelRegistry, models: Sequence[str]) -> dict[str, bool]:
    """Base or not, by model name as scored (unknown models count as post-trained)."""
    return {m: info.is_base for m in models if (info := registry.get(m)) is not None}


def section(result: PersonaResult, base: Mapping[str, bool]) -> Section:
    """The section of a persona result (``base``: which models are base models, for the figure)."""
    tables = [SectionTable("persona", result.per_model, MODEL_COLUMNS)]
    if not result.paired.empty:
        tables.append(SectionTable("persona_per_study", result.paired, PAIRED_COLUMNS,
                                   caption="Per study, paired"))
    return Section(anchor=Persona.name, title="Persona induction", text=TEXT,
                   tables=tuple(tables),
                   figures=(SectionFigure("fig5_persona", CAPTION,
                                          partial(fig_persona, result.per_study, dict(base))),),
                   result=result)


class Persona:
    name = "persona"
    requires: Sequence[str] = ()
    result_type: type | None = PersonaResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        result = _persona(context.frame, context.condition, context.options, context.roles)
        if result is None:
            return None
        models = sorted(map(str, result.per_study["model"].unique())) \
            if not result.per_study.empty else []
        return section(result, is_base(context.registry, models))


ANALYSIS = Persona()
