"""Repairing a run directory that :func:`~psych201.results.verify.verify_run` found damaged.

The final table and a lost manifest are rebuilt from the parts; damaged parts are set aside for
rescoring by the run's recorded score command (``runs verify --repair`` reruns it); for the
rest, the outcome says why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psych201.results.lock import lock_run_dir
from psych201.results.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    RESCORING_KEY,
    load_manifest,
    manifest_path,
    now_iso,
    save_manifest,
)
from psych201.results.verify import Problem, Report, verify_run
from psych201.results.writer import (
    PARTS_DIR,
    RESPONSES_FILE,
    ResultsError,
    finalize,
    remove_stale_temporaries,
    set_aside_part,
    table_record,
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
