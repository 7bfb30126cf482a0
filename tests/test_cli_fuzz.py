"""Fuzzing the CLI: no command prints a traceback without ``--debug``, every exit code is a known
one (issue 14).

``score`` gets random flag values with a loader that checks what the real engine would refuse
(window, condition) and never loads anything; ``merge``, ``compare`` and ``report`` get run
directories corrupted at random (truncated or garbage manifest, garbage parts, missing files).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import psych201.pipeline as pipeline
from constant_setup import constant_setup
from paths import DATA
from psych201.cli import app
from psych201.errors import UsageError
from psych201.prompts.conditions import CONDITION_NAMES, make_condition
from psych201.results.shards import Shard

STUDY = DATA / "guenther2022relational"
KNOWN_EXIT_CODES = {0, 1, 2, 3, 4}

runner = CliRunner()


class _LoaderReached(UsageError):
    """The fake loader's way out: the configuration passed every check before the model."""


def _checking_loader(config: pipeline.ScoreConfig) -> pipeline.ScoringSetup:
    # What the real engine would refuse only after loading the weights must never get here.
    window = pipeline.window_config(config)
    if window.max_tokens is not None:
        overlap = window.overlap if window.overlap is not None else window.max_tokens // 2
        room = window.max_tokens - 2  # a BOS and one more leading special token at most
        assert room >= 2 and overlap <= room - 2, (window, "leaves no room for targets")
    if config.condition != "chat-template":
        make_condition(config.condition, seed=config.seed, **dict(config.condition_args))
    raise _LoaderReached("loader reached")


def _assert_clean(args: Sequence[str], output: str, exit_code: int) -> None:
    assert "Traceback" not in output, (args, output)
    assert exit_code in KNOWN_EXIT_CODES, (args, exit_code, output)


_INTS = st.one_of(st.integers(-10, 70), st.sampled_from(["x", "", "1.5", "9" * 30]))
_FLAGS = {
    "--max-tokens": _INTS,
    "--window-overlap": _INTS,
    "--seed": _INTS,
    "--limit": _INTS,
    "--part-size": _INTS,
    "--batch-tokens": _INTS,
    "--condition": st.sampled_from([*CONDITION_NAMES, "bogus", ""]),
    "--condition-args": st.sampled_from(["mode=qa", "mode=nope", "x", "paper=3", "max_chars=0"]),
    "--split": st.sampled_from(["test", "train", "all", "dev"]),
    "--alignment": st.sampled_from(["offsets", "pieces", "paper", "tokens"]),
    "--dtype": st.sampled_from(["float32", "bfloat16", "float16", "int4"]),
    "--shard": st.sampled_from(["0/2", "1/2", "2/2", "-1/2", "a/b", "0/0"]),
    "--device": st.sampled_from(["cpu", "gpu", "cuda:x", "mps:0"]),
    "--on-error": st.sampled_from(["fail", "skip", "ignore"]),
    "--studies": st.sampled_from(["guenther2022relational", "nosuch", ","]),
    "--model-args": st.sampled_from(["revision=main", "dtype=float32", "=", "cache_dir"]),
}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    flags=st.dictionaries(st.sampled_from(sorted(_FLAGS)), st.none(), min_size=1, max_size=4)
    .flatmap(lambda keys: st.fixed_dictionaries({k: _FLAGS[k] for k in keys}))
)
def test_score_flags_never_crash_or_load_an_invalid_configuration(
    flags: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "load_hf_setup", _checking_loader)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["score", "--model", "m", "--data", str(STUDY), "--out", f"{tmp}/run", "-q"]
        for flag, value in flags.items():
            args += [flag, str(value)]
        result = runner.invoke(app, args)
    _assert_clean(args, result.output, result.exit_code)


# -- corrupted run directories -------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two shards of one small run, each a complete run directory."""
    root = tmp_path_factory.mktemp("runs")
    config = pipeline.ScoreConfig(data=STUDY, out=root, split="all", limit=4, part_size=1)
    dirs = []
    for i in range(2):
        out = root / f"shard{i}"
        pipeline.score_run(replace(config, out=out, shard=Shard(i, 2)), setup=constant_setup())
        dirs.append(out)
    return dirs[0], dirs[1]


def _corrupt(run: Path, how: str, data: st.DataObject) -> None:
    manifest = run / "manifest.json"
    parts = sorted((run / "parts").glob("*.parquet"))
    table = run / "responses.parquet"
    if how == "truncate-manifest":
        text = manifest.read_bytes()
        manifest.write_bytes(text[: data.draw(st.integers(0, len(text) - 1))])
    elif how == "garbage-manifest":
        manifest.write_bytes(data.draw(st.binary(max_size=64)))
    elif how == "retyped-manifest":
        body = json.loads(manifest.read_text())
        key = data.draw(st.sampled_from(sorted(body)))
        body[key] = data.draw(st.sampled_from([None, 5, "x", [], {}]))
        manifest.write_text(json.dumps(body))
    elif how == "garbage-part" and parts:
        data.draw(st.sampled_from(parts)).write_bytes(data.draw(st.binary(max_size=64)))
    elif how == "truncate-table":
        raw = table.read_bytes()
        table.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif how == "missing":
        victim = data.draw(st.sampled_from(["manifest.json", "responses.parquet", "parts"]))
        path = run / victim
        shutil.rmtree(path) if path.is_dir() else path.unlink()


_CORRUPTIONS = [
    "truncate-manifest",
    "garbage-manifest",
    "retyped-manifest",
    "garbage-part",
    "truncate-table",
    "missing",
]


@contextlib.contextmanager
def _copies(runs: tuple[Path, Path]) -> Iterator[tuple[Path, Path, Path]]:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        shutil.copytree(runs[0], a)
        shutil.copytree(runs[1], b)
        yield a, b, Path(tmp)


@pytest.mark.slow  # over 40 s on the shared 2-core machine
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    how=st.sampled_from(_CORRUPTIONS),
    command=st.sampled_from(["merge", "compare", "report"]),
    data=st.data(),
)
def test_corrupted_run_directories_give_one_line_and_a_known_exit_code(
    runs: tuple[Path, Path], how: str, command: str, data: st.DataObject
) -> None:
    with _copies(runs) as (a, b, tmp):
        _corrupt(data.draw(st.sampled_from([a, b])), how, data)
        args = {
            "merge": ["merge", str(a), str(b), "--out", str(tmp / "merged")],
            "compare": ["compare", str(a), str(b)],
            "report": ["report", str(a), "-o", str(tmp / "report.html")],
        }[command]
        result = runner.invoke(app, args)
    _assert_clean(args, result.output, result.exit_code)


def test_a_retyped_manifest_field_is_named_not_a_crash(runs: tuple[Path, Path]) -> None:
    # Found by the fuzz test above: merge indexed into a shard retyped to 5 (exit 70).
    from psych201.results.manifest import _FIELD_TYPES, load_manifest
    from psych201.results.writer import ResultsError

    with _copies(runs) as (a, b, tmp):
        body = json.loads((a / "manifest.json").read_text())
        for key, types in _FIELD_TYPES.items():
            for bad in (5, "x", [], {}, None, {"index": "0", "count": 2}):
                if isinstance(bad, types) and not (key == "shard" and isinstance(bad, dict)):
                    continue
                if key == "shard" and bad == {}:
                    continue
                (a / "manifest.json").write_text(json.dumps({**body, key: bad}))
                with pytest.raises(ResultsError, match=f"damaged manifest: {key} "):
                    load_manifest(a)
        (a / "manifest.json").write_text(json.dumps({**body, "table": {"rows": "128"}}))
        with pytest.raises(ResultsError, match=r"damaged manifest: table\.rows is str"):
            load_manifest(a)
        (a / "manifest.json").write_text(json.dumps({**body, "table": "x"}))
        verify = runner.invoke(app, ["runs", "verify", str(a)])
        _assert_clean(["runs", "verify"], verify.output, verify.exit_code)
        assert "table is str" in verify.output
        (a / "manifest.json").write_text(json.dumps({**body, "shard": 5}))
        args = ["merge", str(a), str(b), "--out", str(tmp / "merged")]
        result = runner.invoke(app, args)
    _assert_clean(args, result.output, result.exit_code)
    assert "damaged manifest: shard is int" in result.output
