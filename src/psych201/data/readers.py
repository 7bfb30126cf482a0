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

import errno
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from psych201.data.harmonise import harmonise_with_report
from psych201.data.issues import DataError, IssueLog, OnError
from psych201.data.markers import MarkerError, parse_responses
from psych201.data.records import Session
from psych201.errors import StorageError

#: Lines longer than this are rejected without being held in memory (the longest real session is
#: ~120 K characters; the contributor guideline is 32 K tokens).
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

#: The data file of a study folder, in order of preference.
STUDY_FILES: tuple[str, ...] = (
    "prompts.jsonl.zip",
    "prompts.zip",
    "prompts_jsonl.zip",
    "prompts.jsonl",
    "prompts.parquet",
)
_SUFFIXES: tuple[tuple[str, Literal["zip", "jsonl", "parquet"]], ...] = (
    (".jsonl.zip", "zip"),
    (".zip", "zip"),
    (".jsonl", "jsonl"),
    (".parquet", "parquet"),
)

#: Fields every line must have; everything else is metadata.
REQUIRED_FIELDS: tuple[str, ...] = ("text", "experiment", "participant")

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

TableFormat = Literal["parquet", "jsonl", "arrow"]

LFS_PREFIX = b"version https://git-lfs.github.com/spec/"
LFS_MESSAGE = "this is a Git LFS pointer, not data: fetch the real file (git lfs pull)"
_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StudySource:
    """One study to read: its id (``name``) and the data file (``path``).

    For one study of a multi-study table, ``path`` is the table (its file or folder), ``table``
    every file of it in order (a ``save_to_disk`` folder for ``arrow``) and ``table_format`` how
    to read them; only the rows whose ``study`` is ``name`` belong to this source.
    """

    name: str
    path: Path
    table: tuple[Path, ...] = ()
    table_format: TableFormat | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this source reads (a table's files are shared with its other studies)."""
        return self.table or (self.path,)

    @property
    def format(self) -> Literal["zip", "jsonl", "parquet", "arrow"]:
        if self.table_format is not None:
            return self.table_format
        fmt = _format_of(self.path)
        if fmt is None:  # discover_studies never builds one; a hand-made one may be wrong
            raise DataError("unsupported file type", file=str(self.path), code="unsupported")
        return fmt


def discover_studies(path: str | Path) -> list[StudySource]:
    """The studies under ``path`` (a study folder, a data file or a dataset directory), by name.

    Raises :class:`DataError` when the path does not exist, holds no study, or two sources would
    give the same study id.
    """
    root = Path(path)
    if not root.exists():
        raise DataError("no such file or directory", file=str(root), code="not-found")
    if root.is_file():
        if _format_of(root) is None:
            raise DataError(
                "unsupported file type: expected a .zip, .jsonl or .parquet file or a folder",
                file=str(root),
                code="unsupported",
            )
        return _table_sources(root, (root,)) or [StudySource(_study_name(root), root)]
    own = _study_file_in(root)
    if own is not None:
        return [StudySource(root.name, own)]
    if any((root / name).is_file() for name in SAVED_DATASET_FILES):
        return _saved_dataset_sources(root)
    found: dict[str, StudySource] = {}
    candidates: list[StudySource] = []
    shards: list[Path] = []  # top-level multi-study Parquet files: together, one table
    for child in sorted(root.iterdir()):
        if _ignored(child.name):
            continue
        if child.is_dir():
            data = _study_file_in(child)
            if data is not None:
                candidates.append(StudySource(child.name, data))
        elif _format_of(child) == "parquet" and _has_study_column(child):
            shards.append(child)
        elif _format_of(child) == "jsonl" and _jsonl_is_table(child):
            candidates.extend(_table_sources(child, (child,)))
        elif _format_of(child):
            candidates.append(StudySource(_study_name(child), child))
    if shards:
        candidates.extend(_table_sources(root, tuple(shards)))
    if not candidates:
        # A hub-style dataset folder: Parquet shards below (data/*.parquet) and a README card.
        nested = sorted(
            p
            for p in root.rglob("*.parquet")
            if p.is_file() and not any(_ignored(part) for part in p.relative_to(root).parts)
        )
        if nested and all(_has_study_column(p) for p in nested):
            candidates.extend(_table_sources(root, tuple(nested)))
    for source in candidates:
        if source.name in found:
            raise DataError(
                f"study {source.name!r} is given twice: {found[source.name].path} and "
                f"{source.path}",
                file=str(root),
                code="duplicate-study",
            )
        found[source.name] = source
    if not found:
        raise DataError(
            "no Psych-201 study here: expected a folder with prompts.jsonl.zip (or prompts.zip, "
            "prompts_jsonl.zip, prompts.jsonl), a .zip/.jsonl/.parquet file, or a directory of "
            "those",
            file=str(root),
            code="no-study",
        )
    return list(found.values())


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


class _DuplicateField(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently; a transcript with two "text" fields
    # is ambiguous, so refuse it.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateField(key)
        obj[key] = value
    return obj


class _StudyReader:
    """Reads one study source; holds the per-study state used for duplicate detection."""

    def __init__(
        self,
        source: StudySource,
        on_error: OnError,
        log: IssueLog,
        max_line_bytes: int,
        strict_rts: bool,
    ) -> None:
        self.source = source
        self.on_error = on_error
        self.log = log
        self.max_line_bytes = max_line_bytes
        self.strict_rts = strict_rts
        self.line = 0  # running line number across the members of a zip
        self.member_line = 0
        self.ordinal = 0  # rows of this study read so far (a table's line numbers)
        self.seen_keys: dict[tuple[str, str, str], int] = {}
        self.records = 0  # non-blank lines (rows) seen, good or bad
        self.seen_texts: dict[bytes, int] = {}

    # -- policy ------------------------------------------------------------------------------

    def _problem(self, error: DataError) -> None:
        """A line-level error: raise it (fail) or count and log it (skip)."""
        if self.on_error == "fail":
            raise error
        self.log.add(error.to_issue())
        self.log.skipped_lines += 1

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

    # -- one line ----------------------------------------------------------------------------

    def _from_bytes(self, raw: bytes, label: str, member_line: int) -> Session | None:
        if self.source.table:
            # One study of a JSONL table: other studies' lines are not ours to read or report.
            # A line whose study cannot be read belongs to the table's default study.
            if (_peek_study(raw) or _default_study(self.source.path)) != self.source.name:
                return None
            self.ordinal += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            self._problem(
                DataError(
                    f"not valid UTF-8: byte 0x{raw[error.start]:02X} at byte {error.start + 1} "
                    "(Latin-1 or Windows-1252? re-save the file as UTF-8)",
                    file=label,
                    line=member_line,
                    column=error.start + 1,
                    code="encoding",
                )
            )
            return None
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicate_fields)
        except _DuplicateField as error:
            self._problem(
                DataError(
                    f"field {error.key!r} appears twice in one JSON object",
                    file=label,
                    line=member_line,
                    code="duplicate-field",
                )
            )
            return None
        except json.JSONDecodeError as error:
            self._problem(
                DataError(
                    f"invalid JSON: {error.msg}",
                    file=label,
                    line=member_line,
                    column=error.colno,
                    code="json",
                )
            )
            return None
        except RecursionError:
            self._problem(
                DataError(
                    "invalid JSON: nested too deeply", file=label, line=member_line, code="json"
                )
            )
            return None
        except ValueError as error:
            # Python refuses to convert integers of more than 4,300 digits (CVE-2020-10735).
            self._problem(
                DataError(
                    f"invalid JSON: a number too long to read ({str(error).split(';')[0]})",
                    file=label,
                    line=member_line,
                    code="json",
                )
            )
            return None
        if not isinstance(obj, dict):
            self._problem(
                DataError(
                    f"the line is {_type_name(obj)}, not a JSON object with text, experiment "
                    "and participant",
                    file=label,
                    line=member_line,
                    code="not-object",
                )
            )
            return None
        flags: tuple[bool | None, bool | None] = (None, None)
        if self.source.table:
            obj, flags = _table_fields(obj, table=True)
        if ("\\ud" in line or "\\uD" in line) and not _encodable(obj):
            self._problem(
                DataError(
                    "a lone UTF-16 surrogate escape (\\udXXX) that is not a character",
                    file=label,
                    line=member_line,
                    code="surrogate",
                )
            )
            return None
        line_number = self.ordinal if self.source.table else self.line
        return self._from_record(obj, label, member_line, line_number, self.source.name, flags)

    def _from_record(
        self,
        obj: dict[str, Any],
        label: str,
        where: int,
        line: int,
        study: str,
        flags: tuple[bool | None, bool | None] = (None, None),
    ) -> Session | None:
        """Validate one record and build its Session; ``where`` locates errors in the file."""

        def problem(reason: str, code: str, column: int | None = None) -> None:
            self._problem(DataError(reason, file=label, line=where, column=column, code=code))

        if "text" not in obj:
            problem(
                "no 'text' field (every line needs text, experiment and participant)",
                "text-missing",
            )
            return None
        text = obj["text"]
        if not isinstance(text, str):
            problem(f"'text' is {_type_name(text)}, not a string", "text-type")
            return None
        ids: dict[str, str] = {}
        for name in ("experiment", "participant"):
            if name not in obj:
                problem(
                    f"no {name!r} field (every line needs text, experiment and participant)",
                    "field-missing",
                )
                return None
            value = _identifier(obj[name])
            if value is None:
                problem(
                    f"{name!r} is {_type_name(obj[name])}, not a string or integer", "field-type"
                )
                return None
            if not value.strip():
                problem(f"{name!r} is an empty string; every line needs a {name} id", "field-type")
                return None
            ids[name] = value
        try:
            responses = parse_responses(text)
        except MarkerError as error:
            problem(error.reason, "marker", error.column)
            return None
        experiment, participant = ids["experiment"], ids["participant"]
        key = (study, experiment, participant)
        if key in self.seen_keys:
            problem(
                f"experiment {experiment!r} participant {participant!r} already appears on line "
                f"{self.seen_keys[key]} (participants must be unique within an experiment)",
                "duplicate-key",
            )
            return None
        metadata = {k: v for k, v in obj.items() if k not in REQUIRED_FIELDS}
        if "RTs" in metadata and not self._check_rts(metadata["RTs"], len(responses), label, where):
            return None
        self.seen_keys[key] = where
        self._warn_about_content(text, responses, label, where)
        harmonised = harmonise_with_report(metadata)
        if harmonised.problems:
            self.log.unmapped.add(study, harmonised.problems)
        return Session(
            study=study,
            experiment=experiment,
            participant=participant,
            line=line,
            text=text,
            responses=responses,
            metadata=metadata,
            harmonised=harmonised.values,
            source=label,
            in_eval=flags[0],
            psych101_test=flags[1],
        )

    def _check_rts(self, value: Any, n_responses: int, label: str, where: int) -> bool:
        """Warn (or, with strict RTs, fail) on unreadable RTs or a length mismatch."""
        rts = parse_rts(value)
        if rts is None:
            self.log.warn(
                "rt-values",
                f"RTs is {_type_name(value)}, not a list of numbers",
                file=label,
                line=where,
            )
            return True
        bad = sum(1 for rt in rts if rt is None)
        if bad:
            self.log.warn(
                "rt-values", f"{bad} of {len(rts)} RTs are not numbers", file=label, line=where
            )
        # The authors accept an empty RT list as "no RTs recorded".
        if rts and len(rts) != n_responses:
            reason = f"{len(rts)} RTs for {n_responses} responses"
            if self.strict_rts:
                self._problem(DataError(reason, file=label, line=where, code="rt-length"))
                return False
            self.log.warn("rt-length", reason, file=label, line=where)
        return True

    def _warn_about_content(
        self, text: str, responses: tuple[Any, ...], label: str, where: int
    ) -> None:
        if not responses:
            self.log.warn("no-responses", "no << >> response in the text", file=label, line=where)
        blank = [r for r in responses if not r.text.strip()]
        if blank:
            self.log.warn(
                "empty-response",
                f"{len(blank)} empty or blank response(s), first at text column {blank[0].start}",
                file=label,
                line=where,
            )
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in self.seen_texts:
            self.log.warn(
                "duplicate-text",
                f"same text as line {self.seen_texts[digest]}",
                file=label,
                line=where,
            )
        else:
            self.seen_texts[digest] = where


# ---------------------------------------------------------------------------------------------
# Multi-study tables


def _default_study(path: Path) -> str:
    """The study of a table row that names none: the table's file stem or folder name."""
    return _study_name(path) if path.is_file() else path.name


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


def _peek_study(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    study = obj.get("study") if isinstance(obj, dict) else None
    return study if isinstance(study, str) and study else None


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


def parse_rts(value: Any) -> list[float | None] | None:
    """An RT list as floats (NaN where missing, None where unreadable); None if not a list.

    Accepts a JSON list of numbers or numeric strings, and the string forms found in real data
    (``"[1159, 987]"``, ``"['1159', '987']"``, with ``nan`` entries).
    """
    if isinstance(value, str):
        body = value.strip()
        if not (body.startswith("[") and body.endswith("]")):
            return None
        items: list[Any] = [item.strip().strip("'\"") for item in body[1:-1].split(",")]
        if items == [""]:
            items = []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    return [_rt(item) for item in items]


def _rt(item: Any) -> float | None:
    if item is None:
        return math.nan
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float):
        return float(item)
    if isinstance(item, str):
        text = item.strip()
        if text.lower() in ("", "nan", "none", "null"):
            return math.nan
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _iter_raw_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | int]]:
    """(line number, bytes) per line; an over-long line yields its size instead of its bytes.

    ``readline(limit)`` never holds more than ``max_bytes`` of one line: the rest of a long line is
    consumed in 1 MiB chunks and only counted.
    """
    number = 0
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            size = len(chunk)
            del chunk
            while True:
                more = stream.readline(_READ_CHUNK)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield number, size
            continue
        yield number, chunk


def _format_of(path: Path) -> Literal["zip", "jsonl", "parquet"] | None:
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    return None


def _study_name(path: Path) -> str:
    """The file stem without its data suffix; a ``prompts*`` file takes its folder's name."""
    name = path.name
    for suffix, _ in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.lower().startswith("prompts"):
        try:
            return path.resolve(strict=True).parent.name
        except RuntimeError as error:  # a symlink loop before Python 3.13 (then an OSError)
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from error
    return name


def _study_file_in(folder: Path) -> Path | None:
    for name in STUDY_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _ignored(name: str) -> bool:
    """macOS resource forks and hidden files are never data."""
    return name.startswith((".", "__MACOSX"))


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def _identifier(value: Any) -> str | None:
    """Experiment and participant ids as strings; ints are fine, NaN/bool/None/lists are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _encodable(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)
