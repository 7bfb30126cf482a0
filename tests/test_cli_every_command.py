"""Every command, fuzzed (issue 24): generated flag values and small hostile inputs for each
subcommand ``psych201 --help`` lists (sub-apps included) end in a known exit code, never 70.

The command tree is read from the CLI itself, so a command added later is fuzzed without editing
this file. Each option gets values of its kind: counts of every sign and size (``1e26``,
``999999999999``, ``nan``), names with path tricks, and files that are empty, binary, Latin-1,
an alias bomb, ``/etc/passwd`` or missing. Inputs never name a real model or dataset, so nothing
loads or downloads (``HF_HUB_OFFLINE=1``); the few flags that start long work on valid defaults
(``--calibrate``, ``simulate --demo`` without ``--out``, ``figures --synthetic``) are left out.
``PSYCH201_FUZZ_EXAMPLES`` sets the examples per command (4; the slow lane runs 12).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from psych201.cli import app

KNOWN_EXIT_CODES = {0, 1, 2, 3, 4}
EXAMPLES = int(os.environ.get("PSYCH201_FUZZ_EXAMPLES", "4"))

#: Flags that start long work however their other inputs look (see the module docstring).
_LEFT_OUT = {("plan", "calibrate"), ("simulate", "demo"), ("figures", "synthetic"),
             ("posttrain experiment", "retrain")}


def _leaf_commands() -> dict[str, Any]:
    """Every runnable command by its space-joined path (``data validate``)."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _leaf_commands()

_NUMBERS = st.sampled_from(["-1", "0", "1", "3", "1e26", "999999999999", "nan", "inf", "x", ""])
_WORDS = st.sampled_from(["", "x", "nope", "../../../../etc", "a=b,c", "0/2", "-", "é", "1e26",
                          "mode=qa", "temperatures=on", "=", "ORG/NAME@rev"])


def _alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _hostile_files(root: Path) -> list[str]:
    """Small hostile inputs, made once per test in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "empty.yaml": b"",
        "binary.parquet": bytes(range(256)) * 4,
        "latin1.yaml": "name: caf\xe9\nmodels: [x]\n".encode("latin-1"),
        "bomb.yaml": _alias_bomb(7).encode(),
        "list.json": b"[1, 2, 3]",
        "huge-number.jsonl": b'{"text": "<<A>>", "experiment": "e", "participant": 1, "age": '
                             + b"9" * 400 + b"}\n",
        "manifest.json": b'{"format": "psych201-run/1", "status": 5}',
    }
    for name, body in files.items():
        (root / name).write_bytes(body)
    (root / "folder").mkdir(exist_ok=True)
    (root / "folder" / "prompts.jsonl").write_bytes(b"\xff\xfe not json\n")
    return [str(root / name) for name in [*files, "folder", "missing", "missing.parquet"]] + [
        "/etc/passwd", "/dev/null", str(root)]


def _value(param: Any, files: list[str]) -> st.SearchStrategy[str]:
    if param.bare_type() in ("int", "float"):
        return st.one_of(_NUMBERS, st.integers(-3, 5).map(str))
    return st.one_of(st.sampled_from(files), _WORDS)


def _arguments(path: str, command: Any, files: list[str]) -> st.SearchStrategy[list[str]]:
    """Arguments and a random subset of options for ``command``, as argv after its path."""
    pieces: list[st.SearchStrategy[list[str]]] = []
    for param in command.params:
        name = param.name or ""
        if (path, name) in _LEFT_OUT or name in ("help", "debug", "version"):
            continue
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        is_argument = not opts
        if getattr(param, "is_flag", False) and opts:
            pieces.append(st.booleans().map(lambda on, o=opts[0]: [o] if on else []))
            continue
        value = _value(param, files)
        if is_argument:
            count = st.integers(1, 2) if getattr(param, "nargs", 1) == -1 else st.just(1)
            pieces.append(count.flatmap(lambda n, v=value: st.lists(v, min_size=n, max_size=n)))
        else:
            pieces.append(st.one_of(st.just([]), value.map(lambda v, o=opts[0]: [o, v])))
    return st.tuples(*pieces).map(lambda parts: [a for part in parts for a in part])


def test_every_command_of_the_help_is_fuzzed() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    listed = {line.split()[1] for line in result.output.splitlines()
              # a command's row starts with its name; a wrapped help line starts with spaces
              if line.startswith("│ ") and not line[2].isspace() and len(line.split()) > 2}
    top = {path.split()[0] for path in COMMANDS}
    assert {name for name in listed if not name.startswith("-")} == top
    assert {"score", "merge", "compare", "report", "plan", "run", "simulate", "data", "runs",
            "posttrain", "demo", "models", "figures"} <= top
    assert len(COMMANDS) >= 18


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_generated_flags_and_hostile_inputs_end_in_a_known_exit_code(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outputs named relatively land here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    files = _hostile_files(tmp_path / "inputs")
    runner = CliRunner()
    command = COMMANDS[path]

    # Commands that would otherwise score or train with the default model get a hostile one.
    forced = {"demo": ["--model", "nope"], "score": ["--model", "nope"],
              "posttrain train": ["--base", "nope"]}.get(path, [])

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(args=_arguments(path, command, files))
    def check(args: list[str]) -> None:
        argv = [*path.split(), *args, *forced]
        result = runner.invoke(app, argv)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            argv, repr(result.exception))
        assert "Traceback" not in result.output, (argv, result.output)
        assert result.exit_code in KNOWN_EXIT_CODES, (argv, result.exit_code, result.output)

    check()


@pytest.mark.slow
def test_every_command_with_more_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slow lane: many more examples per command (set PSYCH201_FUZZ_EXAMPLES to change)."""
    global EXAMPLES
    EXAMPLES = int(os.environ.get("PSYCH201_FUZZ_EXAMPLES_SLOW", "12"))
    try:
        for path in sorted(COMMANDS):
            case = tmp_path / path.replace(" ", "-")
            case.mkdir()
            with monkeypatch.context() as patch:
                test_generated_flags_and_hostile_inputs_end_in_a_known_exit_code(path, case, patch)
    finally:
        EXAMPLES = int(os.environ.get("PSYCH201_FUZZ_EXAMPLES", "4"))
