"""Condition roles (issue 23): each condition class declares what it is for in the analyses, run
manifests record it, and the analyses read the role, not the condition's name. Runs whose
manifest predates the role still read, by the registered condition their name comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import invoke
from psych201.analysis.an_persona import PersonaResult
from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import load_registry
from psych201.analysis.summary import summarize
from psych201.analysis.synthetic import SyntheticDesign, synthetic_responses
from psych201.analysis.tables import Results, RunSource, read_results
from psych201.prompts.chat_condition import ChatTemplateCondition
from psych201.prompts.conditions import CONDITION_NAMES, make_condition, registered_role
from psych201.prompts.records import ConditionRole
from psych201.results.io import read_manifest
from psych201.results.manifest import save_manifest
from psych201.simulate.demo import DEMO_DIR

REGISTRY = load_registry()
ROLES = {"raw": ConditionRole.MAIN, "no-persona": ConditionRole.MAIN,
         "paper": ConditionRole.MAIN, "discrete": ConditionRole.DISCRETE,
         "persona": ConditionRole.PERSONA, "persona-shuffled": ConditionRole.PERSONA_SHUFFLED}


def test_each_condition_declares_its_role_outside_the_run_hash() -> None:
    assert set(ROLES) | {"chat-template"} == set(CONDITION_NAMES)
    for name, role in ROLES.items():
        condition = make_condition(name)
        assert condition.role is role, name
        assert "role" not in condition.spec()  # the hash of existing runs is unchanged
    assert ChatTemplateCondition.role is ConditionRole.CHAT_TEMPLATE
    assert make_condition("persona-shuffled", mode="bio").role is ConditionRole.PERSONA_SHUFFLED


@pytest.mark.parametrize(("name", "role"), [
    ("raw", ConditionRole.MAIN), ("no-persona-paper", ConditionRole.MAIN),
    ("discrete-paper", ConditionRole.DISCRETE), ("chat_template", ConditionRole.CHAT_TEMPLATE),
    ("persona-qa", ConditionRole.PERSONA), ("persona:bio", ConditionRole.PERSONA),
    ("persona-shuffled-bio", ConditionRole.PERSONA_SHUFFLED),
    ("personality", ConditionRole.MAIN), ("my-own", ConditionRole.MAIN),
])
def test_a_name_no_manifest_speaks_for_has_its_registered_conditions_role(
        name: str, role: ConditionRole) -> None:
    assert registered_role(name) is role


def _persona_frame() -> pd.DataFrame:
    design = SyntheticDesign(n_participants=20, n_responses=10, seed=3, persona_effect=0.4)
    return synthetic_responses([REGISTRY["gemma-3-270m"]], design=design,
                               conditions=("raw", "no-persona", "persona"))


def _results(frame: pd.DataFrame, role_of: dict[str, str]) -> Results:
    """One source per condition, as run directories are: a manifest where ``role_of`` names the
    condition's recorded role, none otherwise."""
    sources = tuple(
        RunSource(path=f"runs/{c}", n_rows=int((frame["condition"] == c).sum()),
                  models=tuple(frame["model"].unique()), conditions=(c,),
                  manifest={"condition_role": role_of[c]} if c in role_of else None)
        for c in frame["condition"].unique())
    return Results(frame, sources)


def test_an_unusual_name_with_the_persona_role_is_a_persona_condition() -> None:
    frame = _persona_frame()
    options = AnalysisOptions(n_boot=200)
    named = summarize(_results(frame, {}), REGISTRY, options).result("persona", PersonaResult)
    assert named is not None
    unusual = frame.assign(condition=frame["condition"].replace({"persona": "interview-preamble"}))
    # by name alone it is one more main condition: no persona section
    assert summarize(_results(unusual, {}), REGISTRY, options).section("persona") is None
    recorded = summarize(_results(unusual, {"interview-preamble": "persona"}), REGISTRY, options)
    got = recorded.result("persona", PersonaResult)
    assert got is not None
    assert list(got.per_model["comparison"]) == ["interview-preamble vs no-persona"]
    expected = named.per_model.drop(columns="comparison").reset_index(drop=True)
    pd.testing.assert_frame_equal(got.per_model.drop(columns="comparison")
                                  .reset_index(drop=True), expected)


def test_a_run_records_its_role_and_an_old_manifest_without_it_still_reads(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["score", "--data", str(DEMO_DIR), "--engine", "oracle", "--split", "all",
                     "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["condition_role"] == "main"
    assert read_results([out]).condition_roles() == {"raw": ConditionRole.MAIN}
    save_manifest(out, {k: v for k, v in manifest.items() if k != "condition_role"})
    assert read_results([out]).condition_roles() == {}  # nothing recorded: go by the name
    result = invoke(["compare", str(out), "--n-boot", "100", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["condition"] == "raw"
