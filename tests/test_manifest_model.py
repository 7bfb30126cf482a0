"""The typed run manifest (results/manifest_model.py) on a real run directory and damaged ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from cli_helpers import invoke
from psych201.results.manifest import MANIFEST_FORMAT, load_manifest
from psych201.results.manifest_model import Manifest
from psych201.results.manifest_read import read_manifest
from psych201.results.writer import ResultsError
from psych201.simulate.demo import DEMO_DIR


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifest") / "run"
    result = invoke(["score", "--data", str(DEMO_DIR), "--engine", "oracle", "--studies",
                     "simulated_bandit", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_the_typed_manifest_reads_what_the_dict_holds(run_dir: Path) -> None:
    raw = load_manifest(run_dir)
    manifest = read_manifest(run_dir)
    assert manifest.format == MANIFEST_FORMAT
    assert get_args(Manifest.model_fields["format"].annotation) == (MANIFEST_FORMAT,)
    assert manifest.complete and manifest.status == raw["status"] == "complete"
    assert manifest.config_hash == raw["config_hash"]
    assert manifest.spec is not None
    for key in ("model", "engine", "split", "seed", "studies", "window", "extra"):
        assert getattr(manifest.spec, key) == raw["spec"][key]
    assert manifest.table is not None and manifest.table.rows == raw["table"]["rows"]
    assert manifest.part_records is True and manifest.shard is None
    with pytest.raises(ValueError):  # frozen: a reader cannot change what it read
        manifest.status = "running"  # type: ignore[misc]


def _rewritten(run_dir: Path, tmp_path: Path, change: dict[str, object]) -> Path:
    body = {**json.loads((run_dir / "manifest.json").read_text()), **change}
    body.pop("checksum", None)
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    return tmp_path


def test_an_older_manifest_reads_missing_fields_as_none(run_dir: Path, tmp_path: Path) -> None:
    spec = json.loads((run_dir / "manifest.json").read_text())["spec"]
    older = {k: v for k, v in spec.items() if k not in ("window", "extra")}
    manifest = read_manifest(_rewritten(run_dir, tmp_path, {"spec": older}))
    assert manifest.spec is not None and manifest.spec.window is None and manifest.spec.extra == {}


@pytest.mark.parametrize(("change", "field"), [
    ({"spec": {"seed": "0"}}, "spec.seed"),
    ({"spec": {"studies": "simulated_bandit"}}, "spec.studies"),
    ({"invocations": [5]}, "invocations.0"),
    ({"format": "psych201-run/0"}, None),  # another version: refused by the reader itself
])
def test_a_damaged_field_is_named_with_the_file(run_dir: Path, tmp_path: Path,
                                                change: dict[str, object],
                                                field: str | None) -> None:
    folder = _rewritten(run_dir, tmp_path, change)
    with pytest.raises(ResultsError, match="manifest") as raised:
        read_manifest(folder)
    assert str(folder / "manifest.json") in str(raised.value)
    if field is not None:
        assert f"damaged manifest: {field}:" in str(raised.value)


def test_every_manifest_is_written_through_the_model(run_dir: Path, tmp_path: Path) -> None:
    """save_manifest writes what the Manifest model accepts and dumps: a run's manifest comes back
    field for field, an older one gains no field, and a mistyped one never reaches the file."""
    from pydantic import ValidationError

    from psych201.results.manifest import CHECKSUM_KEY, save_manifest

    raw = load_manifest(run_dir)
    save_manifest(tmp_path, raw)
    again = load_manifest(tmp_path)
    assert list(again) == list(raw)  # same fields, same order
    assert {k: v for k, v in again.items() if k not in ("updated", CHECKSUM_KEY)} == {
        k: v for k, v in raw.items() if k not in ("updated", CHECKSUM_KEY)}
    older = {k: v for k, v in raw.items() if k not in ("condition_role", "part_records")}
    save_manifest(tmp_path, older)
    assert "condition_role" not in load_manifest(tmp_path)
    assert "part_records" not in load_manifest(tmp_path)
    with pytest.raises(ValidationError, match="seed"):
        save_manifest(tmp_path, {**raw, "seed": "0"})
    assert load_manifest(tmp_path)["seed"] == raw["seed"]  # the file kept the last good one
