"""Issue 24, rows 3-8 and 10: every input a command reads is bounded, decoded with a clear line.

Each test fails on the code before the fix: an alias bomb expanded (minutes, gigabytes, exit 70),
a study file in Latin-1 (exit 70), a 400-digit age (exit 70), ``--n-boot 999999999999`` (exit 70,
7 TiB asked), ``--benchmark /etc/passwd`` (exit 70), ``simulate -n 999999999999`` (accepted), and
``merge runs/nope`` (a misleading "bare table" message).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from psych201.bounds import BOUNDS, BoundError, check_bound, option_range
from psych201.cli import app
from psych201.study import StudyFileError, load_study
from psych201.yaml_files import MAX_YAML_NODES, YamlLimitError, load_yaml_text

runner = CliRunner()


def _study_text(params: str = "{}", model_args: str = "{}") -> str:
    return (
        "name: bomb\nout: runs/bomb\nmodels: [tiny]\n"
        "data: [{name: demo, path: demo, split: all}]\n"
        f"conditions: [{{name: raw, params: {params}}}]\n"
        f"engine: {{model_args: {model_args}}}\n"
    )


def _alias_bomb(levels: int, width: int = 9) -> str:
    """A "billion laughs" document: ``width ** levels`` leaves from ``levels * width`` aliases."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines)


@pytest.mark.parametrize("where", ["params", "model_args"])
def test_row3_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path, where: str) -> None:
    # 9**7 = 4.8 million leaves from 63 aliases: refused in milliseconds, whichever key holds it.
    bomb = "{" + _alias_bomb(7).replace("\n", ", ") + "}"
    path = tmp_path / "study.yaml"
    path.write_text(_study_text(**{where: bomb}))
    started = time.perf_counter()
    with pytest.raises(StudyFileError, match=r"study.yaml: .*alias"):
        load_study(path)
    assert time.perf_counter() - started < 5
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    assert "alias" in result.output and "Traceback" not in result.output


def test_row3_yaml_limits_count_aliases_depth_size_and_recursion() -> None:
    assert load_yaml_text(_alias_bomb(3)) is not None  # 729 leaves: a fine use of anchors
    with pytest.raises(YamlLimitError, match="expand to more than"):
        load_yaml_text(_alias_bomb(6))  # 531,441 leaves from 54 aliases
    assert MAX_YAML_NODES < 9**6
    with pytest.raises(YamlLimitError, match="aliases"):
        load_yaml_text("a: &a 1\nb: [" + ", ".join(["*a"] * 500) + "]")
    with pytest.raises(YamlLimitError, match="deeper"):
        load_yaml_text("[" * 200 + "]" * 200)
    with pytest.raises(YamlLimitError, match="recursive"):
        load_yaml_text("a: &a [*a]")
    with pytest.raises(YamlLimitError, match="larger"):
        load_yaml_text("x: " + "y" * (3 * 1024 * 1024))


def test_row5_a_study_file_that_is_not_utf8_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(_study_text().replace("bomb", "caf\xe9").encode("latin-1"))
    with pytest.raises(StudyFileError, match=r"study.yaml:1: the study file is not UTF-8"):
        load_study(path)
    for command in (["plan", str(path)], ["run", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "not UTF-8" in result.output and "Traceback" not in result.output


def test_row4_a_400_digit_age_is_a_per_line_error_exit_1(tmp_path: Path) -> None:
    good = {"text": "Pick <<A>> or <<B>>.", "experiment": "e", "participant": 1}
    huge = '{"text": "Pick <<A>>.", "experiment": "e", "participant": 2, "age": ' + "9" * 400 + "}"
    (tmp_path / "prompts.jsonl").write_text(json.dumps(good) + "\n" + huge + "\n")
    for command in ("validate", "stats"):
        result = runner.invoke(app, ["data", command, str(tmp_path)])
        assert result.exit_code == 1, result.output
        assert "prompts.jsonl:2" in result.output and "400 digits" in result.output
        assert "internal error" not in result.output


def _bounded_by(command: Any, name: str, bound: str) -> None:
    param = next(p for p in command.params if p.name == name)
    assert (param.min, param.max) == (BOUNDS[bound].low, BOUNDS[bound].high), name


def test_row6_compare_n_boot_is_bounded_exit_2(tmp_path: Path) -> None:
    run = tmp_path / "run"
    scored = runner.invoke(app, ["score", "--data", "demo", "--engine", "oracle", "--split",
                                 "all", "--out", str(run), "-q"])
    assert scored.exit_code == 0, scored.output
    group: Any = typer.main.get_command(app)
    for name in ("compare", "report"):
        _bounded_by(group.commands[name], "n_boot", "n_boot")
        _bounded_by(group.commands[name], "seed", "seed")
    result = runner.invoke(app, ["compare", str(run), "--n-boot", "999999999999"])
    assert result.exit_code == 2, result.output
    assert "--n-boot" in result.output and "internal error" not in result.output


def test_row7_plan_benchmark_that_is_not_a_benchmark_json_names_the_file(tmp_path: Path) -> None:
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    shapes = {"list.json": "[1, 2]", "wrong.json": '{"long": {"packed": {"flops_per_s": "x"}}}',
              "huge.json": '{"mix": {"packed": {"flops_per_s": ' + "9" * 400 + "}}}",
              "latin1.json": b'{"\xe9": 1}'}
    files = [text]
    for name, body in shapes.items():
        path = tmp_path / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        files.append(path)
    for path in files:
        result = runner.invoke(app, ["plan", "--data", "demo", "--model", "gemma-3-270m",
                                     "--benchmark", str(path)])
        assert result.exit_code == 2, (path, result.output)
        assert f"{path}: " in result.output.replace("\n", "")
        assert "internal error" not in result.output


def test_row8_simulate_participants_and_trials_are_bounded_exit_2(tmp_path: Path) -> None:
    group: Any = typer.main.get_command(app)
    simulate = group.commands["simulate"]
    _bounded_by(simulate, "participants", "participants")
    _bounded_by(simulate, "trials", "trials")
    _bounded_by(simulate, "seed", "seed")
    out = tmp_path / "sim.jsonl"
    for flags in (["-n", "999999999999"], ["-t", "999999999999"], ["--seed", str(2**64)]):
        result = runner.invoke(app, ["simulate", "bandit", *flags, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert not out.exists()


def test_bounds_are_one_table_shared_by_flags_and_records() -> None:
    assert option_range("n_boot") == {"min": 100, "max": BOUNDS["n_boot"].high}
    check_bound("batch_tokens", 8192)
    for name, value, message in (
        ("batch_tokens", 10**26, "at most"),
        ("seed", -1, "at least"),
        ("seed", 1e29, "whole number"),
        ("limit", True, "whole number"),
    ):
        with pytest.raises(BoundError, match=message):
            check_bound(name, value)


def test_score_numeric_flags_are_bounded_before_anything_loads(tmp_path: Path) -> None:
    for flag, value in (("--batch-tokens", "100000000000"), ("--seed", str(2**40)),
                        ("--limit", str(10**12)), ("--part-size", str(10**9))):
        result = runner.invoke(app, ["score", "--data", "demo", "--engine", "oracle",
                                     "--out", str(tmp_path / "r"), flag, value])
        assert result.exit_code == 2, result.output
        assert f"{flag} must be at most" in result.output
        assert not (tmp_path / "r").exists()


def test_row10_merge_of_a_missing_source_says_no_such_run_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert "no such run directory" in result.output
    assert "bare table" not in result.output


def test_crashes_the_every_command_fuzz_found_are_one_line_exit_2(tmp_path: Path) -> None:
    # tests/test_cli_every_command.py found these on the code before issue 24 (each exit 70).
    binary = tmp_path / "card.json"
    binary.write_bytes(bytes(range(256)))
    (tmp_path / "prompts.jsonl").write_text('{"text": "<<A>>", "experiment": "e", '
                                            '"participant": 1}\n')
    plan = tmp_path / "plan.yaml"
    plan.write_text("")
    for args in (["data", "validate", str(tmp_path), "--max-line-mb", "inf"],
                 ["data", "stats", str(tmp_path), "--max-line-mb", "nan"],
                 ["posttrain", "show", str(binary)],
                 ["posttrain", "experiment", str(plan), "--threads", "999999999999"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "internal error" not in result.output
