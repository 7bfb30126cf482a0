"""Chat-template control: post-trained models' NLL without and with their chat template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pandas as pd

from psych201.analysis import paper
from psych201.analysis.plots import fig_chat_template
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionFigure, SectionTable
from psych201.prompts.records import ConditionRole

CAPTION = "Chat-template control: NLL without and with the model's chat template."

COLUMNS = (Column("display", "model", "text"), Column("no_template", "NLL raw"),
           Column("template", "NLL chat template"), Column("n_studies", "studies", "int"))


@dataclass(frozen=True)
class ChatTemplateResult:
    """NLL without and with the chat template, per model."""

    table: pd.DataFrame


def section(table: pd.DataFrame, families: Sequence[str] | None = None) -> Section:
    """The section of a chat-template table (with the registry's columns)."""
    return Section(anchor=ChatTemplate.name, title="Chat-template control", text="",
                   tables=(SectionTable("chat_template", table, COLUMNS),),
                   figures=(SectionFigure("fig_chat_template", CAPTION,
                                          partial(fig_chat_template, table, families)),),
                   result=ChatTemplateResult(table))


class ChatTemplate:
    name = "chat-template"
    requires: Sequence[str] = ()
    result_type: type | None = ChatTemplateResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        templates = context.conditions_of(ConditionRole.CHAT_TEMPLATE)
        if not templates:
            return None
        chat = paper.chat_template_control(context.frame, template_condition=templates[0],
                                           reference_condition=context.condition)
        info = context.registry.describe(list(chat["model"])).reset_index()
        return section(chat.merge(info, on="model"), context.options.families)


ANALYSIS = ChatTemplate()
