"""`psych201 score` end to end on real sessions with a tiny random model (real HF engine).

Covers the issue's acceptance points for the pipeline: the table and manifest, resume after
SIGKILL (a real subprocess), rerunning a finished run scores nothing, another configuration is
refused, shards merge to the unsharded table, and bad input is reported with file and line while
finished work stays saved.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cli_helpers import invoke as _score
from paths import DATA, needs_data
from psych201.data.split import iter_split
from psych201.pipeline import (
    ScoreConfig,
    ScoringSetup,
    SessionScoringError,
    build_setup,
    load_hf_setup,
    score_run,
)
from psych201.prompts.records import Prompt
from psych201.results import RESPONSE_SCHEMA, RunSpec, read_manifest, read_responses
from psych201.results.schema import ADDED_COLUMNS
from psych201.results.verify import verify_run
from psych201.results.writer import part_paths, part_sessions, table_record
from psych201.scoring.engine import TEMPERATURE_GRID

# Short sessions (about 1k tokens each): a discrete-choice study and a free-text one whose
# responses are ten comma-separated words.
STUDIES = ("franke2024bayesian", "guenther2023associations_individual")
LIMIT = 6

pytestmark = needs_data


def _args(tiny_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "score",
        "--model", str(tiny_dir),
        "--data", str(DATA),
        "--out", str(out),
        "--studies", ",".join(STUDIES),
        "--limit", str(LIMIT),
        "--quiet",
        *extra,
    ]  # fmt: skip


def _config(tiny_dir: Path, out: Path, **changes: Any) -> ScoreConfig:
    config = ScoreConfig(data=DATA, out=out, model=str(tiny_dir), studies=STUDIES, limit=LIMIT)
    return replace(config, **changes)


@pytest.fixture(scope="module")
def reference(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (CLI, in-process), shared read-only by the tests below.

    One participant per part, as in the SIGKILL test: each session is then scored alone in every
    run, so a resumed run must reproduce it bit for bit.
    """
    out = tmp_path_factory.mktemp("runs") / "reference"
    result = _score(_args(tiny_dir, out, "--part-size", "1"))
    assert result.exit_code == 0, result.output
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame, *, atol: float = 0.0) -> None:
    """Row for row: keys, texts and token counts identical; nll/entropy within ``atol`` nats."""
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    floats = ["nll", "entropy"]
    float_lists = ["nll_temperature", "offered_logprobs"]
    others = [c for c in a.columns if c not in floats + float_lists]
    pd.testing.assert_frame_equal(
        a[others].reset_index(drop=True), b[others].reset_index(drop=True), check_exact=True
    )
    for column in floats:
        diff = (a[column].to_numpy() - b[column].to_numpy()).__abs__().max()
        assert diff <= atol, f"{column} differs by up to {diff}"
    for column in float_lists:
        for x, y in zip(a[column], b[column], strict=True):
            assert (x is None) == (y is None), column
            if x is not None:
                np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=column)


def test_table_matches_the_sessions_and_manifest_describes_the_run(
    reference: Path, tiny_dir: Path
) -> None:
    table = read_responses(reference)
    assert list(table.columns) == RESPONSE_SCHEMA.names
    expected = []
    for study in STUDIES:
        sessions = list(iter_split(DATA / study, "test", seed=0))[:LIMIT]
        for s in sessions:
            expected += [(study, s.line, r.index, r.text) for r in s.responses]
    got = list(zip(table.study, table.line, table.response_index, table.response_text, strict=True))
    assert got == expected  # every response once, in file order, with its own text
    assert table.model.unique().tolist() == ["tiny-llama"]
    assert table.condition.unique().tolist() == ["raw"]
    assert (table.nll > 0).all() and table.nll.map(math.isfinite).all()
    one_token = table.n_tokens == 1
    assert table.top1_correct[one_token].notna().all()
    assert table.top1_correct[~one_token].isna().all()
    assert (table.n_tokens[table.study == "guenther2023associations_individual"] > 5).all()
    assert not table.truncated.any()  # ~1k-token sessions fit the 4096-token context

    manifest = read_manifest(reference)
    spec = RunSpec(**{**manifest["spec"], "studies": tuple(manifest["spec"]["studies"])})
    assert manifest["config_hash"] == spec.config_hash()
    assert manifest["status"] == "complete"
    assert manifest["model"]["id"] == "tiny-llama"
    assert len(manifest["model"]["file_sha256"]) == 64
    assert manifest["engine"]["name"] == "hf"
    assert manifest["engine"]["versions"]["torch"]
    assert manifest["tokenizer"]["class"] and manifest["tokenizer"]["vocab_size"] > 100
    assert len(manifest["tokenizer"]["sha256"]) == 64
    assert (manifest["alignment"], manifest["dtype"], manifest["seed"]) == ("offsets", "float32", 0)
    assert set(manifest["data"]["studies"]) == set(STUDIES)
    assert manifest["counts"]["sessions"] == 2 * LIMIT
    assert manifest["counts"]["responses"] == len(table)
    assert manifest["invocations"][0]["versions"]["transformers"]


def test_rows_equal_direct_scoring_of_the_same_prompts(reference: Path, tiny_dir: Path) -> None:
    """The pipeline's rows are the session scorer's span scores, paired to the right response."""
    setup = load_hf_setup(_config(tiny_dir, reference))
    session = list(iter_split(DATA / STUDIES[1], "test", seed=0))[2]
    prompt = Prompt(text=session.text, spans=session.responses, condition="raw")
    (direct,) = setup.scorer.score([prompt])
    table = read_responses(reference)
    rows = table[(table.study == session.study) & (table.line == session.line)]
    assert rows.response_index.tolist() == [s.index for s in direct]
    assert rows.nll.tolist() == pytest.approx([s.nll for s in direct], abs=1e-6)
    assert rows.context_tokens.tolist() == [s.context_tokens for s in direct]


class _CountingScorer:
    """Wraps the real scorer; counts prompts and can fail on chosen session texts."""

    def __init__(self, inner: Any, fail_on: Sequence[str] = ()) -> None:
        self.inner = inner
        self.fail_on = set(fail_on)
        self.prompts = 0

    def score(self, prompts: Sequence[Prompt]) -> Any:
        self.prompts += len(prompts)
        if any(p.text in self.fail_on for p in prompts):
            raise ValueError("planted failure")
        return self.inner.score(prompts)


def _counting_setup(tiny_dir: Path, out: Path, fail_on: Sequence[str] = ()) -> ScoringSetup:
    real = load_hf_setup(_config(tiny_dir, out))
    return replace(real, scorer=_CountingScorer(real.scorer, fail_on))


def test_rerunning_a_finished_run_scores_nothing(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    run = _copy(reference, tmp_path)
    before = {p.name: p.read_bytes() for p in [*part_paths(run), run / "responses.parquet"]}
    setup = _counting_setup(tiny_dir, run)
    summary = score_run(_config(tiny_dir, run), setup=setup)
    assert setup.scorer.prompts == 0  # type: ignore[attr-defined]
    assert (summary.scored_now, summary.already_done) == (0, 2 * LIMIT)
    after = {p.name: p.read_bytes() for p in [*part_paths(run), run / "responses.parquet"]}
    assert after == before
    assert read_manifest(run)["invocations"][-1]["scored_sessions"] == 0

    # Killed after the last part but before the final table: the rerun only combines the parts.
    (run / "responses.parquet").unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    summary = score_run(_config(tiny_dir, run), setup=setup)
    assert setup.scorer.prompts == 0  # type: ignore[attr-defined]
    assert summary.responses == len(read_responses(reference))
    _assert_same_table(read_responses(run), read_responses(reference))


def test_a_run_directory_with_another_configuration_is_refused(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    run = _copy(reference, tmp_path)
    parts = sorted(p.name for p in part_paths(run))
    result = _score(_args(tiny_dir, run, "--seed", "1"))
    assert result.exit_code == 2
    assert "different configuration" in result.output
    assert "seed: 0 -> 1" in result.output
    result = _score(_args(tiny_dir, run, "--condition", "paper"))
    assert result.exit_code == 2 and "condition: 'raw' -> 'paper'" in result.output
    result = _score(_args(tiny_dir, run, "--shard", "0/2"))
    assert result.exit_code == 2 and "use one directory per shard" in result.output
    assert sorted(p.name for p in part_paths(run)) == parts
    assert read_manifest(run)["config_hash"] == read_manifest(reference)["config_hash"]


def test_shards_merge_to_the_unsharded_table(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    for i in (0, 1):
        result = _score(_args(tiny_dir, tmp_path / f"shard{i}", "--shard", f"{i}/2"))
        assert result.exit_code == 0, result.output
    sizes = [len(read_responses(tmp_path / f"shard{i}")) for i in (0, 1)]
    assert min(sizes) > 0  # both shards got participants
    result = _score(
        [
            "merge",
            str(tmp_path / "shard1"),
            str(tmp_path / "shard0"),
            "--out",
            str(tmp_path / "merged"),
        ]
    )
    assert result.exit_code == 0, result.output
    # Shards batch their sessions differently from the unsharded run (default part size): equal
    # within the engine's batch-invariance bound.
    _assert_same_table(read_responses(tmp_path / "merged"), read_responses(reference), atol=1e-5)
    assert (
        read_manifest(tmp_path / "merged")["config_hash"] == read_manifest(reference)["config_hash"]
    )
    result = _score(["merge", str(tmp_path / "shard0"), "--out", str(tmp_path / "m2")])
    assert result.exit_code == 2 and "shards 1/2 are missing" in result.output


@pytest.mark.slow  # over 40 s on the shared 2-core machine
def test_sigkill_mid_run_then_resume_equals_uninterrupted(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    # One participant per part, so the kill lands between parts with work left to resume.
    args = _args(tiny_dir, out, "--part-size", "1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from psych201.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 240
    try:
        while not part_paths(out):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no part written within 240 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    written = len(part_paths(out))
    assert 1 <= written < 2 * LIMIT, "the run must be cut mid-way"
    assert not (out / "responses.parquet").exists()
    assert read_manifest(out)["status"] == "running"

    # A kill during a part's write leaves only its temporary file: the rerun removes it.
    stale = out / "parts" / "part-00000011-00000011.parquet.tmp-999999"
    stale.write_bytes(b"PAR1 half-written")

    result = _score(args)  # the same command again
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    manifest = read_manifest(out)
    assert manifest["status"] == "complete"
    assert len(manifest["invocations"]) == 2
    assert manifest["invocations"][-1]["scored_sessions"] == 2 * LIMIT - written
    _assert_same_table(read_responses(out), read_responses(reference))


def _write_jsonl(path: Path, records: list[dict[str, Any]], broken_at: int | None = None) -> None:
    lines = [json.dumps(r) for r in records]
    if broken_at is not None:
        lines.insert(broken_at, '{"text": "You press <<J>>.", "experiment": "x", "participant":')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _real_records(n: int) -> list[dict[str, Any]]:
    sessions = list(iter_split(DATA / STUDIES[0], "test", seed=0))[:n]
    return [
        {"text": s.text, "experiment": s.experiment, "participant": s.participant} for s in sessions
    ]


def test_bad_input_names_file_and_line(tiny_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write_jsonl(data / "mystudy.jsonl", _real_records(3), broken_at=2)
    out = tmp_path / "run"
    base = [
        "score",
        "--model",
        str(tiny_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--split",
        "all",
        "-q",
    ]
    result = _score(base)
    assert result.exit_code == 1  # invalid data
    assert f"{data / 'mystudy.jsonl'}:3" in result.output.replace("\n", "")
    assert not (out / "parts").exists()  # the data is read before any scoring starts

    result = _score([*base, "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["counts"]["sessions"] == 3
    assert manifest["counts"]["skipped_lines"] == 1
    assert manifest["counts"]["data_issues"] == {"error:json": 1}


def test_a_failing_session_is_named_and_finished_work_kept(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sessions = list(iter_split(DATA / STUDIES[0], "test", seed=0))[:LIMIT]
    bad = sessions[3]
    config = _config(tiny_dir, out, studies=STUDIES[:1])
    setup = _counting_setup(tiny_dir, out, fail_on=[bad.text])
    with pytest.raises(SessionScoringError) as info:
        score_run(config, setup=setup)
    assert f"{bad.source}:{bad.line}" in str(info.value)
    assert "planted failure" in str(info.value)
    assert not (out / "responses.parquet").exists()
    done = {key.line for p in part_paths(out) for key in part_sessions(p)}
    assert done == {s.line for s in sessions} - {bad.line}  # the rest of the chunk was kept

    summary = score_run(replace(config, on_error="skip"), setup=setup)
    assert summary.failed == (bad.key,) and summary.scored_now == 0
    assert read_manifest(out)["status"] == "incomplete"

    clean = load_hf_setup(config)
    summary = score_run(config, setup=clean)
    assert (summary.scored_now, summary.failed) == (1, ())
    assert read_manifest(out)["status"] == "complete"
    assert sorted(read_responses(out).line.unique()) == sorted(s.line for s in sessions)


class _StreamingScorer(_CountingScorer):
    """Like RayScorer: ``score_stream`` takes many chunks as one job; can fail at a chunk."""

    def __init__(self, inner: Any, fail_at_chunk: int | None = None) -> None:
        super().__init__(inner)
        self.fail_at_chunk = fail_at_chunk
        self.jobs = 0

    def score_stream(self, chunks: Sequence[Sequence[Prompt]]) -> Any:
        self.jobs += 1
        for i, chunk in enumerate(chunks):
            if i == self.fail_at_chunk:
                raise RuntimeError("planted stream failure")
            yield self.inner.score(chunk)


@pytest.mark.parametrize("fail_at_chunk", [None, 2])
def test_a_streaming_scorer_runs_one_job_per_study_and_writes_the_same_parts(
    reference: Path, tiny_dir: Path, tmp_path: Path, fail_at_chunk: int | None
) -> None:
    out = tmp_path / "run"
    real = load_hf_setup(_config(tiny_dir, out))
    scorer = _StreamingScorer(real.scorer, fail_at_chunk)
    summary = score_run(_config(tiny_dir, out, part_size=1), setup=replace(real, scorer=scorer))
    assert scorer.jobs == len(STUDIES)  # one job per study, not one per part
    # After a failing chunk the rest go chunk by chunk through score(), nothing lost.
    assert scorer.prompts == (0 if fail_at_chunk is None else 2 * (LIMIT - fail_at_chunk))
    assert summary.scored_now == 2 * LIMIT
    assert sorted(p.name for p in part_paths(out)) == sorted(
        p.name for p in part_paths(reference))
    _assert_same_table(read_responses(out), read_responses(reference), atol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alignment", "bogus"], "--alignment must be one of offsets, pieces, paper"),
        (["--dtype", "float8"], "--dtype must be one of float32, bfloat16, float16"),
        (["--split", "dev"], "--split must be test, train or all"),
        (["--shard", "2/2"], "shard 2/2: need 0 <= i < N"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--model-args", "dtype=bfloat16"], "dtype has its own option (--dtype)"),
        (["--model-args", "revision"], "expected key=value, got 'revision'"),
        (["--studies", "nosuchstudy"], "no study named nosuchstudy"),
        (["--condition", "persona", "--condition-args", "mode=telepathy"], "telepathy"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    tiny_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    result = _score([*_args(tiny_dir, out), *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (out / "parts").exists()


def test_temperature_and_offered_columns_are_filled(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    # On a CPU the temperature grid is off by default, and the manifest says so.
    assert read_responses(reference).nll_temperature.isna().all()
    engine = read_manifest(reference)["engine"]
    assert engine["temperature_grid"] is None and engine["temperature_reason"].startswith("off")

    out = tmp_path / "discrete"
    config = _config(tiny_dir, out, condition="discrete", studies=(STUDIES[0],), limit=2)
    score_run(config, setup=build_setup(config, engine_args={"temperatures": "on"}))
    table = read_responses(out)
    scored = table[table.n_tokens > 0]
    assert len(scored) > 0 and scored.nll_temperature.notna().all()
    grid = np.stack(scored.nll_temperature.to_numpy())
    assert grid.shape[1] == len(TEMPERATURE_GRID)
    np.testing.assert_allclose(grid[:, TEMPERATURE_GRID.index(1.0)], scored.nll, atol=1e-9)
    engine = read_manifest(out)["engine"]
    assert engine["temperature_grid"] == list(TEMPERATURE_GRID)
    assert engine["temperature_reason"] is None
    # Where accuracy among the offered options is known, so are the options and their log-probs.
    known = table.offered_correct.notna()
    assert known.sum() > 0 and (table.n_offered.notna() >= known).all()
    assert (table.offered_options.notna() == known).all()
    assert (table.offered_logprobs.notna() == known).all()
    for options, logps, n, text, correct in zip(
        table.offered_options[known], table.offered_logprobs[known], table.n_offered[known],
        table.response_text[known], table.offered_correct[known], strict=True,
    ):
        assert len(options) == len(logps) == n and text in options
        assert correct == (options[int(np.argmax(logps))] == text)


def test_a_run_written_before_the_columns_verifies_and_resumes(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    """Parts and table as an older psych201 wrote them (no added columns): verify, then resume."""
    run = _copy(reference, tmp_path)
    old = ("nll_temperature", "offered_options", "offered_logprobs")
    assert set(old) <= set(ADDED_COLUMNS)
    for path in [*part_paths(run), run / "responses.parquet"]:
        pq.write_table(pq.read_table(path).drop_columns(list(old)), path)
        path.with_suffix(".json").unlink(missing_ok=True)  # nor part records (issue 24)
    manifest = json.loads((run / "manifest.json").read_text())
    for key in ("part_records", "checksum"):  # nor the manifest's checksum
        manifest.pop(key, None)
    manifest["table"] = table_record(run)
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert verify_run(run).ok, verify_run(run).problems
    assert read_responses(run).nll_temperature.isna().all()
    # Lose one part: the rerun rescores its session and keeps the others' (null) columns.
    lost = part_paths(run)[-1]
    lost_keys = {(k.study, k.line) for k in part_sessions(lost)}
    lost.unlink()
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    config = _config(tiny_dir, run)
    summary = score_run(config, setup=build_setup(config, engine_args={"temperatures": "on"}))
    assert summary.scored_now == 1 and summary.config_hash == manifest["config_hash"]
    table = read_responses(run)
    rescored = [(s, line) in lost_keys for s, line in zip(table.study, table.line, strict=True)]
    assert table.nll_temperature[rescored].notna().all()
    assert table.nll_temperature[[not r for r in rescored]].isna().all()
    assert verify_run(run).ok, verify_run(run).problems
