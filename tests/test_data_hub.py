"""Multi-study tables and ``hf:`` sources, offline, on a hub-style dataset built from real studies.

The fixture writes what ``marcelbinz/Psych-201-test`` looks like (one table for all studies with the
published column set, several Parquet shards, a README card) from four shared study folders, with an
``in_eval`` split that is *not* psych201's default seed, and one study marked as Psych-101 with
its own test participants. Reading it must give the very sessions of the study folders, and
scoring it the very NLLs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli_helpers import invoke
from paths import DATA, needs_data
from psych201.cli import app
from psych201.data.hub import resolve_hub_data
from psych201.data.issues import DataError
from psych201.data.readers import discover_studies, iter_sessions
from psych201.data.records import Session, SessionKey
from psych201.data.split import held_out_participants, iter_split, max_eval

STUDIES = ("busch2024_stroop", "franke2024bayesian", "olschewski2024skewness", "thoma2025problearn")
PSYCH101 = "thoma2025problearn"  # marked as a Psych-101 study in the table
SPLIT_SEED = 7  # the table's own split: not the default seed 0
N_SHARDS = 4

pytestmark = needs_data


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Table partitions go to a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PSYCH201_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _folder_sessions() -> dict[str, list[Session]]:
    return {study: list(iter_sessions(DATA / study)) for study in STUDIES}


@pytest.fixture(scope="module")
def folders() -> dict[str, list[Session]]:
    return _folder_sessions()


@pytest.fixture(scope="module")
def psych101_test(folders: dict[str, list[Session]]) -> frozenset[SessionKey]:
    """A third of the Psych-101 study's participants are Psych-101 test participants."""
    keys = [s.key for s in folders[PSYCH101]]
    rng = np.random.default_rng(3)
    return frozenset(keys[i] for i in rng.permutation(len(keys))[: len(keys) // 3])


@pytest.fixture(scope="module")
def in_eval(
    folders: dict[str, list[Session]], psych101_test: frozenset[SessionKey]
) -> frozenset[SessionKey]:
    keys = [s.key for sessions in folders.values() for s in sessions]
    flags = {k: k in psych101_test for k in keys if k.study == PSYCH101}
    return held_out_participants(keys, seed=SPLIT_SEED, psych101=flags)


def _columns(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as table cells: RT lists mix numbers and strings, so they travel as JSON text."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in metadata.items()}


def _rows(
    folders: dict[str, list[Session]],
    in_eval: frozenset[SessionKey],
    psych101_test: frozenset[SessionKey],
) -> list[dict[str, Any]]:
    """The published column set: text, study, experiment, participant, is_psych101,
    is_psych101_test, <metadata>, participant_reindexed, in_eval (study by study, file order)."""
    rows = []
    for study, sessions in folders.items():
        for index, s in enumerate(sessions):
            rows.append(
                {
                    "text": s.text,
                    "study": study,
                    "experiment": s.experiment,
                    "participant": s.participant,
                    "is_psych101": study == PSYCH101,
                    "is_psych101_test": s.key in psych101_test,
                    **_columns(s.metadata),
                    "participant_reindexed": str(index),
                    "in_eval": s.key in in_eval,
                }
            )
    return rows


@pytest.fixture(scope="module")
def table(
    folders: dict[str, list[Session]],
    in_eval: frozenset[SessionKey],
    psych101_test: frozenset[SessionKey],
) -> pa.Table:
    rows = _rows(folders, in_eval, psych101_test)
    names = list(dict.fromkeys(k for row in rows for k in row))  # a column for every field
    return pa.Table.from_pydict({name: [row.get(name) for row in rows] for name in names})


@pytest.fixture(scope="module")
def hub_folder(table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub-style folder: README card + data/test-0000i-of-00004.parquet, small row groups."""
    root = tmp_path_factory.mktemp("hub") / "Psych-201-test"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Psych-201-test (test copy)\n")
    bounds = np.linspace(0, table.num_rows, N_SHARDS + 1).astype(int)
    for i in range(N_SHARDS):
        shard = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        name = f"test-{i:05d}-of-{N_SHARDS:05d}.parquet"
        pq.write_table(shard, root / "data" / name, row_group_size=100)
    return root


def _same(a: list[Session], b: list[Session]) -> None:
    assert [s.key for s in a] == [s.key for s in b]
    for x, y in zip(a, b, strict=True):
        assert x.text == y.text and x.responses == y.responses
        assert x.harmonised == y.harmonised
        assert x.metadata == _columns({k: v for k, v in y.metadata.items() if v is not None})


def test_hub_folder_is_split_into_its_studies_with_the_folders_sessions(
    hub_folder: Path, folders: dict[str, list[Session]], table: pa.Table
) -> None:
    assert table.num_rows > 2000 and len(list((hub_folder / "data").iterdir())) == N_SHARDS
    sources = discover_studies(hub_folder)
    assert [s.name for s in sources] == sorted(STUDIES)
    for source in sources:
        _same(list(iter_sessions(source)), folders[source.name])
    # Reading the folder as a whole gives the same sessions, study by study.
    everything = list(iter_sessions(hub_folder))
    assert [s.key for s in everything] == [s.key for st in sorted(STUDIES) for s in folders[st]]


def test_in_eval_is_honoured_exactly_and_seeded_resplits(
    hub_folder: Path,
    folders: dict[str, list[Session]],
    in_eval: frozenset[SessionKey],
    psych101_test: frozenset[SessionKey],
) -> None:
    with_responses = {s.key for ss in folders.values() for s in ss if s.responses}
    test_sessions = list(iter_split(hub_folder, "test"))  # default seed 0: the table decides
    test = {s.key for s in test_sessions}
    train = {s.key for s in iter_split(hub_folder, "train")}
    assert test == in_eval & with_responses
    assert train == with_responses - in_eval
    assert all(s.in_eval is True for s in test_sessions)
    # The study folders carry no split: seed 0 draws another test set, seed 7 the table's.
    busch = "busch2024_stroop"
    seed0 = {s.key for s in iter_split(DATA / busch, "test")}
    assert seed0 != {k for k in test if k.study == busch}
    # --split seeded ignores in_eval and re-splits with the seed, under the Psych-101 rule.
    seeded = {s.key for s in iter_split(hub_folder, "seeded", seed=0)}
    assert seeded != test
    for study in STUDIES:
        n, keys = len(folders[study]), {s.key for s in folders[study]}
        chosen = seeded & keys
        no_responses = len(keys - with_responses)
        assert max_eval(n) - no_responses <= len(chosen) <= max_eval(n)
        if study == PSYCH101:
            # Only Psych-101 test participants qualify; max_eval still counts all participants.
            assert chosen <= psych101_test and max_eval(n) < len(psych101_test)
            assert len(in_eval & keys) == max_eval(n) and in_eval & keys <= psych101_test


def test_single_parquet_jsonl_and_saved_dataset_tables(
    table: pa.Table, folders: dict[str, list[Session]], tmp_path: Path
) -> None:
    small = table.filter(pa.compute.is_in(table["study"], pa.array(list(STUDIES[:2]))))
    parquet = tmp_path / "psych201.parquet"
    pq.write_table(small, parquet, row_group_size=64)
    jsonl = tmp_path / "psych201.jsonl"
    with jsonl.open("w") as fh:
        for row in small.to_pylist():
            fh.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset(small).save_to_disk(str(saved))
    for path in (parquet, jsonl, saved):
        sources = discover_studies(path)
        assert [s.name for s in sources] == sorted(STUDIES[:2]), path
        for source in sources:
            _same(list(iter_sessions(source)), folders[source.name])
        test = {s.key for s in iter_split(path, "test")}
        assert test == {s.key for s in iter_split(parquet, "test")}


def _hub_cache(root: Path, repo: str, kind: str, sha: str, files: dict[str, Path]) -> Path:
    """A hub-style cache entry: <kind>s--ORG--NAME/refs/main + snapshots/<sha>/..."""
    entry = root / f"{kind}s--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(sha)
    snapshot = entry / "snapshots" / sha
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(source.read_bytes())
    return snapshot


def test_hub_id_resolves_offline_from_the_hf_cache(
    hub_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hf" / "hub"
    files = {str(p.relative_to(hub_folder)): p for p in hub_folder.rglob("*") if p.is_file()}
    sha = "a" * 40
    snapshot = _hub_cache(cache, "marcelbinz/Psych-201-test", "dataset", sha, files)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    hub = resolve_hub_data("hf:marcelbinz/Psych-201-test")
    assert hub.folder == snapshot and hub.commit == sha and hub.repo == "marcelbinz/Psych-201-test"
    assert [s.name for s in discover_studies(hub.folder)] == sorted(STUDIES)
    with pytest.raises(DataError, match="not in the HF cache"):
        resolve_hub_data("hf:marcelbinz/Psych-101")


def _score(*args: str) -> None:
    result = invoke(["score", "--quiet", *args])
    assert result.exit_code == 0, result.output


def test_score_hf_folder_gives_the_study_folders_table(
    hub_folder: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    studies = "franke2024bayesian,olschewski2024skewness"  # short sessions, not the Psych-101 one
    common = ["--model", str(tiny_dir), "--limit", "2", "--studies", studies]
    _score("--data", f"hf:{hub_folder}", "--out", str(tmp_path / "hub"), *common)
    # The table's own split is the seed-7 split of the folders: same participants, same NLLs.
    _score("--data", str(DATA), "--out", str(tmp_path / "dir"), "--seed", str(SPLIT_SEED), *common)
    key = ["study", "experiment", "participant", "line", "response_index"]
    hub = pd.read_parquet(tmp_path / "hub" / "responses.parquet").sort_values(key)
    folder = pd.read_parquet(tmp_path / "dir" / "responses.parquet").sort_values(key)
    assert len(hub) > 20
    assert hub[key].values.tolist() == folder[key].values.tolist()
    assert np.array_equal(hub["nll"].to_numpy(), folder["nll"].to_numpy())
    manifest = json.loads((tmp_path / "hub" / "manifest.json").read_text())
    assert manifest["spec"]["split"] == "dataset"
    assert manifest["data"]["path"] == f"hf:{hub_folder}"
    other = json.loads((tmp_path / "dir" / "manifest.json").read_text())
    assert other["spec"]["split"] == "test"
    # The analyses read the transcripts from the same hf: source (what --data adds).
    out = tmp_path / "compare.json"
    compared = CliRunner().invoke(app, ["compare", str(tmp_path / "hub"), "--data",
                                        f"hf:{hub_folder}", "--json", str(out)])
    assert compared.exit_code == 0, compared.output
    population = json.loads(out.read_text())["sections"]["population"]["tables"]["population"]
    assert population, "no population baseline from hf: data"


def test_data_commands_accept_hf_sources(table: pa.Table, tmp_path: Path) -> None:
    # The hub layout with 25 participants of each study: what is tested is that every data
    # command reads an hf: source, not how long four whole studies take to validate.
    import pyarrow.compute as pc

    study = table.column("study")
    keep = [i for name in STUDIES
            for i in pc.indices_nonzero(pc.equal(study, name)).to_pylist()[:25]]
    small = tmp_path / "hub" / "Psych-201-test"
    (small / "data").mkdir(parents=True)
    (small / "README.md").write_text("---\nlicense: apache-2.0\n---\n# test copy\n")
    pq.write_table(table.take(keep), small / "data" / "test-00000-of-00001.parquet")
    runner = CliRunner()
    source = f"hf:{small}"
    validate = runner.invoke(app, ["data", "validate", source])
    assert validate.exit_code == 0, validate.output
    assert "4 study(ies)" in validate.output
    table = tmp_path / "stats.parquet"
    stats = runner.invoke(app, ["data", "stats", source, "--out", str(table)])
    assert stats.exit_code == 0, stats.output
    assert sorted(pd.read_parquet(table)["study"]) == sorted(STUDIES)
    built = tmp_path / "built.parquet"
    build = runner.invoke(app, ["data", "build", source, str(built)])
    assert build.exit_code == 0, build.output
    assert [s.name for s in discover_studies(built)] == sorted(STUDIES)
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    missing = runner.invoke(app, ["data", "stats", "hf:no-such/dataset"], env=offline)
    assert missing.exit_code == 2
