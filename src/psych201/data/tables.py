"""Multi-study tables: split a Parquet/JSONL table or saved dataset into its studies, cached."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psych201.data.issues import DataError
from psych201.data.layout import StudySource, _default_study, _format_of
from psych201.data.lines import (
    _BOM,
    DEFAULT_MAX_LINE_BYTES,
    REQUIRED_FIELDS,
    _iter_raw_lines,
    _peek_study,
)

#: Columns of a multi-study table (the published datasets, ``data build``) that are bookkeeping,
#: not participant metadata.
TABLE_COLUMNS: frozenset[str] = frozenset(
    {
        "study",
        "line",
        "in_eval",
        "is_psych101",
        "is_psych101_test",
        "participant_reindexed",
        "metadata_raw",
        "__index_level_0__",
    }
)
#: The files of a ``datasets`` ``save_to_disk`` folder (one split, or a dict of splits).
SAVED_DATASET_FILES: tuple[str, ...] = ("state.json", "dataset_dict.json")


def _table_sources(root: Path, files: tuple[Path, ...]) -> list[StudySource]:
    """One source per study of the table made of ``files`` (empty when it is no table)."""
    fmt = _format_of(files[0])
    names: set[str | None] = set()
    if fmt == "parquet":
        if not all(_has_study_column(f) for f in files):
            return []
        names.update(_partitions(root, files))
    elif fmt == "jsonl" and _jsonl_is_table(files[0]):
        for path in files:
            with open(path, "rb") as stream:
                for _, payload in _iter_raw_lines(stream, DEFAULT_MAX_LINE_BYTES):
                    if isinstance(payload, bytes) and not payload.strip():
                        continue
                    names.add(_peek_study(payload) if isinstance(payload, bytes) else None)
    else:
        return []
    default = _default_study(root)
    studies = sorted({default if name is None else str(name) for name in names})
    return [StudySource(name, root, files, fmt) for name in studies]


def _saved_dataset_sources(root: Path) -> list[StudySource]:
    """The studies of a ``datasets`` ``save_to_disk`` folder (by its ``study`` column)."""
    import pyarrow.compute as pc

    names: set[str] = set()
    for label, table in _saved_tables(root):
        if "study" not in table.column_names:
            raise DataError(
                "a saved dataset needs a 'study' column to tell its studies apart",
                file=label,
                code="no-study",
            )
        column = pc.fill_null(table.column("study"), _default_study(root))
        names.update(str(n) for n in pc.unique(column).to_pylist())
    return [StudySource(name, root, (root,), "arrow") for name in sorted(names)]


def _saved_tables(folder: Path) -> Iterator[tuple[str, Any]]:
    """(label, memory-mapped Arrow table) per split of a ``save_to_disk`` folder."""
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise DataError(
            f"reading a saved dataset needs the datasets package ({error})",
            file=str(folder),
            code="unsupported",
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as error:
        raise DataError(
            f"not a readable saved dataset: {error}", file=str(folder), code="bad-dataset"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        parts = [(f"{folder}[{name}]", loaded[name]) for name in sorted(loaded)]
    else:
        parts = [(str(folder), loaded)]
    for label, dataset in parts:
        # save_to_disk writes the rows in order; flatten an index mapping if one is left.
        dataset = dataset.flatten_indices() if dataset._indices is not None else dataset
        yield label, dataset.data.table


def _has_study_column(path: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return "study" in pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        return False  # read as a single study, which reports the error with its file


def _jsonl_is_table(path: Path) -> bool:
    """Whether the first record of a JSONL file has a ``study`` field."""
    try:
        with open(path, "rb") as stream:
            for _, payload in _iter_raw_lines(stream, DEFAULT_MAX_LINE_BYTES):
                if isinstance(payload, int):
                    return False
                if payload.strip():
                    return _peek_study(payload.removeprefix(_BOM)) is not None
    except OSError:
        return False
    return False


_SOURCE_FILE = "__psych201_file"
_SOURCE_ROW = "__psych201_row"


def _partitions(root: Path, files: tuple[Path, ...]) -> dict[str, Path]:
    """One Parquet file per study of a Parquet table, built once and cached.

    The published tables are shuffled: every row group holds every study, so reading one study
    straight from the shards would decode the whole table once per study. One streaming pass
    (row group by row group, bounded memory) writes each study's rows, in table order and with
    their file and row, to ``$PSYCH201_CACHE/tables/<key>/``; the key covers each file's path,
    size and modification time, so a changed table is partitioned again. Built in a temporary
    folder and renamed into place: a crash or a concurrent run never sees half a partition.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    key = hashlib.sha256()
    for path in files:
        stat = path.stat()
        key.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    base = _cache_dir() / "tables"
    target = base / key.hexdigest()[:32]
    index = target / "studies.json"
    if not index.is_file():
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=base, prefix=".partition-") as tmp:
            out = Path(tmp) / "table"
            out.mkdir()
            default = _default_study(root)
            writers: dict[str, Any] = {}
            names: dict[str, str] = {}
            try:
                schema = pa.unify_schemas(
                    [pq.read_schema(f) for f in files], promote_options="permissive"
                )
                schema = schema.append(pa.field(_SOURCE_FILE, pa.string()))
                schema = schema.append(pa.field(_SOURCE_ROW, pa.int64()))
                for path in files:
                    parquet = pq.ParquetFile(path)
                    offset = 0
                    for group in range(parquet.num_row_groups):
                        table = parquet.read_row_group(group)
                        rows = table.num_rows
                        table = table.append_column(_SOURCE_FILE, pa.array([str(path)] * rows))
                        table = table.append_column(
                            _SOURCE_ROW, pa.array(range(offset + 1, offset + rows + 1), pa.int64())
                        )
                        offset += rows
                        table = _conform(table, schema)
                        studies = pc.fill_null(table.column("study"), default)
                        for study in pc.unique(studies).to_pylist():
                            if study not in writers:
                                names[study] = f"{len(names):05d}.parquet"
                                writers[study] = pq.ParquetWriter(out / names[study], schema)
                            writers[study].write_table(table.filter(pc.equal(studies, study)))
            except (pa.ArrowException, OSError) as error:
                raise DataError(
                    f"cannot read the Parquet table: {error}", file=str(root), code="bad-parquet"
                ) from None
            finally:
                for writer in writers.values():
                    writer.close()
            (out / "studies.json").write_text(json.dumps(names, ensure_ascii=False))
            try:
                out.rename(target)
            except OSError:
                if not index.is_file():  # not a concurrent run that finished first
                    raise
    names = json.loads(index.read_text())
    return {str(study): target / name for study, name in names.items()}


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with ``schema``'s columns (nulls where a shard lacks one), in its order."""
    import pyarrow as pa

    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _cache_dir() -> Path:
    # The same root as psych201.scoring.models.cache_root (the data layer imports nothing above).
    env = os.environ.get("PSYCH201_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "psych201"


def _table_fields(
    record: dict[str, Any], *, table: bool
) -> tuple[dict[str, Any], tuple[bool | None, bool | None]]:
    """A table row without its bookkeeping columns, and its (in_eval, psych101_test) flags.

    In a table a null cell is a column of another study, so it is dropped, not kept as null.
    """
    in_eval = _flag(record.get("in_eval"))
    psych101 = _flag(record.get("is_psych101"))
    psych101_test = bool(_flag(record.get("is_psych101_test"))) if psych101 else None
    fields = {
        k: v
        for k, v in record.items()
        if k not in TABLE_COLUMNS and not (table and v is None and k not in REQUIRED_FIELDS)
    }
    return fields, (in_eval, psych101_test)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None
