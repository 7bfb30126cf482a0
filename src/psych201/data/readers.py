"""Stream Psych-201 sessions from study folders, zips, JSONL and Parquet files, checking each line.

A study is whatever :func:`discover_studies` finds: a folder holding ``prompts.jsonl.zip``
(or ``prompts.zip``, ``prompts_jsonl.zip``, ``prompts.jsonl``, ``prompts.parquet``), a single such
file, or — for a whole dataset — a directory of study folders or of ``<study>.jsonl|.zip|.parquet``
files. The study id is the folder name, or the file stem unless the file is named ``prompts*``.

Files are read line by line with a byte limit per line, so memory stays bounded whatever the input
(some studies unzip to 75 MB; a corrupt file may hold one 100 MB line). Every line is checked:
UTF-8, JSON (bare ``NaN`` accepted, duplicate fields rejected), the three required fields, the
``<<``/``>>`` markers, duplicate (experiment, participant) pairs, RT list lengths. See
:data:`psych201.data.issues.ISSUE_CODES` for every error and warning.

A multi-study table (a Parquet file or JSONL file with a ``study`` column, a hub-style folder of
Parquet shards with a README card, or a ``datasets`` ``save_to_disk`` folder) is split into its
studies by that column: one :class:`StudySource` per study, which reads only that study's rows
(a Parquet table is partitioned by study once, in one streaming pass, into a cache: see
``_partitions``). Its
``in_eval``/``is_psych101``/``is_psych101_test`` columns become ``Session.in_eval`` and
``Session.psych101_test``; the table's bookkeeping columns are not metadata, and a null metadata
cell (a column another study has) is absent, not a value.

``Session.line`` is the 1-based line number, counted across the JSONL members of a zip in archive
order (it equals the line in the file when there is one member); for Parquet it is the ``line``
column when present (a dataset built by ``psych201 data build``), else the row number. In a
multi-study table without a ``line`` column it is the row's position within its study (1, 2, …
in table order), so a table written study by study from the study folders keeps their lines.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from psych201.data.checks import _LineChecker
from psych201.data.discover import discover_studies
from psych201.data.issues import DataError, IssueLog, OnError
from psych201.data.layout import (
    STUDY_FILES,
    StudySource,
    TableFormat,
    _default_study,
    _ignored,
    _unsafe_member,
)
from psych201.data.lines import (
    _BOM,
    _READ_CHUNK,
    DEFAULT_MAX_LINE_BYTES,
    LFS_MESSAGE,
    LFS_PREFIX,
    REQUIRED_FIELDS,
    _iter_raw_lines,
    parse_rts,
)
from psych201.data.records import Session
from psych201.data.tables import (
    _SOURCE_FILE,
    _SOURCE_ROW,
    SAVED_DATASET_FILES,
    TABLE_COLUMNS,
    _partitions,
    _saved_tables,
    _table_fields,
)
from psych201.errors import StorageError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "LFS_MESSAGE",
    "LFS_PREFIX",
    "REQUIRED_FIELDS",
    "SAVED_DATASET_FILES",
    "STUDY_FILES",
    "TABLE_COLUMNS",
    "StudySource",
    "TableFormat",
    "discover_studies",
    "iter_sessions",
    "parse_rts",
]


def iter_sessions(
    path: str | Path | StudySource,
    *,
    on_error: OnError = "fail",
    log: IssueLog | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    strict_rts: bool = False,
) -> Iterator[Session]:
    """Stream every session under ``path``, study by study, with responses parsed and metadata
    harmonised.

    ``on_error="fail"`` raises the first :class:`DataError`; ``"skip"`` drops the broken line (or
    member or file), counts it in ``log`` and logs a warning. Warnings (empty responses, RT list
    length, BOM, …) never stop reading; with ``strict_rts`` an RT length mismatch is an error.
    Finding the studies (:func:`discover_studies`) raises in both modes: there is nothing to skip
    to. A :class:`StudySource` reads that one study (one study of a table, say).
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    issues = log if log is not None else IssueLog()
    sources = [path] if isinstance(path, StudySource) else discover_studies(path)
    for source in sources:
        reader = _StudyReader(source, on_error, issues, max_line_bytes, strict_rts)
        yield from reader.sessions()


class _StudyReader(_LineChecker):
    """Reads one study source: its zip, JSONL or Parquet files, or its rows of a table."""

    def sessions(self) -> Iterator[Session]:
        fmt = self.source.format
        try:
            if fmt == "zip":
                yield from self._zip()
            elif fmt == "arrow":
                yield from self._saved_dataset()
            elif fmt == "parquet" and self.source.table:
                yield from self._partition()
            else:
                for path in self.source.files:
                    yield from self._jsonl_file(path) if fmt == "jsonl" else self._parquet(path)
        except DataError as error:
            # A file-level error: the rest of the file cannot be read.
            if self.on_error == "fail":
                raise
            self.log.add(error.to_issue())
            return
        if self.records == 0:
            # An empty study would score as "0 responses" and look like success.
            empty = DataError(
                "no participants in this file: it is empty or holds only blank lines",
                file=str(self.source.path),
                code="empty",
            )
            if self.on_error == "fail":
                raise empty
            self.log.add(empty.to_issue())

    # -- containers --------------------------------------------------------------------------

    def _check_lfs(self, path: Path) -> None:
        try:
            with open(path, "rb") as stream:
                head = stream.read(len(LFS_PREFIX))
        except OSError as error:
            # The OS refused (permissions, a symlink loop): exit 3, not "invalid data".
            raise StorageError(f"{path}: cannot open: {error.strerror or error}") from None
        if head == LFS_PREFIX:
            raise DataError(LFS_MESSAGE, file=str(path), line=1, code="lfs-pointer")

    def _zip(self) -> Iterator[Session]:
        path = self.source.path
        self._check_lfs(path)
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(
                f"not a readable zip archive (truncated or corrupt: {error})",
                file=str(path),
                code="bad-zip",
            ) from None
        with archive:
            members = []
            for info in archive.infolist():
                name = info.filename
                if info.is_dir() or not name.endswith(".jsonl"):
                    continue
                if _unsafe_member(name):
                    self._problem(
                        DataError(
                            f"unsafe member name {name!r} (absolute path or '..'): not read",
                            file=str(path),
                            code="unsafe-member",
                        )
                    )
                    continue
                if any(_ignored(part) for part in PurePosixPath(name).parts):
                    continue  # __MACOSX/ and ._* resource forks
                members.append(info)
            if not members:
                raise DataError(
                    "the zip holds no .jsonl member (expected prompts.jsonl)",
                    file=str(path),
                    code="no-jsonl",
                )
            for info in members:
                label = f"{path}:{info.filename}"
                try:
                    # ZipExtFile.readline is pure Python; a C buffer on top is ~3x faster.
                    with io.BufferedReader(archive.open(info), _READ_CHUNK) as stream:  # type: ignore[type-var]
                        yield from self._jsonl_stream(stream, label)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as error:
                    raise DataError(
                        f"cannot read the member to the end ({error}): the zip is truncated or "
                        "corrupt",
                        file=label,
                        line=self.member_line + 1,
                        code="read",
                    ) from None

    def _jsonl_file(self, path: Path) -> Iterator[Session]:
        self._check_lfs(path)
        try:
            with open(path, "rb") as stream:
                yield from self._jsonl_stream(stream, str(path))
        except OSError as error:
            raise DataError(
                f"cannot read the file to the end: {error}",
                file=str(path),
                line=self.member_line + 1,
                code="read",
            ) from None

    def _jsonl_stream(self, stream: IO[bytes], label: str) -> Iterator[Session]:
        self.member_line = 0
        crlf_reported = False
        for member_line, payload in _iter_raw_lines(stream, self.max_line_bytes):
            self.line += 1
            self.member_line = member_line
            if isinstance(payload, int):
                self._problem(
                    DataError(
                        f"line is {payload:,} bytes, over the limit of {self.max_line_bytes:,} "
                        "bytes (if it is genuine, raise the limit with `psych201 data build SRC "
                        "OUT.parquet --max-line-mb N` and read the Parquet file instead)",
                        file=label,
                        line=member_line,
                        code="line-too-long",
                    )
                )
                continue
            if member_line == 1:
                if payload.startswith(LFS_PREFIX):
                    raise DataError(LFS_MESSAGE, file=label, line=1, code="lfs-pointer")
                if payload.startswith(_BOM):
                    payload = payload[len(_BOM) :]
                    self.log.warn("bom", "UTF-8 byte order mark removed", file=label, line=1)
            if payload.endswith(b"\r\n") and not crlf_reported:
                crlf_reported = True
                self.log.warn("crlf", "Windows (CRLF) line endings", file=label, line=member_line)
            raw = payload.rstrip(b"\r\n")
            if not raw.strip():
                continue  # blank lines (a trailing newline, say) carry nothing
            self.records += 1
            session = self._from_bytes(raw, label, member_line)
            if session is not None:
                yield session

    def _parquet(self, path: Path) -> Iterator[Session]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._check_lfs(path)
        label = str(path)
        self.member_line = 0
        try:
            parquet = pq.ParquetFile(path)
            names = set(parquet.schema_arrow.names)
            # A dataset written by `data build` carries the raw metadata as one JSON column.
            columns = (
                [c for c in (*REQUIRED_FIELDS, *TABLE_COLUMNS) if c in names]
                if "metadata_raw" in names
                else None
            )
            offset = 0
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=columns)
                yield from self._table_rows(table, label, offset)
                offset += table.num_rows
        except (pa.ArrowException, OSError) as error:
            raise DataError(
                f"not a readable Parquet file: {error}",
                file=label,
                line=self.member_line + 1 if self.member_line else None,
                code="bad-parquet",
            ) from None

    def _partition(self) -> Iterator[Session]:
        """This study's rows of a Parquet table, from its partition (see :func:`_partitions`);
        errors name the table's file and row, not the partition's."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        part = _partitions(self.source.path, self.source.table)[self.source.name]
        try:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=64):
                for record in batch.to_pylist():
                    label = str(record.pop(_SOURCE_FILE))
                    self.member_line = int(record.pop(_SOURCE_ROW))
                    self.records += 1
                    session = self._from_parquet_row(record, label, self.member_line)
                    if session is not None:
                        yield session
        except (pa.ArrowException, OSError) as error:
            raise DataError(
                f"cannot read the cached partition {part} of the table: {error}",
                file=str(self.source.path),
                code="bad-parquet",
            ) from None

    def _saved_dataset(self) -> Iterator[Session]:
        for label, table in _saved_tables(self.source.path):
            self.member_line = 0
            yield from self._table_rows(table, label, 0)

    def _table_rows(self, table: Any, label: str, offset: int) -> Iterator[Session]:
        """The sessions of an Arrow table's rows (this study's only, for a table source);
        ``offset`` is the table's first row in its file."""
        import pyarrow.compute as pc

        if self.source.table:
            studies = pc.fill_null(table.column("study"), _default_study(self.source.path))
            keep = pc.equal(studies, self.source.name)
            rows = pc.indices_nonzero(keep).to_pylist()
        else:
            rows = range(table.num_rows)
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            for index, record in zip(chunk, table.take(list(chunk)).to_pylist(), strict=True):
                self.member_line = offset + int(index) + 1
                self.records += 1
                session = self._from_parquet_row(record, label, self.member_line)
                if session is not None:
                    yield session

    def _from_parquet_row(self, record: dict[str, Any], label: str, row: int) -> Session | None:
        fields, flags = _table_fields(record, table=bool(self.source.table))
        if "metadata_raw" in record:
            try:
                metadata = json.loads(record.get("metadata_raw") or "{}")
            except json.JSONDecodeError as error:
                self._problem(
                    DataError(
                        f"metadata_raw is not valid JSON: {error.msg}",
                        file=label,
                        line=row,
                        code="json",
                    )
                )
                return None
            if not isinstance(metadata, dict):
                metadata = {"metadata_raw": metadata}
            fields = {**{k: record[k] for k in REQUIRED_FIELDS if k in record}, **metadata}
        self.ordinal += 1
        default = self.ordinal if self.source.table else row
        line = record.get("line") or default
        study = self.source.name if self.source.table else record.get("study") or self.source.name
        return self._from_record(fields, label, row, int(line), str(study), flags)
