"""`psych201 simulate` and the bundled demo dataset it regenerates byte for byte."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from psych201.cli.simulate_cmds import register
from psych201.data.readers import discover_studies, iter_sessions
from psych201.simulate import DEMO_DIR, DEMO_STUDIES, simulate_study, to_jsonl, write_study


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command keeps typer from collapsing the app into one
        """Placeholder."""

    return app


def _run(app: typer.Typer, *args: str) -> tuple[int, str]:
    # A wide terminal keeps rich from wrapping error messages inside its box.
    result = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"}).invoke(app, list(args))
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def test_demo_regenerates_the_bundled_files_byte_for_byte(app: typer.Typer, tmp_path: Path) -> None:
    code, output = _run(app, "simulate", "--demo", "--out", str(tmp_path))
    assert code == 0, output
    bundled = sorted(p.name for p in DEMO_DIR.iterdir() if not p.name.startswith("."))
    assert bundled == sorted(f"{s.name}.jsonl" for s in DEMO_STUDIES)  # nothing stale lying about
    for name in bundled:
        assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes(), name
    code, output = _run(app, "simulate", "--demo", "--check")
    assert code == 0, output


def test_demo_check_notices_a_changed_file(app: typer.Typer, tmp_path: Path) -> None:
    assert _run(app, "simulate", "--demo", "--out", str(tmp_path))[0] == 0
    victim = tmp_path / f"{DEMO_STUDIES[0].name}.jsonl"
    victim.write_bytes(victim.read_bytes().replace(b'"age": 2', b'"age": 3', 1))
    code, output = _run(app, "simulate", "--demo", "--check", "--out", str(tmp_path))
    assert code == 1 and "out of date" in output


def test_demo_is_small_enough_to_score_on_two_cpu_cores() -> None:
    # Gemma 3 270M takes ~4.3 characters per token on these transcripts (measured: 20.8k
    # tokens for the whole demo); keep each transcript well under 3k tokens and the demo
    # well under 60k tokens.
    studies = discover_studies(DEMO_DIR)
    assert {s.name for s in studies} == {s.name for s in DEMO_STUDIES}
    total = 0
    for study in studies:
        sessions = list(iter_sessions(study.path))
        assert len(sessions) >= 10  # so the paper's test split keeps one participant per study
        for s in sessions:
            assert len(s.text) < 6_000
            assert len(s.responses) == len(s.metadata["loglik"])
            assert s.harmonised["age"] != "N/A" and s.harmonised["gender"] != "N/A"
            total += len(s.text)
    assert total < 120_000


def test_simulate_writes_the_study_it_is_asked_for(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "bandit.jsonl"
    code, output = _run(
        app, "simulate", "bandit", "-n", "4", "--trials", "12", "--seed", "9", "--out", str(out)
    )
    assert code == 0, output
    assert "4 participants, 48 responses" in output
    expected = simulate_study("bandit", n_participants=4, n_trials=12, seed=9)
    assert out.read_bytes() == to_jsonl(expected)


def test_zip_output_reads_back_through_the_data_layer(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "lexical.jsonl.zip"
    assert _run(app, "simulate", "lexical", "-n", "3", "--out", str(out))[0] == 0
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["lexical.jsonl"]
    sessions = list(iter_sessions(out))
    assert [s.participant for s in sessions] == ["1", "2", "3"]
    assert all(len(s.responses) == 40 for s in sessions)  # the task's default length
    # Same records, same bytes, twice (fixed zip timestamps).
    again = write_study(simulate_study("lexical", n_participants=3, seed=0), tmp_path / "b.zip")
    with zipfile.ZipFile(again) as zf:
        assert zf.namelist() == ["b.jsonl"]
    first = out.read_bytes()
    write_study(simulate_study("lexical", n_participants=3, seed=0), out)
    assert out.read_bytes() == first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "maze", "--out", "x.jsonl"], "unknown task 'maze'"),
        (["simulate", "bandit"], "--out"),
        (["simulate", "bandit", "--demo"], "--demo takes no KIND"),
        (["simulate", "bandit", "--check", "--out", "x.jsonl"], "only applies with --demo"),
        (["simulate", "bandit", "-n", "0", "--out", "x.jsonl"], "greater than or equal to 1"),
    ],
)
def test_bad_invocations_say_what_is_wrong(
    app: typer.Typer, args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = _run(app, *args)
    assert code == 2
    assert message in output
    assert not (tmp_path / "x.jsonl").exists()


def test_write_study_refuses_records_it_cannot_write_faithfully(tmp_path: Path) -> None:
    record = simulate_study("risky", n_participants=1, n_trials=3, seed=0)[0]
    with pytest.raises(ValueError, match="record 1: Out of range float"):
        write_study([{**record, "loglik": [float("nan")] * 3}], tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="record 2 lacks required field"):
        write_study([record, {"text": "t"}], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    assert list(tmp_path.iterdir()) == []  # no temp files left behind either
    line = to_jsonl([record]).decode()
    assert line.endswith("}\n") and json.loads(line) == record
