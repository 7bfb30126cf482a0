"""The engine registry: every engine is built the same way, a package adds one through the
``psych201.engines`` entry point, ``--model-args`` reach the loader or are refused, the pipeline
closes what it loaded, and the oracle is an engine like any other."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psych201.cli import app
from psych201.pipeline import ScoreConfig, ScoringSetup, score_run
from psych201.results import RESPONSE_SCHEMA, read_manifest, read_responses
from psych201.results.schema import ResponseScore
from psych201.scoring.engine import TEMPERATURE_GRID, EngineInfo
from psych201.scoring.engines import engine_names

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def bandit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "bandit.jsonl"
    code, output = _cli("simulate", "bandit", "-n", "5", "-t", "24", "--out", str(path))
    assert code == 0, output
    return path


def _loglik(path: Path) -> dict[tuple[int, int], float]:
    out = {}
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        for index, value in enumerate(json.loads(text)["loglik"]):
            out[(line, index)] = value
    return out


def _oracle_run(bandit: Path, out: Path, *extra: str) -> Path:
    code, output = _cli("score", "--engine", "oracle", "--data", str(bandit), "--out", str(out),
                        "--split", "all", "-q", *extra)
    assert code == 0, output
    return out


def test_the_oracle_engine_scores_the_stored_loglik_exactly(bandit: Path, tmp_path: Path) -> None:
    run = _oracle_run(bandit, tmp_path / "oracle")
    table = read_responses(run)
    loglik = _loglik(bandit)
    assert len(table) == len(loglik) == 5 * 24
    assert set(table["model"]) == {"oracle"}
    for line, index, nll, grid in zip(table["line"], table["response_index"], table["nll"],
                                      table["nll_temperature"], strict=True):
        assert abs(nll + loglik[(int(line), int(index))]) <= 1e-12
        assert len(grid) == len(TEMPERATURE_GRID) and grid[TEMPERATURE_GRID.index(1.0)] == nll
        assert grid[0] != nll  # other temperatures are other numbers
    # The transcript names both machines: log q over them, the chosen one's is -nll.
    for text, nll, options, logprobs in zip(table["response_text"], table["nll"],
                                            table["offered_options"], table["offered_logprobs"],
                                            strict=True):
        assert len(options) == 2 and text.strip() in options
        assert logprobs[list(options).index(text.strip())] == -nll
        assert math.fsum(math.exp(v) for v in logprobs) == pytest.approx(1.0, abs=1e-12)
    manifest = read_manifest(run)
    assert manifest["spec"]["engine"] == "oracle" and manifest["status"] == "complete"


def test_a_tempered_oracle_squares_and_renormalises(bandit: Path, tmp_path: Path) -> None:
    exact = read_responses(_oracle_run(bandit, tmp_path / "exact"))
    tempered = read_responses(
        _oracle_run(bandit, tmp_path / "half", "--engine-args", "temperature=0.5")
    )
    assert set(tempered["model"]) == {"oracle-T0.5"}
    for p_nll, t_nll in zip(exact["nll"], tempered["nll"], strict=True):
        p = math.exp(-p_nll)
        assert t_nll == pytest.approx(-math.log(p**2 / (p**2 + (1 - p) ** 2)), abs=1e-12)
    # The grid is relative to the tempered oracle: t = 0.5 on the exact one is the T=0.5 oracle.
    half = TEMPERATURE_GRID.index(0.5) if 0.5 in TEMPERATURE_GRID else None
    if half is not None:
        assert list(exact["nll_temperature"].map(lambda g: g[half])) == pytest.approx(
            list(tempered["nll"]), abs=1e-12)


def test_oracle_runs_show_up_in_compare_like_any_model(bandit: Path, tmp_path: Path) -> None:
    exact = _oracle_run(bandit, tmp_path / "exact")
    tempered = _oracle_run(bandit, tmp_path / "half", "--engine-args", "temperature=0.5")
    code, output = _cli("compare", str(exact), str(tempered), "--format", "json")
    assert code == 0, output
    assert "oracle-T0.5" in output and '"oracle"' in output


def test_oracle_refuses_model_args_and_unknown_engine_args(bandit: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["score", "--engine", "oracle", "--data", str(bandit), "--out", str(out), "-q"]
    code, output = _cli(*base, "--model-args", "revision=main")
    assert code == 2 and "revision" in output and "accepted: none" in output, output
    code, output = _cli(*base, "--engine-args", "temperature=0")
    assert code == 2 and "temperature must be > 0" in output, output
    assert not (out / "parts").exists()


def test_unknown_model_args_are_refused_before_the_model_loads(tmp_path: Path) -> None:
    data = tmp_path / "study.jsonl"
    data.write_text(json.dumps({"text": "Pick: <<A>>.", "participant": "1",
                                "experiment": "e"}) + "\n")
    code, output = _cli("score", "--model", "no-such-model", "--data", str(data),
                        "--out", str(tmp_path / "run"), "--model-args", "trust_me=1", "-q")
    assert code == 2, output
    assert "trust_me" in output and "accepted: cache_dir" in output


def test_the_engine_choices_come_from_the_registry() -> None:
    assert {"hf", "vllm", "llamacpp", "openai", "oracle"} <= set(engine_names())
    code, output = _cli("score", "--engine", "nosuch", "--data", ".", "--out", "x", "-q")
    assert code == 2 and "unknown engine 'nosuch'" in output and "oracle" in output


class _Scorer:
    def score(self, prompts):
        raise RuntimeError("this scorer always fails")


def test_the_pipeline_closes_what_it_loaded_however_the_run_ends(
    bandit: Path, tmp_path: Path
) -> None:
    closed: list[str] = []

    def loader() -> ScoringSetup:
        info = EngineInfo("failing", "failing", "none", "cpu", None)
        return ScoringSetup(model_id="failing", engine="failing", tokenizer=None,
                            scorer=_Scorer(), model_info={"id": "failing"}, engine_info=info,
                            tokenizer_info={}, window={}, closers=(lambda: closed.append("x"),))

    config = ScoreConfig(data=bandit, out=tmp_path / "run", split="all", on_error="skip")
    summary = score_run(config, setup=loader)
    assert len(summary.failed) == 5 and closed == ["x"]
    with pytest.raises(Exception, match="always fails"):
        score_run(dataclasses.replace(config, out=tmp_path / "run2", on_error="fail"),
                  setup=loader)
    assert closed == ["x", "x"]


_TOY_ENGINE = '''
"""A third-party engine: one NLL per response, its length in characters."""
from psych201.scoring.engine import EngineInfo
from psych201.scoring.engines import BuiltScorer
from psych201.scoring.scorer import SpanScore


class LengthScorer:
    def score(self, prompts):
        return [[SpanScore(s.index, 1, float(len(s.text)), None, 0.0, 0, False)
                 for s in p.spans] for p in prompts]


def build(spec):
    info = EngineInfo("toy", "toy-" + spec.model, "none", "cpu", None)
    return BuiltScorer(LengthScorer(), info, None, "toy-" + spec.model,
                       {"id": "toy-" + spec.model, "source": "toy", "file_sha256": None})
'''


def test_an_engine_from_another_package_scores_from_the_cli(bandit: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "toy_engine-0.dist-info").mkdir(parents=True)
    (site / "toy_engine.py").write_text(textwrap.dedent(_TOY_ENGINE))
    (site / "toy_engine-0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-engine\nVersion: 0\n")
    (site / "toy_engine-0.dist-info" / "entry_points.txt").write_text(
        "[psych201.engines]\ntoy = toy_engine:build\n")
    out = tmp_path / "run"
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-c", "from psych201.cli import main; main()", "score",
               "--engine", "toy", "--model", "m", "--data", str(bandit), "--out", str(out),
               "--split", "all", "-q"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    table = read_responses(out)
    assert set(table["model"]) == {"toy-m"} and len(table) == 5 * 24
    assert list(table["nll"]) == [float(len(t)) for t in table["response_text"]]
    assert read_manifest(out)["spec"]["engine"] == "toy"
    # the same engine named in a study file: the runner reads the registration too
    study = tmp_path / "toy.yaml"
    study.write_text(textwrap.dedent(f"""\
        name: toy-study
        out: {tmp_path / "study"}
        report: null
        data:
          - {{name: bandit, path: {bandit}, split: all}}
        engine: {{name: toy, device: cpu}}
        models: [m]
        """))
    command = [sys.executable, "-c", "from psych201.cli import main; main()", "run", str(study)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (cell,) = [p.parent for p in (tmp_path / "study").rglob("manifest.json")
               if read_manifest(p.parent).get("spec", {}).get("engine") == "toy"]
    assert list(read_responses(cell)["nll"]) == list(table["nll"])


def test_the_schema_lists_the_record_fields_in_order() -> None:
    assert RESPONSE_SCHEMA.names == [f.name for f in dataclasses.fields(ResponseScore)]
