"""Check a run directory end to end (``psych201 runs verify``) and rebuild what can be rebuilt.

A run proves itself: every part has the SHA-256, row count and key range recorded when it was
written (``parts/part-….json``), is readable, carries the run's config hash and a session list
that covers its rows; the manifest matches its own checksum; no session is in two parts and no
response key appears twice; the final ``responses.parquet`` has the row count and SHA-256 the
manifest recorded. Parts are written atomically and are the ground truth of a scoring run, so
``repair_run`` can rebuild the final table from them, and a lost or edited manifest (as far as
the parts know it: the config hash); a merge output has no parts. A damaged part is never
adopted: ``repair_run(rescore=True)`` moves it aside and marks the run for rescoring (the CLI
then reruns the recorded score command), or says why it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from psych201.results.lock import holder_of, lock_run_dir
from psych201.results.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    RESCORING_KEY,
    load_manifest,
    manifest_path,
    manifest_problem,
    now_iso,
    save_manifest,
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
    finalize,
    is_temporary,
    orphan_records,
    part_paths,
    part_problem,
    part_sessions,
    record_path,
    remove_stale_temporaries,
    set_aside_part,
    table_record,
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


@dataclass(frozen=True)
class RepairOutcome:
    """What :func:`repair_run` did, what it could not do (and why), and the check after."""

    done: tuple[str, ...]
    not_done: tuple[str, ...]
    after: Report
    #: Damaged parts were moved aside: the run's score command must now rescore them.
    rescore: bool = False


def repair_run(
    run_dir: str | Path, *, rescore: bool = False, cannot_rescore: str | None = None
) -> RepairOutcome:
    """Rebuild what can be rebuilt in ``run_dir`` (under its lock): the final table from intact
    parts, a lost manifest from intact parts, stray temporaries removed.

    Damaged parts are never adopted. With ``rescore`` (the caller can rerun the run's score
    command), they are moved aside and the run marked for rescoring (``RepairOutcome.rescore``;
    also when an earlier repair was interrupted before its rescoring finished); otherwise they
    are reported, with ``cannot_rescore`` saying why.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return RepairOutcome((), (f"{run_dir}: no such run directory",), verify_run(run_dir))
    if not manifest_path(run_dir).exists() and not (run_dir / PARTS_DIR).is_dir():
        # Nothing of a run to rebuild from; taking the lock would only leave a lock file here.
        why = (f"{run_dir}: not a run directory (no {MANIFEST_FILE}, no {PARTS_DIR}/); "
               "nothing to repair")
        return RepairOutcome((), (why,), verify_run(run_dir))
    done: list[str] = []
    not_done: list[str] = []
    with lock_run_dir(run_dir):
        for path in remove_stale_temporaries(run_dir):
            done.append(f"{path}: removed (temporary file of an interrupted write)")
        report = verify_run(run_dir, locked_by_us=True)
        damaged = _damaged_parts(report)
        pending = report.manifest is not None and bool(report.manifest.get(RESCORING_KEY))
        # A part missing (a kill while a damaged part was being moved aside) is rescored too.
        if report.manifest is not None and (damaged or pending or report.parts_missing) and rescore:
            _set_aside_for_rescoring(report, damaged, done)
            return RepairOutcome(tuple(done), tuple(not_done), report, rescore=True)
        if report.manifest is None:
            _repair_manifest(report, done, not_done)
        elif report.table_damaged:
            _repair_table(report, done, not_done)
        after = verify_run(run_dir, locked_by_us=True)
    for problem in after.problems:
        if not any(line.startswith(f"{problem.path}:") for line in not_done):
            why = _why_not(problem)
            if cannot_rescore and _is_part(problem.path):
                why = f"{why} ({cannot_rescore})"
            not_done.append(f"{problem}: {why}")
    return RepairOutcome(tuple(done), tuple(not_done), after)


@dataclass(frozen=True)
class ScoreCommand:
    """The recorded score command of a run: its arguments (after ``psych201``) and where it ran."""

    args: tuple[str, ...]
    cwd: Path


def recorded_score_command(run_dir: str | Path) -> ScoreCommand | str:
    """The last ``psych201 score`` command that wrote ``run_dir`` (to rescore damaged parts
    with, its ``--out`` pointing where the directory is now), or why there is none: no readable
    manifest, a run of ``psych201 run`` or the Python API, or a manifest older than the recorded
    working directory."""
    run_dir = Path(run_dir)
    try:
        manifest = load_manifest(run_dir)
    except ResultsError:
        return "no readable manifest records the run's score command"
    for invocation in reversed(manifest.get("invocations") or []):
        argv = invocation.get("argv") if isinstance(invocation, dict) else None
        if not isinstance(argv, list) or len(argv) < 2 or argv[1] != "score":
            continue
        if not all(isinstance(a, str) for a in argv) or not isinstance(invocation.get("cwd"), str):
            return "the run's score command was recorded without its working directory"
        cwd = Path(invocation["cwd"])
        args = _with_out(argv[1:], run_dir.resolve())
        if args is None:
            return "the run's score command was recorded without its --out"
        # The directory may have moved since (copied, renamed): the command scores into it
        # where it is now, and refuses it if it is another configuration.
        return ScoreCommand(tuple(args), cwd)
    return ("no psych201 score command is recorded (a study cell, or the Python API); rerun "
            "the command that made it")


def _with_out(args: list[str], out: Path) -> list[str] | None:
    """``args`` with the value of ``--out``/``-o`` replaced by ``out`` (None: no such option)."""
    for i, arg in enumerate(args):
        if arg in ("--out", "-o") and i + 1 < len(args):
            return [*args[: i + 1], str(out), *args[i + 2:]]
        if arg.startswith("--out="):
            return [*args[:i], f"--out={out}", *args[i + 1:]]
    return None


def _is_part(path: Path) -> bool:
    return path.parent.name == PARTS_DIR and path.suffix == ".parquet"


def _damaged_parts(report: Report) -> list[Path]:
    return sorted({p.path for p in report.problems if _is_part(p.path) and p.path.exists()})


def _set_aside_for_rescoring(report: Report, damaged: list[Path], done: list[str]) -> None:
    """Move the damaged parts aside and mark the run unfinished until they are rescored."""
    manifest = report.manifest
    assert manifest is not None
    for path in damaged:
        moved = set_aside_part(path)
        done.append(f"{path}: moved aside to {moved.name}; its sessions are rescored")
    previous = manifest.get(RESCORING_KEY) or {}
    manifest[RESCORING_KEY] = {
        "at": now_iso(),
        "parts": sorted({*previous.get("parts", []), *(p.name for p in damaged)}),
    }
    # Until the score command has rescored them, the run is not finished: no reader takes the
    # old table (written over parts nobody can vouch for) as its result.
    manifest["status"] = "running"
    save_manifest(report.run_dir, manifest)


def _repair_manifest(report: Report, done: list[str], not_done: list[str]) -> None:
    path = manifest_path(report.run_dir)
    if report.parts == 0:
        not_done.append(
            f"{path}: cannot be rebuilt: no parts to rebuild it from (a merge output, or no run "
            "at all); rerun the command that made this directory"
        )
        return
    if not report.parts_intact:
        not_done.append(
            f"{path}: cannot be rebuilt while parts are damaged (see above); delete the damaged "
            "parts, then rerun --repair or the run's score command"
        )
        return
    (config_hash,) = report.config_hashes
    if path.exists():
        path.rename(path.with_name(f"{MANIFEST_FILE}.damaged"))
        done.append(f"{path}: moved aside to {MANIFEST_FILE}.damaged")
    save_manifest(
        report.run_dir,
        {
            "format": MANIFEST_FORMAT,
            "config_hash": config_hash,
            "spec": None,
            "shard": None,
            "status": "recovered",
            "recovered": {
                "at": now_iso(),
                "parts": report.parts,
                "sessions": report.part_sessions,
                "responses": report.part_rows,
            },
            "created": now_iso(),
            "counts": {},
            "invocations": [],
        },
    )
    done.append(
        f"{path}: rebuilt from {report.parts} parts (run {config_hash}, {report.part_sessions} "
        "sessions); rerun the run's score command to restore the model and data records and "
        "finish the table"
    )


def _repair_table(report: Report, done: list[str], not_done: list[str]) -> None:
    assert report.manifest is not None
    path = report.run_dir / RESPONSES_FILE
    if report.parts == 0:
        not_done.append(
            f"{path}: cannot be rebuilt: this directory has no parts (a merge output); rerun "
            "the merge"
        )
        return
    if not report.parts_intact:
        not_done.append(
            f"{path}: cannot be rebuilt while parts are damaged (see above); delete the damaged "
            "parts and rerun the run's score command to rescore their sessions"
        )
        return
    manifest = report.manifest
    record = manifest.get("table") or {}
    expected = record.get("rows", (manifest.get("counts") or {}).get("responses"))
    if expected is not None and expected != report.part_rows:
        not_done.append(
            f"{path}: cannot be rebuilt: the parts hold {report.part_rows} rows, the manifest "
            f"recorded {expected} (a part is missing?); rerun the run's score command"
        )
        return
    _, rows = finalize(report.run_dir, config_hash=str(manifest["config_hash"]))
    manifest["table"] = table_record(report.run_dir)
    manifest.setdefault("counts", {})["responses"] = rows
    save_manifest(report.run_dir, manifest)
    same = record.get("sha256") in (None, manifest["table"]["sha256"])
    done.append(
        f"{path}: rebuilt from {report.parts} parts ({rows} rows"
        + (", bit-identical to the recorded table)" if same else "; SHA-256 recorded anew)")
    )


def _why_not(problem: Problem) -> str:
    if _is_part(problem.path):
        return "a damaged part cannot be rebuilt; delete it and rerun the run's score command"
    return "not repairable here"


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
