"""The run manifest as a typed record: the one shape of ``DIR/manifest.json``, read and written.

:class:`Manifest` is what readers that only *look* at a run directory use (through
:func:`psych201.results.manifest_read.read_manifest`): ``manifest.spec.split`` instead of
``manifest.get("spec", {}).get("split")``. It is also what builds the JSON a run writes:
:func:`~psych201.results.manifest.build_manifest` makes a :class:`Manifest` and
:func:`~psych201.results.manifest.save_manifest` writes every manifest through
:func:`written_manifest`, so nothing reaches the file that the model does not accept. The
version is the ``format`` field (``psych201-run/1``); a field a newer psych201 adds is kept
(``extra``) and a field an older one did not write reads as ``None`` and is not written back, so
resume decisions stay the same and an old manifest keeps its fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    """A run directory's manifest (see :mod:`psych201.results.manifest` for the fields).

    Fields are declared in the order a run writes them; fields not declared here (a merge's
    sources, a repair's record) are kept after them, in the order they came."""

    format: Literal["psych201-run/1"]
    config_hash: str | None  # None: a merge of runs of different configurations
    spec: SpecRecord | None = None
    condition_role: str | None = None  # absent from manifests written before roles were recorded
    shard: ShardRecord | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    engine: dict[str, Any] = Field(default_factory=dict)
    tokenizer: dict[str, Any] = Field(default_factory=dict)
    alignment: str | None = None
    dtype: str | None = None
    seed: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None
    created: str | None = None
    updated: str | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    part_records: bool = False
    invocations: list[dict[str, Any]] = Field(default_factory=list)
    table: TableRecord | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def written(self) -> dict[str, Any]:
        """The JSON object of the manifest file: the fields that were given, nothing added."""
        # python mode: values pass as they are (a NaN stays NaN, as json.dumps always wrote it)
        return self.model_dump(exclude_unset=True)


def written_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` as the model writes it (``pydantic.ValidationError`` where it does not fit:
    a bug in the code that built it, never a user's input)."""
    return Manifest.model_validate(dict(manifest)).written()
