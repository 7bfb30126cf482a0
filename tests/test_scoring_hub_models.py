"""Models by hub id (``ORG/NAME[@revision]``), offline, from a hub-style HF cache built here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import invoke
from paths import DATA, needs_data
from psych201.scoring.model_files import ModelLoadError
from psych201.scoring.models import load_model, model_folder

STUDY = "franke2024bayesian"
REPO = "psych201-test/tiny-llama"
SHA1 = "1" * 40
SHA2 = "2" * 40


def _snapshot(cache: Path, sha: str, folder: Path) -> Path:
    """models--ORG--NAME/refs/main -> sha, snapshots/<sha>/ holding the model's files."""
    entry = cache / f"models--{REPO.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(sha)
    snapshot = entry / "snapshots" / sha
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    _snapshot(cache, SHA1, tiny_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_id_loads_from_the_cache_with_its_commit(hub_cache: Path, tiny_dir: Path) -> None:
    loaded = load_model(REPO)
    direct = load_model(str(tiny_dir))
    assert loaded.model_id == REPO and loaded.revision == SHA1
    assert loaded.source == f"hf:{REPO}@{SHA1}"
    assert loaded.file_sha256 == direct.file_sha256
    assert model_folder(REPO).revision == SHA1
    with pytest.raises(ModelLoadError, match="not in the HF cache"):
        load_model("psych201-test/absent")


def _score(model: str, out: Path) -> tuple[int, str]:
    args = ["score", "--quiet", "--model", model, "--data", str(DATA / STUDY)]
    result = invoke([*args, "--out", str(out), "--limit", "4"])
    return result.exit_code, result.output


@needs_data
def test_score_by_hub_id_matches_the_folder_and_refuses_a_moved_main(
    hub_cache: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    code, output = _score(REPO, tmp_path / "hub")
    assert code == 0, output
    code, output = _score(str(tiny_dir), tmp_path / "folder")
    assert code == 0, output
    hub = pd.read_parquet(tmp_path / "hub" / "responses.parquet")
    folder = pd.read_parquet(tmp_path / "folder" / "responses.parquet")
    assert len(hub) > 0 and set(hub["model"]) == {REPO}
    assert np.array_equal(hub["nll"].to_numpy(), folder["nll"].to_numpy())
    manifest = json.loads((tmp_path / "hub" / "manifest.json").read_text())
    assert manifest["model"]["revision"] == SHA1
    assert manifest["spec"]["extra"]["model_revision"] == SHA1
    # main moves to another commit (same files): the rerun refuses and names both commits.
    _snapshot(hub_cache, SHA2, tiny_dir)
    code, output = _score(REPO, tmp_path / "hub")
    assert code != 0
    flat = " ".join(output.split())
    assert SHA1 in flat and SHA2 in flat, output
    # Pinning the old commit resumes the run: nothing left to score.
    code, output = _score(f"{REPO}@{SHA1}", tmp_path / "hub")
    assert code == 0, output
