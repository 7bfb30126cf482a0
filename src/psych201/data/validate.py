"""Check a study folder against the Psych-201 contribution rules (``psych201 data validate``).

A contributor runs this before opening a pull request. It reads every line (errors are collected,
not raised, so one run lists them all) and checks the folder layout the upstream README asks for:
a README.md with the reference, a *zipped* ``prompts.jsonl``, a ``generate_prompts.py`` and no
original data files; each session within the 32K-token guideline (estimated as characters / 4,
as the authors' ``check_prompt.py`` does). Layout and length findings are warnings; ``strict``
turns every warning into a failure and RT length mismatches into errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psych201.data.issues import DataError, IssueLog
from psych201.data.readers import (
    DEFAULT_MAX_LINE_BYTES,
    STUDY_FILES,
    discover_studies,
    iter_sessions,
)

#: The contributor guideline's length limit per participant, in tokens.
TOKEN_LIMIT = 32_768
#: Characters per token assumed by the authors' length check.
CHARS_PER_TOKEN = 4

#: Suffixes of raw data files that must not be uploaded with a study.
RAW_DATA_SUFFIXES = (
    ".csv",
    ".tsv",
    ".xlsx",
    ".xls",
    ".mat",
    ".pkl",
    ".rds",
    ".sav",
    ".h5",
    ".npy",
    ".npz",
    ".feather",
    ".rdata",
    ".dta",
)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of :func:`validate_path`; ``log`` holds every issue."""

    path: str
    studies: tuple[str, ...]
    sessions: int
    responses: int
    log: IssueLog
    strict: bool

    @property
    def ok(self) -> bool:
        return self.log.n_errors == 0 and not (self.strict and self.log.n_warnings)


def validate_path(
    path: str | Path,
    *,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    log: IssueLog | None = None,
) -> ValidationReport:
    """Validate a study folder (or file, or dataset directory) and report every issue."""
    issues = log if log is not None else IssueLog()
    try:
        sources = discover_studies(path)
    except DataError as error:
        issues.add(error.to_issue())
        return ValidationReport(str(path), (), 0, 0, issues, strict)
    for source in sources:
        if Path(path).is_dir() and source.path.name in STUDY_FILES:  # a contributed folder
            _check_layout(source.path.parent, source.path, issues)
    sessions = responses = 0
    limit = TOKEN_LIMIT * CHARS_PER_TOKEN
    for session in iter_sessions(
        path, on_error="skip", log=issues, max_line_bytes=max_line_bytes, strict_rts=strict
    ):
        sessions += 1
        responses += len(session.responses)
        if len(session.text) > limit:
            issues.warn(
                "too-long",
                f"{len(session.text):,} characters ≈ {len(session.text) // CHARS_PER_TOKEN:,} "
                f"tokens, over the {TOKEN_LIMIT:,}-token guideline",
                file=session.source,
                line=session.line,
            )
    return ValidationReport(
        str(path), tuple(s.name for s in sources), sessions, responses, issues, strict
    )


def _check_layout(folder: Path, data: Path, log: IssueLog) -> None:
    where = str(folder)
    if not (folder / "README.md").is_file():
        log.warn(
            "layout", "no README.md (paper reference and link to the original data)", file=where
        )
    if not (folder / "generate_prompts.py").is_file():
        log.warn(
            "layout", "no generate_prompts.py (the script that produced prompts.jsonl)", file=where
        )
    if data.suffix != ".zip":
        log.warn("layout", f"{data.name} is not zipped (contribute prompts.jsonl.zip)", file=where)
    for item in sorted(folder.iterdir()):
        if item.is_file() and item.name.lower().endswith(RAW_DATA_SUFFIXES):
            log.warn(
                "layout",
                f"{item.name} looks like original data, which must not be uploaded",
                file=where,
            )
