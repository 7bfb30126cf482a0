"""Every expected failure of the CLI is one line and a distinct exit code (issue 14).

Invalid data 1, usage 2, the operating system refused 3, failed sessions 4, a bug 70 (with
"please report" and the traceback only under ``--debug``), Ctrl-C 130. Bad configurations are
refused before any model loads: the loader is replaced by one that records the call and fails.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import psych201.pipeline as pipeline
from paths import DATA
from psych201.cli import app
from psych201.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID_DATA,
    EXIT_IO,
    EXIT_USAGE,
)

STUDY = DATA / "guenther2022relational"

runner = CliRunner()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Model loads attempted during the test (each one fails: none should happen)."""
    calls: list[str] = []

    def refuse(config: pipeline.ScoreConfig) -> pipeline.ScoringSetup:
        calls.append(config.model)
        raise AssertionError("the model was loaded although the configuration is invalid")

    monkeypatch.setattr(pipeline, "load_hf_setup", refuse)
    return calls


def _one_line_error(output: str) -> str:
    """The error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def _score(out: Path, *extra: str, data: Path = STUDY) -> list[str]:
    return [
        "score", "--model", "any-model", "--data", str(data), "--out", str(out),
        "--split", "all", "--limit", "2", "-q", *extra,
    ]  # fmt: skip


def _manifest(run: Path, **spec: object) -> None:
    run.mkdir(parents=True)
    body = {"format": "psych201-run/1", "config_hash": "0123456789abcdef", "spec": spec,
            "shard": None, "status": "complete"}  # fmt: skip
    (run / "manifest.json").write_text(json.dumps(body))


BAD_SCORE_OPTIONS = [
    (["--max-tokens", "2"], "--max-tokens must be at least 8"),
    (["--window-overlap", "-5"], "--window-overlap must be 0 or more"),
    (["--max-tokens", "16", "--window-overlap", "16"], "leaves no room in a window"),
    (["--seed", "-1"], "--seed must be 0 or more"),
    (["--condition", "bogus"], "--condition must be one of raw, no-persona"),
    (["--device", "gpu"], "--device must be cpu, cuda, cuda:N or mps"),
    (["--condition", "persona", "--condition-args", "mode=telepathy"], "telepathy"),
]


@pytest.mark.parametrize(
    ("extra", "message"), BAD_SCORE_OPTIONS, ids=[m for _, m in BAD_SCORE_OPTIONS]
)
def test_bad_score_options_fail_in_one_line_before_the_model_loads(
    extra: list[str], message: str, tmp_path: Path, loads: list[str]
) -> None:
    result = runner.invoke(app, _score(tmp_path / "run", *extra))
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in _one_line_error(result.output)
    assert loads == []
    assert not (tmp_path / "run").exists()


def test_an_output_path_that_cannot_be_a_directory_is_refused_first(
    tmp_path: Path, loads: list[str]
) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")
    result = runner.invoke(app, _score(file))
    assert result.exit_code == EXIT_USAGE
    assert "exists and is not a directory" in _one_line_error(result.output)
    result = runner.invoke(app, _score(file / "run"))
    assert result.exit_code == EXIT_USAGE
    assert f"{file} is a file, not a directory" in _one_line_error(result.output)
    assert loads == []


def test_an_unwritable_output_is_an_os_error_before_the_model_loads(
    tmp_path: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root, chmod cannot make a folder unwritable; the probe meets what a read-only mount says.
    def read_only(*_args: object, **_kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(pipeline.config.tempfile, "TemporaryFile", read_only)
    result = runner.invoke(app, _score(tmp_path / "run"))
    assert result.exit_code == EXIT_IO, result.output
    line = _one_line_error(result.output)
    assert "cannot write in" in line and "Read-only file system" in line
    assert loads == []


def test_a_run_directory_of_another_configuration_is_refused_before_the_model_loads(
    tmp_path: Path, loads: list[str]
) -> None:
    run = tmp_path / "run"
    _manifest(run, seed=5, split="all", condition="raw", alignment="offsets", dtype="float32")
    result = runner.invoke(app, _score(run))
    assert result.exit_code == EXIT_USAGE, result.output
    line = _one_line_error(result.output)
    assert "a different configuration" in line and "seed: 5 -> 0" in line
    assert loads == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_cuda_without_cuda_is_refused_before_the_data_is_read(
    tmp_path: Path, loads: list[str]
) -> None:
    result = runner.invoke(app, _score(tmp_path / "run", "--device", "cuda"))
    assert result.exit_code == EXIT_USAGE
    assert "this torch build has no CUDA" in _one_line_error(result.output)
    assert loads == []


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_an_engine_that_is_not_installed_is_named(tmp_path: Path, loads: list[str]) -> None:
    result = runner.invoke(app, _score(tmp_path / "run", "--engine", "vllm"))
    assert result.exit_code == EXIT_USAGE
    assert "--engine vllm needs the vllm package" in _one_line_error(result.output)
    assert loads == []


def test_an_unknown_packing_choice_is_refused_before_the_data_or_model(
    tmp_path: Path, loads: list[str]
) -> None:
    result = runner.invoke(app, _score(tmp_path / "run", "--engine-args", "packing=maybe"))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "packing=maybe: choose one of auto, on, off" in _one_line_error(result.output)
    assert loads == [] and not (tmp_path / "run").exists()


def test_a_condition_nobody_qualifies_for_says_why_instead_of_scoring_nothing(
    tmp_path: Path, loads: list[str]
) -> None:
    out = tmp_path / "run"
    args = _score(out, "--studies", "franke2024bayesian", "--condition", "persona", data=DATA)
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output
    line = " ".join(_one_line_error(result.output).split())
    assert "no participant of the selected studies (franke2024bayesian) has metadata" in line
    assert "persona needs it" in line
    assert loads == [] and not out.exists()


def test_empty_data_is_an_error_in_score(tmp_path: Path, loads: list[str]) -> None:
    study = tmp_path / "data" / "empty"
    study.mkdir(parents=True)
    (study / "prompts.jsonl").write_text("\n\n")
    result = runner.invoke(app, _score(tmp_path / "run", data=tmp_path / "data"))
    assert result.exit_code == EXIT_INVALID_DATA, result.output
    line = _one_line_error(result.output)
    assert f"{study / 'prompts.jsonl'}: no participants in this file" in line
    assert loads == []


def test_demo_limit_zero_is_a_usage_error(tmp_path: Path, loads: list[str]) -> None:
    result = runner.invoke(app, ["demo", "--limit", "0", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == EXIT_USAGE
    assert "--limit must be at least 1" in _one_line_error(result.output)
    assert loads == []


def test_small_usage_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "bandit", "-n", "2", "--out", str(tmp_path / "y.csv")])
    assert result.exit_code == EXIT_USAGE and not (tmp_path / "y.csv").exists()
    assert "written as .jsonl or .zip" in " ".join(result.output.split())
    result = runner.invoke(app, ["models", "--type", "foo"])
    assert result.exit_code == EXIT_USAGE
    assert "--type must be one of base, " in _one_line_error(result.output)


def test_version_help_alias_and_documented_choices() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("psych201 ")
    short = runner.invoke(app, ["score", "-h"])
    assert short.exit_code == 0 and short.output == runner.invoke(app, ["score", "--help"]).output
    text = " ".join(short.output.split())
    assert "no-persona" in text and "float16" in text


def test_every_output_flag_takes_o_and_out() -> None:
    for command in (["score"], ["merge"], ["demo"], ["report"], ["figures"], ["data", "stats"],
                    ["simulate"]):  # fmt: skip
        text = runner.invoke(app, [*command, "--help"]).output
        assert "--out" in text and "-o" in text, command


def test_an_unexpected_exception_is_an_internal_error_with_a_report_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_args: object, **_kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr("psych201.data.stats.study_stats", bug)
    result = runner.invoke(app, ["data", "stats", str(STUDY)])
    assert result.exit_code == EXIT_INTERNAL
    line = _one_line_error(result.output)
    assert "internal error" in line and "please report it" in line and "--debug" in line
    debug = runner.invoke(app, ["--debug", "data", "stats", str(STUDY)])
    assert debug.exit_code == EXIT_INTERNAL and "Traceback" in debug.output


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("psych201.data.stats.study_stats", interrupted)
    result = runner.invoke(app, ["data", "stats", str(STUDY)])
    assert result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in _one_line_error(result.output)


def _main(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from psych201.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_main_maps_os_errors_to_exit_3_in_one_line(tmp_path: Path) -> None:
    study = tmp_path / "loop"
    study.mkdir()
    (study / "prompts.jsonl").symlink_to("prompts.jsonl")
    started = time.perf_counter()
    proc = _main("score", "--model", "any-model", "--data", str(study), "--out", "run", "-q",
                 cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_IO, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{study / 'prompts.jsonl'}: Too many levels of symbolic links" in proc.stderr
    assert time.perf_counter() - started < 60  # no model was loaded
    proc = _main("data", "build", str(STUDY), str(tmp_path), cwd=tmp_path)  # a directory
    assert proc.returncode == EXIT_IO, proc.stderr
    assert "Traceback" not in proc.stderr and f"cannot write {tmp_path}" in proc.stderr


def test_main_exits_2_on_usage_errors_and_1_on_invalid_data(tmp_path: Path) -> None:
    proc = _main("score", "--data", str(STUDY), "--out", "run", "--max-tokens", "2", cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "<<A>>", "experiment": "e", "participant": ' + "7" * 5000 + "}\n")
    proc = _main("data", "validate", str(bad), cwd=tmp_path)
    assert proc.returncode == EXIT_INVALID_DATA and "Traceback" not in proc.stderr
    assert "a number too long to read" in proc.stderr


def test_messages_show_plain_numbers_not_numpy_reprs() -> None:
    import pandas as pd

    from psych201.analysis.tables import TableError, validate_responses
    from psych201.results.schema import RESPONSE_SCHEMA

    row = {name: 0 for name in RESPONSE_SCHEMA.names}
    row.update(model="m", condition="raw", study="s", experiment="e", participant="p", line=15,
               response_text="A", n_tokens=1, nll=1.0)  # fmt: skip
    frame = pd.DataFrame([row, row])
    with pytest.raises(TableError) as info:
        validate_responses(frame)
    assert "line=15" in str(info.value) and "np." not in str(info.value)


def test_score_ends_with_a_study_table_and_a_strict_summary_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from constant_setup import constant_setup
    from psych201.results.io import read_responses
    from psych201.results.summary import StudyLine, write_summary

    monkeypatch.setattr(pipeline, "load_hf_setup", lambda config: constant_setup())
    out = tmp_path / "run"
    studies = "guenther2022relational,frey2017lotteries"
    result = runner.invoke(app, _score(out, "--studies", studies, data=DATA))
    assert result.exit_code == 0, result.output
    assert "per response" in result.output and "per token" in result.output

    def no_nan(name: str) -> None:
        raise AssertionError(f"{name} in strict JSON")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=no_nan)
    lines = {line["study"]: line for line in summary["studies"]}
    assert sorted(lines) == ["all", "frey2017lotteries", "guenther2022relational"]
    table = read_responses(out)
    assert lines["all"]["responses"] == len(table)
    frey = table[table["study"] == "frey2017lotteries"]
    assert lines["frey2017lotteries"]["participants"] == 2
    assert lines["frey2017lotteries"]["nll_per_response"] == pytest.approx(frey["nll"].mean())
    per_token = table["nll"].sum() / table["n_tokens"].sum()
    assert lines["all"]["nll_per_token"] == pytest.approx(per_token)
    # An undefined mean is null, never NaN.
    write_summary(out, [StudyLine("s", 1, 0, float("nan"), None)])
    assert json.loads((out / "summary.json").read_text())["studies"][0]["nll_per_response"] is None
