"""The run manifest as a typed record: what readers that only *look* at a run directory use.

:func:`read_manifest` reads ``DIR/manifest.json`` through :func:`~.manifest.load_manifest` (which
refuses another format and names a mistyped field) and returns a frozen :class:`Manifest`:
``manifest.spec.split`` instead of ``manifest.get("spec", {}).get("split")``. The version is
the ``format`` field (``psych201-run/1``); a field a newer psych201 adds is kept (``extra``) and a
field an older one did not write reads as ``None``, so resume decisions stay the same: a missing
value never equals a wanted one. Code that updates a manifest keeps the dict of
:func:`~.manifest.load_manifest` and :func:`~.manifest.save_manifest`, the one writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from psych201.results.manifest import load_manifest, manifest_path
from psych201.results.writer import ResultsError


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class SpecRecord(_Record):
    """``manifest["spec"]``: the :class:`~psych201.results.schema.RunSpec` as stored."""

    model: str | None = None
    engine: str | None = None
    condition: str | None = None
    alignment: str | None = None
    dtype: str | None = None
    data: str | None = None
    data_hash: str | None = None
    split: str | None = None
    seed: int | None = None
    studies: list[str] | None = None
    limit: int | None = None
    window: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("extra", mode="before")
    @classmethod
    def _no_extra(cls, value: Any) -> Any:
        return {} if value is None else value  # written as null by hand: nothing recorded


class ShardRecord(_Record):
    index: int
    count: int


class TableRecord(_Record):
    """``manifest["table"]``: the final table's file, row count and SHA-256."""

    file: str | None = None
    rows: int | None = None
    sha256: str | None = None


class Manifest(_Record):
    """A run directory's manifest (see :mod:`psych201.results.manifest` for the fields)."""

    format: Literal["psych201-run/1"]
    config_hash: str
    status: str | None = None
    spec: SpecRecord | None = None
    condition_role: str | None = None  # absent from manifests written before roles were recorded
    shard: ShardRecord | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    engine: dict[str, Any] = Field(default_factory=dict)
    tokenizer: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    invocations: list[dict[str, Any]] = Field(default_factory=list)
    table: TableRecord | None = None
    part_records: bool = False

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def read_manifest(run_dir: Path) -> Manifest:
    """The manifest of ``run_dir``, typed (``ResultsError`` where it is missing or damaged)."""
    return typed_manifest(load_manifest(run_dir), run_dir)


def typed_manifest(raw: dict[str, Any], run_dir: Path) -> Manifest:
    """``raw`` (what :func:`~.manifest.load_manifest` read from ``run_dir``) as a
    :class:`Manifest`; ``ResultsError`` naming the file and the first field that does not fit."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        path = manifest_path(run_dir) if Path(run_dir).is_dir() else Path(run_dir)
        raise ResultsError(f"{path}: damaged manifest: {where}: {first['msg']}") from exc
