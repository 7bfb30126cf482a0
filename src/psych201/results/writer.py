"""Crash-safe response tables: atomic Parquet parts as participants finish, then one final table.

A run directory holds ``parts/part-<first>-<last>.parquet``: one part per chunk of finished
participant sessions, ``first``/``last`` being the ordinals of its sessions in the run's
deterministic session order. Each part's Parquet footer lists every session it completes (also
sessions that produced no row, e.g. ineligible for a condition), so resuming only has to read
footers to know what is done. A part appears only whole: it is written to a temporary file in the
same directory and moved into place with ``os.replace`` (atomic on POSIX), so a crash or SIGKILL
at any moment leaves either the complete part or a stray temporary file that the next run removes.

Each part has a *record* beside it, ``parts/part-<first>-<last>.json``: the part file's SHA-256,
row count, session count and key range (first and last session). The record is written (atomically)
just before the part is moved into place, so a part never exists without its record; a record
whose part is missing is what a crash between the two left, and is removed like a temporary file.
A rerun and ``runs verify`` hash each part against its record: a part changed after it was written
(even rewritten as valid Parquet) is named, never adopted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from psych201.atomic import (
    TMP_MARK,
    fsync_dir,
    write_atomic,
    write_bytes_atomic,
    write_text_atomic,
)
from psych201.data.records import SessionKey
from psych201.errors import UsageError
from psych201.results.schema import ADDED_COLUMNS, RESPONSE_SCHEMA, ResponseScore, conform
from psych201.scoring.model_files import sha256_file

PARTS_DIR = "parts"
RESPONSES_FILE = "responses.parquet"
#: The per-study summary `score` writes beside the table (derived from it, safe to rewrite).
SUMMARY_FILE = "summary.json"
#: Footer key holding the JSON list of sessions a part completes.
SESSIONS_KEY = b"psych201.sessions"
#: Footer key holding the config hash of the run that wrote the table.
CONFIG_KEY = b"psych201.config_hash"
#: Row order of a final table: file order within each study (study, line), then response order.
SORT_COLUMNS: tuple[str, ...] = ("study", "line", "experiment", "participant", "response_index")

#: Suffix of a part's record (beside ``part-<first>-<last>.parquet``).
RECORD_SUFFIX = ".json"
#: Suffix a damaged part is moved aside to before its sessions are rescored (kept as evidence).
DAMAGED_SUFFIX = ".damaged"


class ResultsError(UsageError):
    """A run directory or table that psych201 cannot use as it is (names the file and reason)."""


def rows_to_table(rows: Sequence[ResponseScore]) -> pa.Table:
    """The rows as an Arrow table with exactly :data:`RESPONSE_SCHEMA`."""
    columns: dict[str, list[object]] = {name: [] for name in RESPONSE_SCHEMA.names}
    for row in rows:
        for name, value in asdict(row).items():
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=RESPONSE_SCHEMA)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that ``path`` is either absent/old or whole, never partial."""
    write_atomic(path, lambda handle: pq.write_table(table, handle, compression="zstd"))


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of a Parquet file (as :func:`write_parquet_atomic` writes it)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def _key_to_json(key: SessionKey) -> list[object]:
    return [key.study, key.experiment, key.participant, key.line]


def _key_from_json(item: object, source: Path) -> SessionKey:
    if (
        not isinstance(item, list)
        or len(item) != 4
        or not all(isinstance(x, str) for x in item[:3])
        or not isinstance(item[3], int)
    ):
        raise ResultsError(f"{source}: malformed session entry {item!r} in the part footer")
    return SessionKey(item[0], item[1], item[2], item[3])


class PartWriter:
    """Writes the parts of one run directory (``DIR/parts``), each atomically."""

    def __init__(self, run_dir: Path, config_hash: str) -> None:
        self.parts_dir = Path(run_dir) / PARTS_DIR
        self.config_hash = config_hash
        self.parts_dir.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        rows: Sequence[ResponseScore],
        sessions: Sequence[SessionKey],
        *,
        first: int,
        last: int,
    ) -> Path:
        """Write one part: ``rows`` of the finished ``sessions`` (ordinals ``first``..``last``)."""
        if not sessions:
            raise ValueError("a part must complete at least one session")
        table = rows_to_table(rows)
        table = table.replace_schema_metadata(
            {
                SESSIONS_KEY: json.dumps([_key_to_json(k) for k in sessions]).encode(),
                CONFIG_KEY: self.config_hash.encode(),
            }
        )
        path = self.parts_dir / f"part-{first:08d}-{last:08d}.parquet"
        if path.exists():
            raise ResultsError(f"{path}: part already exists; refusing to overwrite finished work")
        data = parquet_bytes(table)
        record = PartRecord(
            file=path.name,
            sha256=hashlib.sha256(data).hexdigest(),
            rows=table.num_rows,
            sessions=len(sessions),
            first=_key_to_json(sessions[0]),
            last=_key_to_json(sessions[-1]),
            config_hash=self.config_hash,
        )
        # The record first: a crash between the two leaves a record without its part (removed
        # on the next run), never a part nobody can vouch for.
        write_text_atomic(record.text(), record_path(path))
        write_bytes_atomic(data, path)
        return path


@dataclass(frozen=True)
class PartRecord:
    """What was written as one part: the file's SHA-256, its rows, sessions and key range."""

    file: str
    sha256: str
    rows: int
    sessions: int
    first: list[object]  # the first session's key (study, experiment, participant, line)
    last: list[object]
    config_hash: str

    def text(self) -> str:
        """The record file's exact text (canonical: any other bytes are a changed record)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def relabel_part(path: Path, config_hash: str) -> None:
    """Re-write the part ``path`` under ``config_hash`` (a grown selection), record first.

    Only a part that is still what its record describes is re-labelled (a damaged one is left
    for the integrity check to set aside and rescore): the new record vouches for the same rows.
    A crash between the record and the part leaves a part whose SHA-256 differs from its record:
    it is rescored, never adopted.
    """
    record_file = record_path(path)
    old: PartRecord | None = None
    if record_file.is_file():
        if part_problem(path) is not None:
            return
        old = PartRecord(**json.loads(record_file.read_text(encoding="utf-8")))
    table = pq.read_table(path)
    metadata = {**(table.schema.metadata or {}), CONFIG_KEY: config_hash.encode()}
    data = parquet_bytes(table.replace_schema_metadata(metadata))
    if old is not None:
        new = replace(old, sha256=hashlib.sha256(data).hexdigest(), config_hash=config_hash)
        write_text_atomic(new.text(), record_file)
    write_bytes_atomic(data, path)


def record_path(part: Path) -> Path:
    """Where the record of ``part`` lives (``part-<first>-<last>.json``)."""
    return part.with_suffix(RECORD_SUFFIX)


def part_problem(path: Path, *, deep: bool = False) -> str | None:
    """Why the part ``path`` is not the one its record describes, or None when it is.

    Compares the file's SHA-256 with the record and the record's bytes with their canonical
    form (cheap: one pass over the file). ``deep`` also reads the footer: row count, session
    count, key range and config hash must agree with the record (as ``runs verify`` checks).
    """
    record_file = record_path(path)
    if not record_file.is_file():
        return f"no record {record_file.name} (its SHA-256 was never recorded, or was removed)"
    try:
        text = record_file.read_text(encoding="utf-8")
        raw = json.loads(text)
        record = PartRecord(**raw)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        return f"its record {record_file.name} is unreadable ({type(exc).__name__})"
    if record.text() != text or record.file != path.name:
        return f"its record {record_file.name} was changed after it was written"
    if file_sha256(path) != record.sha256:
        return "its SHA-256 differs from the one recorded when it was written (changed)"
    if deep:
        try:
            metadata = pq.read_metadata(path)
            sessions = part_sessions(path, config_hash=record.config_hash)
        except (OSError, pa.ArrowInvalid, ResultsError) as exc:
            return f"unreadable ({exc})"
        found = (metadata.num_rows, len(sessions),
                 _key_to_json(sessions[0]) if sessions else None,
                 _key_to_json(sessions[-1]) if sessions else None)
        if found != (record.rows, record.sessions, record.first, record.last):
            return "its rows, sessions or key range differ from its record"
    return None


def damaged_parts(run_dir: Path, *, records_required: bool = True) -> dict[Path, str]:
    """Parts of ``run_dir`` that are not what was written, with the reason for each.

    ``records_required``: a part without a record is damaged (every run since records exist);
    for an older run, parts without one are not checked.
    """
    damaged: dict[Path, str] = {}
    for path in part_paths(run_dir):
        if not records_required and not record_path(path).exists():
            continue
        problem = part_problem(path)
        if problem is not None:
            damaged[path] = problem
    return damaged


def set_aside_part(path: Path) -> Path:
    """Move a damaged part out of the run (``….parquet.damaged``, kept as evidence) and drop
    its record, so its sessions count as not done and are rescored."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, target)
    record_path(path).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return target


def is_part_companion(path: Path) -> bool:
    """A part's record, or a part :func:`set_aside_part` moved out (not a stray file)."""
    path = Path(path)
    if path.name.endswith(DAMAGED_SUFFIX):
        return True
    return path.suffix == RECORD_SUFFIX and path.name.startswith("part-")


def part_paths(run_dir: Path) -> list[Path]:
    """Finished parts of a run directory, in name (= session order) order."""
    parts = Path(run_dir) / PARTS_DIR
    if not parts.is_dir():
        return []
    return sorted(p for p in parts.glob("part-*.parquet") if p.is_file())


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete temporary files a killed run left behind, and records whose part was never moved
    into place (a kill between the two); returns what was removed."""
    removed: list[Path] = []
    for directory in (Path(run_dir), Path(run_dir) / PARTS_DIR):
        if directory.is_dir():
            for path in directory.iterdir():
                if TMP_MARK in path.name and path.is_file():
                    path.unlink()
                    removed.append(path)
    for path in orphan_records(run_dir):
        path.unlink()
        removed.append(path)
    return removed


def orphan_records(run_dir: Path) -> list[Path]:
    """Part records whose part is absent (what a kill between record and part leaves)."""
    parts = Path(run_dir) / PARTS_DIR
    if not parts.is_dir():
        return []
    return sorted(
        p for p in parts.glob(f"part-*{RECORD_SUFFIX}")
        if p.is_file() and not p.with_suffix(".parquet").exists()
    )


def part_sessions(path: Path, *, config_hash: str | None = None) -> list[SessionKey]:
    """Sessions a part completes, read from its footer only (no row data is read)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise ResultsError(
            f"{path}: unreadable part ({exc}); delete it to rescore its sessions"
        ) from exc
    if SESSIONS_KEY not in metadata:
        raise ResultsError(f"{path}: not a psych201 part (no session list in its footer)")
    if config_hash is not None and metadata.get(CONFIG_KEY, b"").decode() != config_hash:
        raise ResultsError(
            f"{path}: written by run {metadata.get(CONFIG_KEY, b'?').decode()}, "
            f"not by this run ({config_hash}); a run directory never mixes configurations"
        )
    try:
        items = json.loads(metadata[SESSIONS_KEY])
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: malformed session list in the footer ({exc})") from exc
    if not isinstance(items, list):
        raise ResultsError(f"{path}: malformed session list in the footer")
    return [_key_from_json(item, path) for item in items]


def completed_sessions(run_dir: Path, *, config_hash: str | None = None) -> frozenset[SessionKey]:
    """Every session some finished part of ``run_dir`` completes."""
    done: set[SessionKey] = set()
    for path in part_paths(run_dir):
        for key in part_sessions(path, config_hash=config_hash):
            if key in done:
                raise ResultsError(f"{path}: session {key} is already in another part")
            done.add(key)
    return frozenset(done)


def read_parts(run_dir: Path) -> pa.Table:
    """All rows of all finished parts (unsorted, footer metadata dropped)."""
    tables = [conform_part(pq.read_table(path), path) for path in part_paths(run_dir)]
    return pa.concat_tables(tables) if tables else RESPONSE_SCHEMA.empty_table()


def conform_part(table: pa.Table, path: Path) -> pa.Table:
    """A part's rows with exactly :data:`RESPONSE_SCHEMA`, footer metadata dropped.

    A part written before a column of :data:`ADDED_COLUMNS` existed gets it as nulls (a resumed
    run then mixes rows with and without it, as honestly as an old table read with nulls);
    any other difference (a missing original column, another type or order) is an error.
    """
    table = table.replace_schema_metadata(None)
    if table.schema.equals(RESPONSE_SCHEMA):
        return table
    missing = [n for n in RESPONSE_SCHEMA.names if n not in table.column_names]
    present = pa.schema([f for f in RESPONSE_SCHEMA if f.name in table.column_names])
    if set(missing) <= set(ADDED_COLUMNS) and table.schema.equals(present):
        return conform(table)
    hint = f" (missing {', '.join(missing)})" if missing else ""
    raise ResultsError(f"{path}: columns differ from the response schema{hint}")


def sort_responses(table: pa.Table) -> pa.Table:
    """Rows in the canonical order of a final table (see :data:`SORT_COLUMNS`)."""
    return table.sort_by([(name, "ascending") for name in SORT_COLUMNS])


def finalize(run_dir: Path, *, config_hash: str) -> tuple[Path, int]:
    """Combine the parts into ``DIR/responses.parquet`` (sorted, atomic); returns (path, rows)."""
    # conform: Parquet reads list columns back with "element" fields; every final table is
    # written with the schema's own, so the same rows always give the same bytes.
    table = conform(sort_responses(read_parts(run_dir)))
    table = table.replace_schema_metadata({CONFIG_KEY: config_hash.encode()})
    path = Path(run_dir) / RESPONSES_FILE
    write_parquet_atomic(table, path)
    return path, table.num_rows


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the identity of a final table in its manifest)."""
    return sha256_file(path)


def table_record(run_dir: Path) -> dict[str, object]:
    """What the manifest records about ``DIR/responses.parquet``: file, row count, SHA-256."""
    path = Path(run_dir) / RESPONSES_FILE
    try:
        rows = pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise ResultsError(f"{path}: unreadable Parquet file ({exc})") from exc
    return {"file": RESPONSES_FILE, "rows": rows, "sha256": file_sha256(path)}


def footer_config_hash(path: Path) -> str | None:
    """The config hash a part or final table carries in its footer (None when absent)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise ResultsError(f"{path}: unreadable Parquet file ({exc})") from exc
    value = metadata.get(CONFIG_KEY)
    return value.decode(errors="replace") if value is not None else None


def is_temporary(path: Path) -> bool:
    """A temporary file of an atomic write (a killed writer may leave one behind)."""
    return TMP_MARK in Path(path).name
