"""``psych201 data validate|stats|build`` on real studies (bad inputs: test_data_bad_inputs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from paths import DATA, needs_data
from psych201.cli import app

STUDIES = ("franke2024bayesian", "busch2024_stroop")

pytestmark = needs_data


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    root.mkdir()
    for study in STUDIES:
        (root / study).symlink_to(DATA / study, target_is_directory=True)
    return root


def test_validate_a_real_study_folder() -> None:
    result = CliRunner().invoke(app, ["data", "validate", str(DATA / "franke2024bayesian")])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "302 sessions, 1,208 responses" in result.output
    # The shared copies have no README/generate_prompts.py: warnings, which --strict rejects.
    assert "no README.md" in result.output
    strict = CliRunner().invoke(
        app, ["data", "validate", "--strict", str(DATA / "franke2024bayesian")]
    )
    assert strict.exit_code == 1


def test_stats_prints_a_table_and_writes_parquet(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.parquet"
    result = CliRunner().invoke(app, ["data", "stats", str(dataset), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame.set_index("study")["participants"].to_dict() == {
        "busch2024_stroop": 125,
        "franke2024bayesian": 302,
    }
    busch = frame.set_index("study").loc["busch2024_stroop"]
    assert busch["responses"] == 11040 and busch["coverage:age"] == 1.0
    assert frame.set_index("study").loc["franke2024bayesian", "single_letter_share"] == 1.0


def test_build_writes_a_loadable_dataset(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "built" / "psych201.parquet"
    result = CliRunner().invoke(app, ["data", "build", str(dataset), str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "427 sessions from 2 studies, 42 in the test split (seed 3)" in result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 427 and frame["in_eval"].sum() == 42
    assert not list(out.parent.glob("*.tmp-*"))  # the temporary file was renamed away
