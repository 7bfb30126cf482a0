"""The shape of ``compare --json`` as pydantic models; ``compare.schema.json`` is made from them.

Two outputs share the file: the summary (``compare RUNS… --json``: the leaderboard and every
analysis section under its anchor, :class:`CompareSummary`) and the pair comparisons
(``compare --pair POST=BASE --json``: a list of :class:`PairComparisonJson`). Section tables are
open records (each analysis declares its own columns); everything around them is closed
(``extra="forbid"``), so a key added or renamed without a new ``schema_version`` fails
:func:`validate_compare_json`.

    python -m psych201.report.compare_schema   # rewrite compare.schema.json from these models
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue, TypeAdapter

#: Version of the ``compare --json`` layout. 2: the flat copies of section tables ("pairs",
#: "accuracy", "readable", …) that version 1 kept beside "sections" are gone.
COMPARE_JSON_VERSION = 2

SCHEMA_FILE = Path(__file__).with_name("compare.schema.json")

#: One row of a table: column → number, text, flag, list or null (a missing number is null).
Record = dict[str, JsonValue]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Options(_Closed):
    """The analysis options that produced the numbers (``AnalysisOptions`` but the pairs)."""

    condition: str | None
    weighting: Literal["study", "participant", "response"]
    sd: Literal["sample", "population"]
    allow_missing: bool
    n_boot: int
    ci: float
    seed: int
    levels: Literal["both", "studies", "participants"]
    detail_pairs: int
    categories: str | None
    persona_same_participants: bool
    families: list[str] | None


class LeaderboardRow(BaseModel):
    """One model's line of the leaderboard (further registry columns may follow)."""

    model_config = ConfigDict(extra="allow", strict=True)

    rank: int
    model: str
    display: str
    score: float | None
    ci_low: float | None
    ci_high: float | None
    n_studies: int
    n_participants: int
    n_responses: int


class FigureRef(_Closed):
    name: str
    caption: str


class SectionJson(_Closed):
    """One analysis section: its reading, notes, tables (as records) and figures (by name)."""

    title: str
    text: str
    notes: list[str]
    tables: dict[str, list[Record]]
    figures: list[FigureRef]


class CompareSummary(_Closed):
    """``compare RUNS… --json``."""

    schema_version: Literal[2]
    condition: str
    studies: list[str]
    options: Options
    leaderboard: list[LeaderboardRow]
    notes: list[str]
    sections: dict[str, SectionJson]


class EffectJson(_Closed):
    """One effect of a pair (:class:`psych201.analysis.effects.Effect`)."""

    name: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    p_value: float | None
    n_studies: int
    n_participants: int
    n_responses: int
    method: str
    units: str


class PairComparisonJson(_Closed):
    """One pair of ``compare --pair POST=BASE --json`` (the output is a list of these)."""

    post: str
    base: str
    condition: str
    studies: list[str]
    effects: list[EffectJson]
    per_study: list[Record]
    unmatched_responses: int
    notes: list[str]
    not_a_pair: list[str]


_COMPARE_JSON: TypeAdapter[CompareSummary | list[PairComparisonJson]] = TypeAdapter(
    CompareSummary | list[PairComparisonJson])


def validate_compare_json(data: Any) -> CompareSummary | list[PairComparisonJson]:
    """``data`` (parsed ``compare --json``) checked against the schema; pydantic's
    ``ValidationError`` names each path that does not fit."""
    return _COMPARE_JSON.validate_python(data)


def compare_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``compare --json`` (what ``compare.schema.json`` holds)."""
    schema = _COMPARE_JSON.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"psych201 compare --json (schema_version {COMPARE_JSON_VERSION})",
            **schema}


def schema_text() -> str:
    return json.dumps(compare_json_schema(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover - the regeneration command of the module doc
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
