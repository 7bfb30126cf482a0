"""Scale-out equals single-process, row for row: ``--shard i/N`` + merge, and the Ray engine.

Real data (three studies with short sessions, two test participants each), SmolLM2-135M with
the HF engine. The single-process run is the reference; a sharded run merged back, and the same
run with scoring on a local 2-worker Ray cluster (Ray Data ``map_batches``, one engine replica
per worker), must give the same table: same rows in the same order, identical keys, texts, token
counts and flags; float32 sums of scores within 1e-5 nats (batches are composed differently, so
the last float32 bits may differ: measured up to 2e-6 on NLLs of ~6 nats).
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paths import DATA
from psych201.pipeline import ScoreConfig, ScoringSetup, build_setup, score_run
from psych201.results.io import read_responses
from psych201.results.merge import merge_runs
from psych201.results.shards import Shard
from psych201.scoring.engines import ScorerSpec

MODEL = "smollm2-135m-instruct"
STUDIES = ("franke2024bayesian", "guenther2023associations_individual", "guenther2022relational")
FLOATS = ["nll", "entropy"]
PER_STUDY = 2
#: The paper's truncation, to a short prefix: a few hundred tokens per session keeps this fast.
PREFIX_CHARS = 1500

pytestmark = pytest.mark.slow


def _config(out: Path, **changes: object) -> ScoreConfig:
    base = ScoreConfig(
        data=DATA, out=out, model=MODEL, studies=STUDIES, limit=PER_STUDY, split="test",
        part_size=2, condition="paper", condition_args={"max_chars": PREFIX_CHARS},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) > 0
    exact = [c for c in want.columns if c not in FLOATS]
    pd.testing.assert_frame_equal(
        got[exact].reset_index(drop=True), want[exact].reset_index(drop=True)
    )
    for col in FLOATS:
        # Packed rows hold other sessions in a shard than in one process, so the matmuls differ
        # in shape and fp32 rounds differently: a few ulps of a long sum (seen: 6e-6 relative).
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("single") / "run"
    summary = score_run(_config(out))
    assert summary.sessions == PER_STUDY * len(STUDIES)
    return read_responses(out)


def test_shards_merged_equal_single_process(single, tmp_path):
    shard_dirs = []
    for i in range(2):
        shard_dirs.append(tmp_path / f"shard{i}")
        score_run(_config(shard_dirs[-1], shard=Shard(i, 2)))
    parts = [read_responses(d) for d in shard_dirs]
    keys = [set(zip(p["study"], p["line"], strict=True)) for p in parts]
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # a partition, both shards non-empty
    merge_runs(shard_dirs, tmp_path / "merged")
    _assert_same_rows(read_responses(tmp_path / "merged"), single)


@pytest.fixture(scope="module")
def ray_cluster():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'ray[data]'; .ci/engines.sh installs it)")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 << 20)
    yield
    ray.shutdown()


def _ray_setup(config: ScoreConfig) -> ScoringSetup:
    return build_setup(config, engine="ray", ray_args={"engine": "hf", "num_workers": 2})


def test_ray_run_equals_single_process_and_resumes(ray_cluster, single, tmp_path):
    out = tmp_path / "ray"
    # One participant per part: each study is one Ray Data job (RayScorer.score_stream, engine
    # replicas load once per study) that still writes a part per participant as it finishes.
    config = _config(out, part_size=1)
    setup = _ray_setup(config)
    assert setup.engine == "ray:hf"
    summary = score_run(config, setup=setup)
    assert summary.scored_now == PER_STUDY * len(STUDIES)
    _assert_same_rows(read_responses(out), single)

    # Resume: lose one part, rerun, only its participants are scored again; same table.
    parts = sorted((out / "parts").glob("*.parquet"))
    assert len(parts) == PER_STUDY * len(STUDIES)
    parts[1].unlink()
    again = score_run(config, setup=setup)
    assert 0 < again.scored_now < summary.scored_now
    _assert_same_rows(read_responses(out), single)


def test_ray_stream_scores_many_chunks_in_one_job(ray_cluster, tmp_path):
    from psych201.data.readers import iter_sessions
    from psych201.prompts.conditions import make_condition
    from psych201.scoring.engines import build_scorer
    from psych201.scoring.ray_engine import RayScorer

    condition = make_condition("paper", max_chars=PREFIX_CHARS)
    chunks = []
    for study in STUDIES:
        sessions = [s for _, s in zip(range(PER_STUDY), iter_sessions(DATA / study), strict=False)]
        chunks.append(condition.render_study(sessions))
    chunks.insert(1, [])  # an empty chunk keeps its place
    scorer = _ray_setup(_config(tmp_path)).scorer
    assert isinstance(scorer, RayScorer)
    got = list(scorer.score_stream(chunks))
    local = build_scorer(ScorerSpec("hf", MODEL)).scorer
    assert [len(c) for c in got] == [len(c) for c in chunks]
    for chunk, scored in zip(chunks, got, strict=True):
        for want, have in zip(local.score(chunk), scored, strict=True):
            assert [s.index for s in have] == [s.index for s in want]
            np.testing.assert_allclose(  # fp32 rounding of differently packed rows
                [s.nll for s in have], [s.nll for s in want], rtol=1e-5, atol=1e-5
            )
            assert [s.top1_correct for s in have] == [s.top1_correct for s in want]


def test_other_engine_through_the_pipeline(single, tmp_path):
    # Any engine writes the same run directory; llama.cpp (quantised) within the parity tolerance.
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (.ci/engines.sh installs it)")
    out = tmp_path / "llamacpp"
    config = _config(out)
    setup = build_setup(config, engine="llamacpp", engine_args={"n_ctx": 4096, "n_threads": 1})
    assert setup.engine == "llamacpp" and setup.engine_info.dtype == "gguf:Q4_1"
    score_run(config, setup=setup)
    got = read_responses(out)
    exact = ["study", "experiment", "participant", "line", "response_index", "n_tokens"]
    pd.testing.assert_frame_equal(got[exact], single[exact])
    per_token = (got["nll"] - single["nll"]).abs().sum() / single["n_tokens"].sum()
    assert per_token <= 0.05
