"""``compare --json`` fits its published schema (src/psych201/report/compare.schema.json).

The schema is generated from the pydantic models of :mod:`psych201.report.compare_schema`, so the
file must equal what the models give; the golden outputs (a bundled-demo pair, a shared-trials
pair), a one-study comparison and a ``--pair`` comparison all validate, and a changed key does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cli_helpers import invoke
from psych201.report.compare_schema import (
    COMPARE_JSON_VERSION,
    SCHEMA_FILE,
    CompareSummary,
    PairComparisonJson,
    schema_text,
    validate_compare_json,
)
from psych201.simulate.demo import DEMO_DIR

GOLDEN = Path(__file__).parent / "golden"


def _run(*args: str) -> None:
    result = invoke(list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One bundled study scored by the oracle at temperatures 1 and 2."""
    tmp = tmp_path_factory.mktemp("schema")
    runs = {}
    for name, args in (("oracle", ()), ("oracle-T2", ("--engine-args", "temperature=2"))):
        runs[name] = tmp / name
        _run("score", "--data", str(DEMO_DIR), "--studies", "simulated_bandit", "--engine",
             "oracle", *args, "--out", str(runs[name]), "--quiet")
    return runs


def _compare_json(tmp: Path, *args: str) -> Any:
    out = tmp / "out.json"
    _run("compare", *args, "--n-boot", "100", "--json", str(out))
    return json.loads(out.read_text(encoding="utf-8"))


def test_the_published_schema_is_the_models_schema() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "compare.schema.json is stale: python -m psych201.report.compare_schema")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert {"CompareSummary", "PairComparisonJson", "SectionJson"} <= set(schema["$defs"])


@pytest.mark.parametrize("name", ["compare-demo", "compare-risky"])
def test_the_golden_outputs_validate(name: str) -> None:
    data = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    summary = validate_compare_json(data)
    assert isinstance(summary, CompareSummary)
    assert summary.schema_version == COMPARE_JSON_VERSION
    assert {"post-training", "diagnostics", "calibration"} <= set(summary.sections)


def test_a_one_study_and_a_pair_output_validate(scored: dict[str, Path],
                                                tmp_path: Path) -> None:
    one = validate_compare_json(_compare_json(tmp_path, str(scored["oracle"])))
    assert isinstance(one, CompareSummary) and one.studies == ["simulated_bandit"]
    assert [row.model for row in one.leaderboard] == ["oracle"]
    pair = validate_compare_json(_compare_json(
        tmp_path, str(scored["oracle"]), str(scored["oracle-T2"]), "--pair", "oracle-T2=oracle"))
    assert isinstance(pair, list) and len(pair) == 1
    assert isinstance(pair[0], PairComparisonJson)
    assert (pair[0].post, pair[0].base) == ("oracle-T2", "oracle") and pair[0].effects


CHANGES = {
    "an old flat key": lambda d: d.update(pairs=[]),
    "another version": lambda d: d.update(schema_version=1),
    "a renamed option": lambda d: d["options"].update(n_bootstrap=d["options"].pop("n_boot")),
    "a section without text": lambda d: d["sections"]["readable"].pop("text"),
    "a score as text": lambda d: d["leaderboard"][0].update(score="0.5"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_layout_does_not_validate(change: str) -> None:
    bad = json.loads((GOLDEN / "compare-demo.json").read_text(encoding="utf-8"))
    CHANGES[change](bad)
    with pytest.raises(ValidationError):
        validate_compare_json(bad)
