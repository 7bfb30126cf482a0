"""The results layer on its own: atomic parts, resume bookkeeping, manifests, merge, shards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psych201.data.records import SessionKey
from psych201.results import (
    RESPONSE_SCHEMA,
    ConfigMismatchError,
    PartWriter,
    ResponseScore,
    ResultsError,
    RunSpec,
    Shard,
    merge_runs,
    read_manifest,
    read_responses,
)
from psych201.results.manifest import build_manifest, mark_complete, open_run_dir
from psych201.results.writer import (
    completed_sessions,
    finalize,
    part_paths,
    remove_stale_temporaries,
    rows_to_table,
)


def _spec(**changes: object) -> RunSpec:
    base: dict[str, object] = {
        "model": "tiny",
        "engine": "hf",
        "condition": "raw",
        "alignment": "offsets",
        "dtype": "float32",
        "data": "psych201",
        "data_hash": "abc",
        "split": "test",
        "seed": 0,
    }
    base.update(changes)
    return RunSpec(**base)  # type: ignore[arg-type]


def _manifest(spec: RunSpec, shard: Shard | None = None) -> dict[str, object]:
    return build_manifest(
        spec,
        model={"id": spec.model, "file_sha256": "f00"},
        engine={"name": "hf", "versions": {"torch": "x"}},
        tokenizer={"class": "T"},
        data={"path": "/data", "hash": spec.data_hash},
        shard=shard,
    )


def _key(line: int, study: str = "s") -> SessionKey:
    return SessionKey(study, "exp", f"p{line}", line)


def _rows(key: SessionKey, n: int, *, model: str = "tiny") -> list[ResponseScore]:
    return [
        ResponseScore(
            model=model,
            condition="raw",
            study=key.study,
            experiment=key.experiment,
            participant=key.participant,
            line=key.line,
            response_index=i,
            response_text=f"r{i}",
            n_tokens=1 + i % 2,
            nll=0.5 * i + key.line,
            top1_correct=(i % 3 == 0) if i % 2 == 0 else None,
            entropy=1.0,
            context_tokens=10 * i,
            truncated=False,
        )
        for i in range(n)
    ]


def _complete_run(
    run_dir: Path, keys: list[SessionKey], spec: RunSpec, shard: Shard | None = None
) -> None:
    manifest = open_run_dir(run_dir, _manifest(spec, shard), argv=["test"])
    writer = PartWriter(run_dir, spec.config_hash())
    for i, key in enumerate(keys):
        writer.write(_rows(key, 3), [key], first=i, last=i)
    finalize(run_dir, config_hash=spec.config_hash())
    mark_complete(run_dir, manifest, {"responses": 3 * len(keys)})


def test_rows_to_table_keeps_schema_and_nulls() -> None:
    table = rows_to_table(_rows(_key(1), 4))
    assert table.schema.equals(RESPONSE_SCHEMA)
    assert table.column("top1_correct").to_pylist() == [True, None, False, None]


def test_parts_record_sessions_including_empty_ones(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, "h1")
    writer.write(_rows(_key(1), 2), [_key(1), _key(2)], first=0, last=1)  # _key(2): no rows
    writer.write(_rows(_key(3), 1), [_key(3)], first=2, last=2)
    assert [p.name for p in part_paths(tmp_path)] == [
        "part-00000000-00000001.parquet",
        "part-00000002-00000002.parquet",
    ]
    assert completed_sessions(tmp_path, config_hash="h1") == {_key(1), _key(2), _key(3)}
    with pytest.raises(ResultsError, match="not by this run"):
        completed_sessions(tmp_path, config_hash="other")
    with pytest.raises(ResultsError, match="already exists"):
        writer.write(_rows(_key(3), 1), [_key(3)], first=2, last=2)


def test_stale_temporaries_are_removed_and_ignored(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, "h")
    writer.write(_rows(_key(1), 2), [_key(1)], first=0, last=0)
    stale = tmp_path / "parts" / f"part-00000001-00000001.parquet.tmp-{os.getpid() + 1}"
    stale.write_bytes(b"PAR1 half a file")
    assert completed_sessions(tmp_path) == {_key(1)}  # the stray file is no part
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists()


def test_corrupt_part_is_named(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    bad = tmp_path / "parts" / "part-00000000-00000000.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match=r"part-00000000-00000000\.parquet: unreadable part"):
        completed_sessions(tmp_path)


def test_finalize_sorts_and_reads_back(tmp_path: Path) -> None:
    spec = _spec()
    keys = [_key(5), _key(2), _key(9, study="a")]
    _complete_run(tmp_path / "run", keys, spec)
    df = read_responses(tmp_path / "run")
    assert list(df.columns) == RESPONSE_SCHEMA.names
    assert list(zip(df["study"], df["line"], strict=True))[::3] == [("a", 9), ("s", 2), ("s", 5)]
    assert list(df["response_index"])[:3] == [0, 1, 2]
    assert str(df["top1_correct"].dtype) == "boolean"
    assert df["top1_correct"].isna().sum() == 3
    assert read_manifest(tmp_path / "run")["status"] == "complete"
    meta = pq.read_schema(tmp_path / "run" / "responses.parquet").metadata
    assert meta[b"psych201.config_hash"] == spec.config_hash().encode()


def test_unfinished_run_reads_parts_with_warning(tmp_path: Path) -> None:
    spec = _spec()
    open_run_dir(tmp_path, _manifest(spec))
    PartWriter(tmp_path, spec.config_hash()).write(_rows(_key(1), 2), [_key(1)], first=0, last=0)
    with pytest.warns(UserWarning, match="not finished"):
        df = read_responses(tmp_path)
    assert len(df) == 2


def test_read_responses_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no run manifest"):
        read_responses(tmp_path)
    other = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(other)
    with pytest.raises(ResultsError, match=r"x\.parquet: not a psych201 response table"):
        read_responses(other)


def test_manifest_refuses_another_configuration(tmp_path: Path) -> None:
    open_run_dir(tmp_path, _manifest(_spec()), argv=["first"])
    with pytest.raises(ConfigMismatchError) as info:
        open_run_dir(tmp_path, _manifest(_spec(dtype="bfloat16", seed=3)))
    message = str(info.value)
    assert "different configuration" in message
    assert "dtype: 'float32' -> 'bfloat16'" in message
    assert "seed: 0 -> 3" in message
    with pytest.raises(ConfigMismatchError, match="shard 0/2"):
        open_run_dir(tmp_path, _manifest(_spec(), Shard(0, 2)))
    # The same configuration reopens and records a second invocation.
    again = open_run_dir(tmp_path, _manifest(_spec()), argv=["second"])
    assert [i["argv"] for i in again["invocations"]] == [["first"], ["second"]]
    stored = json.loads((tmp_path / "manifest.json").read_text())
    assert stored["config_hash"] == _spec().config_hash()
    assert stored["invocations"][0]["versions"]["pyarrow"]


def test_manifest_refuses_a_foreign_nonempty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ResultsError, match=r"not empty and holds no manifest\.json"):
        open_run_dir(tmp_path, _manifest(_spec()))


def test_merge_shards_checks_and_combines(tmp_path: Path) -> None:
    spec = _spec()
    keys = [_key(i) for i in range(12)]
    shards = [Shard(0, 2), Shard(1, 2)]
    for shard in shards:
        _complete_run(
            tmp_path / f"s{shard.index}", [k for k in keys if shard.contains(k)], spec, shard
        )
    _complete_run(tmp_path / "all", keys, spec)
    summary = merge_runs([tmp_path / "s1", tmp_path / "s0"], tmp_path / "merged")
    assert summary.rows == 36 and summary.config_hash == spec.config_hash()
    pd.testing.assert_frame_equal(
        read_responses(tmp_path / "merged"), read_responses(tmp_path / "all")
    )
    merged_manifest = read_manifest(tmp_path / "merged")
    assert len(merged_manifest["merged_from"]) == 2 and merged_manifest["shard"] is None

    with pytest.raises(ResultsError, match="shards 1/2 are missing"):
        merge_runs([tmp_path / "s0"], tmp_path / "m2")
    with pytest.raises(ResultsError, match="unsharded run with shards"):
        merge_runs([tmp_path / "s0", tmp_path / "all"], tmp_path / "m3")
    with pytest.raises(ResultsError, match="not empty"):
        merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "flat.parquet")
    assert len(read_responses(tmp_path / "flat.parquet")) == 36


def test_merge_refuses_other_configs_and_duplicates(tmp_path: Path) -> None:
    _complete_run(tmp_path / "a", [_key(1)], _spec())
    _complete_run(tmp_path / "b", [_key(2)], _spec(model="other"))
    with pytest.raises(ConfigMismatchError, match="model: 'tiny' -> 'other'"):
        merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    _complete_run(tmp_path / "c", [_key(1)], _spec())
    with pytest.raises(ResultsError, match="appear more than once"):
        merge_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "m")
    # Rows of another model are not duplicates: allow_mixed merges both models into one table.
    assert merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "m", allow_mixed=True).rows == 6


def test_merge_refuses_unfinished_runs(tmp_path: Path) -> None:
    open_run_dir(tmp_path / "r", _manifest(_spec()))
    with pytest.raises(ResultsError, match="run not finished"):
        merge_runs([tmp_path / "r"], tmp_path / "m")


@settings(max_examples=50, deadline=None)
@given(
    keys=st.lists(
        st.builds(
            SessionKey,
            st.text(max_size=8),
            st.text(max_size=8),
            st.text(max_size=8),
            st.integers(1, 10**6),
        ),
        max_size=30,
    ),
    count=st.integers(1, 7),
)
def test_shards_partition_every_key_exactly_once(keys: list[SessionKey], count: int) -> None:
    for key in keys:
        owners = [i for i in range(count) if Shard(i, count).contains(key)]
        assert len(owners) == 1


def test_shard_parse_and_stability() -> None:
    assert Shard.parse(" 1/4 ") == Shard(1, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    # Pinned values: the partition must never change between versions, or shards stop merging.
    picks = [i for i in range(20) if Shard(0, 3).contains(SessionKey("study", "e", str(i), i + 1))]
    assert picks == PINNED_SHARD0_OF3


PINNED_SHARD0_OF3 = [11, 14, 15, 17]
