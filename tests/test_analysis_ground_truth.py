"""Issue #12's analyses end to end on simulated participants, whose generating model is known.

The oracle engine scores with the generating model's choice probabilities p; with
``--engine-args temperature=T`` it scores with p^(1/T) renormalised over the offered options. So
the oracle at T = 0.5 is over-confident by exactly a temperature of 2, and the oracle at T = 3 is
a mis-specified (too flat) model of the crowd. Everything goes through the CLI: simulate, score,
compare --json and report, as a user would run it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli_helpers import cli_output


def _simulate(path: Path, *args: str) -> Path:
    code, output = cli_output(*["simulate", "risky", *args, "--out", str(path)])
    assert code == 0, output
    return path


def _oracle(data: Path, out: Path, temperature: float | None = None) -> Path:
    extra = [] if temperature is None else ["--engine-args", f"temperature={temperature:g}"]
    code, output = cli_output("score", "--engine", "oracle", "--data", str(data),
                              "--out", str(out), "--split", "all", "-q", *extra)
    assert code == 0, output
    return out


def _by_model(rows: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["model"]): r for r in rows}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("calibration")
    data = _simulate(root / "risky.jsonl", "-n", "60", "--seed", "11")
    runs = [_oracle(data, root / "exact"), _oracle(data, root / "sharp", 0.5)]
    out = root / "compare.json"
    code, output = cli_output(*["compare", *map(str, runs), "--n-boot", "200", "--json", str(out)])
    assert code == 0, output
    return dict(json.loads(out.read_text()))


def test_calibration_recovers_the_over_confident_oracles_temperature(
    calibration: dict[str, object],
) -> None:
    section = calibration["sections"]["calibration"]  # type: ignore[index]
    models = _by_model(section["tables"]["per_model"])
    assert models["oracle-T0.5"]["temperature"] == pytest.approx(2.0, rel=0.10)
    assert models["oracle"]["temperature"] == pytest.approx(1.0, rel=0.10)
    exact_nll = float(models["oracle"]["nll"])
    assert float(models["oracle-T0.5"]["nll"]) > exact_nll * 1.05  # it did lose before
    assert models["oracle-T0.5"]["nll_calibrated"] == pytest.approx(exact_nll, rel=0.02)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("shared")
    data = _simulate(root / "shared.jsonl", "-n", "80", "--shared-trials", "--seed", "5")
    return data, [_oracle(data, root / "exact"), _oracle(data, root / "flat", 3.0)]


def test_population_fit_puts_the_oracle_at_the_floor_and_a_flat_model_above(
    shared: tuple[Path, list[Path]], tmp_path: Path,
) -> None:
    data, runs = shared
    out = tmp_path / "compare.json"
    code, output = cli_output(*["compare", *map(str, runs), "--data", str(data), "--n-boot", "300",
                           "--json", str(out)])
    assert code == 0, output
    section = json.loads(out.read_text())["sections"]["population-fit"]
    rows = _by_model(section["tables"]["per_study"])
    exact, flat = rows["oracle"], rows["oracle-T3"]
    assert exact["excess_ci_low"] <= 0.0 <= exact["excess_ci_high"]  # at the floor
    assert not exact["above_floor"]
    assert flat["excess_ci_low"] > 0.0 and flat["above_floor"]  # its CI excludes the floor
    assert flat["jsd"] > flat["jsd_floor"]


def test_compare_json_and_the_report_show_the_same_sections(
    shared: tuple[Path, list[Path]], tmp_path: Path,
) -> None:
    data, runs = shared
    code, output = cli_output(*["compare", *map(str, runs), "--data", str(data), "--n-boot", "100",
                           "--format", "json"])
    assert code == 0, output
    sections = list(json.loads(output)["sections"])
    page = tmp_path / "report.html"
    code, output = cli_output(*["report", *map(str, runs), "--data", str(data), "--n-boot", "100",
                           "-o", str(page)])
    assert code == 0, output
    anchors = re.findall(r'<section class="analysis" id="([^"]+)">', page.read_text())
    assert anchors == sections
    assert {"calibration", "population-fit"} <= set(anchors)


def test_without_the_transcripts_the_population_fit_says_what_it_needs(
    shared: tuple[Path, list[Path]],
) -> None:
    _, runs = shared
    code, output = cli_output(*["compare", *map(str, runs), "--n-boot", "100", "--format", "json"])
    assert code == 0, output
    payload = json.loads(output)
    assert "population-fit" not in payload["sections"]
    assert any("population-level fit" in note and "--data" in note for note in payload["notes"])
