"""Check a run directory end to end (``psych201 runs verify``) and rebuild what can be rebuilt.

A run proves itself: every part has the SHA-256, row count and key range recorded when it was
written (``parts/part-….json``), is readable, carries the run's config hash and a session list
that covers its rows; the manifest matches its own checksum; no session is in two parts and no
response key appears twice; the final ``responses.parquet`` has the row count and SHA-256 the
manifest recorded. Parts are written atomically and are the ground truth of a scoring run, so
``repair_run`` (:mod:`psych201.results.repair`) can rebuild the final table from them, and a
lost or edited manifest (as far as the parts know it: the config hash); a merge output has no
parts. A damaged part is never adopted: ``repair_run(rescore=True)`` moves it aside and marks
the run for rescoring (the CLI then reruns the recorded score command), or says why it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from psych201.results.lock import holder_of
from psych201.results.manifest import (
    load_manifest,
    manifest_path,
    manifest_problem,
)
from psych201.results.schema import RESPONSE_KEY
from psych201.results.writer import (
    CONFIG_KEY,
    DAMAGED_SUFFIX,
    PARTS_DIR,
    RESPONSES_FILE,
    ResultsError,
    conform_part,
    file_sha256,
    is_temporary,
    orphan_records,
    part_paths,
    part_problem,
    part_sessions,
    record_path,
)

#: A response's identity within one run or merged table.
_ROW_KEY = ("model", "condition", *RESPONSE_KEY)
#: Statuses after which the final table must exist and match the manifest.
_FINISHED = ("complete", "incomplete")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a run directory (``path: reason``)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Report:
    """What :func:`verify_run` found: problems (damage) and notes (e.g. not finished yet)."""

    run_dir: Path
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    #: Parts all readable, of one configuration, without overlaps: the table can be rebuilt.
    parts_intact: bool = False
    parts: int = 0
    part_rows: int = 0
    part_sessions: int = 0
    config_hashes: set[str] = field(default_factory=set)
    table_damaged: bool = False
    #: A complete run whose parts no longer cover its sessions (a part removed or set aside).
    parts_missing: bool = False
    #: Parts without a record: damage in a run that records them, a note in an older run.
    unrecorded: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: Path, reason: str) -> None:
        self.problems.append(Problem(path, reason))


def table_problem(run_dir: Path, manifest: dict[str, Any]) -> str | None:
    """Why ``DIR/responses.parquet`` is not the table ``manifest`` recorded, or None when it is.

    Checks existence, row count and SHA-256 (the row count alone for manifests written before
    the hash was recorded).
    """
    path = Path(run_dir) / RESPONSES_FILE
    if not path.is_file():
        return f"{path}: missing"
    try:
        rows = pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        return f"{path}: unreadable ({exc})"
    record = manifest.get("table")
    expected = record.get("rows") if isinstance(record, dict) else None
    if expected is None:
        expected = (manifest.get("counts") or {}).get("responses")
    if expected is not None and rows != expected:
        return f"{path}: holds {rows} rows, the manifest recorded {expected}"
    sha = record.get("sha256") if isinstance(record, dict) else None
    if sha and file_sha256(path) != sha:
        return f"{path}: its SHA-256 differs from the one the manifest recorded (changed)"
    return None


def verify_run(run_dir: str | Path, *, locked_by_us: bool = False) -> Report:
    """Check ``run_dir`` (read only); see the module docstring for what is checked.

    ``locked_by_us``: the caller holds the run's lock (a repair), so a holder is not news."""
    run_dir = Path(run_dir)
    report = Report(run_dir)
    if not run_dir.is_dir():
        report.add(run_dir, "no such run directory")
        return report
    holder = None if locked_by_us else holder_of(run_dir)
    if holder:
        report.notes.append(f"{run_dir}: in use by {holder}; its files may still change")
    _check_parts(report)
    manifest_file = manifest_path(run_dir)
    try:
        report.manifest = load_manifest(run_dir)
        edited = manifest_problem(run_dir)
        if edited is not None:
            report.manifest = None
            raise ResultsError(f"{manifest_file}: {edited}")
    except ResultsError as exc:
        reason = "missing" if not manifest_file.exists() else str(exc).split(": ", 1)[-1]
        if report.parts_intact:
            reason += f" ({report.parts} intact parts: --repair rebuilds it from them)"
        report.add(manifest_file, reason)
    temporaries = [
        p for d in (run_dir, run_dir / PARTS_DIR) if d.is_dir() for p in d.iterdir()
        if is_temporary(p)
    ]
    temporaries += orphan_records(run_dir)
    if temporaries:
        report.notes.append(
            f"{run_dir}: {len(temporaries)} temporary file(s) left by an interrupted write "
            "(harmless; the next run or --repair removes them)"
        )
    set_aside = sorted((run_dir / PARTS_DIR).glob(f"*{DAMAGED_SUFFIX}"))
    if set_aside:
        report.notes.append(
            f"{run_dir}: {len(set_aside)} damaged part(s) moved aside ({set_aside[0].name}…); "
            "their sessions were rescored, delete them when no longer needed"
        )
    manifest = report.manifest
    if manifest is None:
        return report
    if report.unrecorded:
        if manifest.get("part_records"):
            for path in report.unrecorded:
                report.add(path, f"no record {record_path(path).name} (its SHA-256 "
                           "was never recorded, or was removed)")
            report.parts_intact = False
        else:
            report.notes.append(f"{run_dir}: {len(report.unrecorded)} part(s) written before "
                                "psych201 recorded part hashes (not checked)")
    status = manifest.get("status")
    wants_table = status in _FINISHED
    if report.config_hashes - {manifest.get("config_hash")}:
        other = sorted(report.config_hashes - {manifest.get("config_hash")})
        report.add(
            run_dir / PARTS_DIR,
            f"parts written by run(s) {', '.join(other)}, the manifest is run "
            f"{manifest.get('config_hash')}; a run directory never mixes configurations",
        )
        report.parts_intact = False
    if wants_table:
        problem = table_problem(run_dir, manifest)
        if problem:
            report.table_damaged = True
            report.problems.append(Problem(run_dir / RESPONSES_FILE, problem.split(": ", 1)[1]))
        else:
            _check_table_rows(report)
        if status == "complete" and report.parts_intact:  # damaged parts: named above
            _check_parts_cover(report, manifest)
    else:
        command = "merge" if manifest.get("merged_from") else "score command"
        report.notes.append(
            f"{run_dir}: not finished (status {status!r}, {report.parts} parts, "
            f"{report.part_sessions} sessions); rerun its {command} to finish it"
        )
    return report


def _check_parts(report: Report) -> None:
    run_dir = report.run_dir
    seen: dict[tuple[str, str, str, int], Path] = {}
    key_tables: list[pa.Table] = []
    intact = True
    for path in part_paths(run_dir):
        report.parts += 1
        try:
            sessions = part_sessions(path)
            table = pq.read_table(path)
        except (ResultsError, OSError, pa.ArrowInvalid) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            report.add(path, f"{reason}" if "rescore" in reason else f"unreadable ({reason})")
            intact = False
            continue
        if not record_path(path).exists():
            report.unrecorded.append(path)
        else:
            problem = part_problem(path, deep=True)
            if problem is not None:  # readable, but not the part that was written
                report.add(path, problem)
                intact = False
                continue
        owner = (table.schema.metadata or {}).get(CONFIG_KEY, b"").decode(errors="replace")
        report.config_hashes.add(owner)
        try:
            table = conform_part(table, path)
        except ResultsError as exc:
            report.add(path, str(exc).removeprefix(f"{path}: "))
            intact = False
            continue
        listed = {(k.study, k.experiment, k.participant, k.line) for k in sessions}
        for key in listed:
            if key in seen:
                report.add(path, f"session {key} is also in {seen[key].name}")
                intact = False
            seen[key] = path
        columns = ["study", "experiment", "participant", "line"]
        present = table.select(columns).group_by(columns).aggregate([]).to_pylist()
        unlisted = {tuple(r[c] for c in columns) for r in present} - listed
        if unlisted:
            report.add(path, f"rows of {len(unlisted)} sessions its footer does not list")
            intact = False
        key_tables.append(table.select(list(_ROW_KEY)).replace_schema_metadata(None))
        report.part_rows += table.num_rows
    report.part_sessions = len(seen)
    duplicates = _duplicate_keys(pa.concat_tables(key_tables)) if key_tables else []
    if duplicates:
        report.add(
            run_dir / PARTS_DIR,
            f"{len(duplicates)} responses appear more than once, e.g. {duplicates[0]}",
        )
        intact = False
    if len(report.config_hashes) > 1:
        report.add(run_dir / PARTS_DIR, "parts of different configurations: "
                   + ", ".join(sorted(report.config_hashes)))
        intact = False
    report.parts_intact = intact and report.parts > 0


def _check_table_rows(report: Report) -> None:
    """The final table matches its record; now its rows: no duplicates, same as the parts."""
    path = report.run_dir / RESPONSES_FILE
    try:
        table = pq.read_table(path, columns=list(_ROW_KEY))
    except (OSError, pa.ArrowInvalid) as exc:
        report.table_damaged = True
        report.add(path, f"unreadable ({exc})")
        return
    duplicates = _duplicate_keys(table)
    if duplicates:
        report.table_damaged = True
        report.add(path, f"{len(duplicates)} responses appear more than once, e.g. {duplicates[0]}")
    elif report.parts_intact and table.num_rows != report.part_rows:
        report.table_damaged = True
        report.add(path, f"holds {table.num_rows} rows, its parts {report.part_rows}")


def _duplicate_keys(keys: pa.Table) -> list[tuple[Any, ...]]:
    """Response keys that occur more than once (grouped in Arrow: runs have millions of rows)."""
    counts = keys.group_by(list(_ROW_KEY)).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1)).to_pylist()
    return [tuple(row[c] for c in _ROW_KEY) for row in repeated]


def _check_parts_cover(report: Report, manifest: dict[str, Any]) -> None:
    counts = manifest.get("counts") or {}
    expected = counts.get("sessions")
    if isinstance(expected, int) and report.part_sessions != expected:
        report.parts_missing = True
        report.add(
            report.run_dir / PARTS_DIR,
            f"the parts complete {report.part_sessions} of the run's {expected} sessions (a part "
            "was removed?); rerun the run's score command to rescore what is missing",
        )


def describe(report: Report) -> str:
    """One line for a clean run: status, responses, table hash."""
    manifest = report.manifest or {}
    record = manifest.get("table") or {}
    rows = record.get("rows", (manifest.get("counts") or {}).get("responses"))
    sha = str(record.get("sha256") or "")[:12]
    return (
        f"{report.run_dir}: ok (status {manifest.get('status')}, {report.parts} parts"
        + (f", {rows} responses" if rows is not None else "")
        + (f", sha256 {sha}…" if sha else "")
        + ")"
    )
