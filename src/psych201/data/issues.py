"""Errors and warnings found while reading data, and the log that counts them.

Policy (``on_error``): ``"fail"`` raises the first :class:`DataError`; ``"skip"`` drops the broken
line (or member, or file), records the error in the :class:`IssueLog` and logs a warning. Nothing is
dropped silently: every skipped line is counted and the first few of each kind are logged with file,
line, column and reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from psych201.data.harmonise import HarmonisationReport
from psych201.errors import InvalidDataError

logger = logging.getLogger("psych201.data")

Severity = Literal["error", "warning"]
OnError = Literal["fail", "skip"]

#: Every issue code the data layer emits, with what it means (documented in ``data validate``).
ISSUE_CODES: dict[str, str] = {
    # Errors: the line (or file) cannot be used.
    "not-found": "the path does not exist",
    "unsupported": "not a study folder, zip, JSONL or Parquet file",
    "no-study": "a directory without any Psych-201 study in it",
    "duplicate-study": "two sources give the same study id",
    "lfs-pointer": "a Git LFS pointer file instead of the data",
    "bad-zip": "a truncated or corrupt zip archive",
    "bad-parquet": "an unreadable Parquet file",
    "no-jsonl": "a zip without any .jsonl member",
    "empty": "a study file without any participant (empty, or only blank lines)",
    "unsafe-member": "a zip member name with '..' or an absolute path (zip slip)",
    "read": "the file could not be read to the end",
    "line-too-long": "a line longer than the byte limit",
    "encoding": "bytes that are not UTF-8",
    "json": "a line that is not valid JSON",
    "not-object": "a JSON line that is not an object",
    "duplicate-field": "the same field twice in one JSON object",
    "text-missing": "no 'text' field",
    "text-type": "'text' is not a string",
    "field-missing": "no 'experiment' or 'participant' field",
    "field-type": "'experiment' or 'participant' is not a string or integer",
    "surrogate": "a lone UTF-16 surrogate escape (\\udXXX) that cannot be stored",
    "marker": "unbalanced, nested or stray << >> markers",
    "duplicate-key": "the same (experiment, participant) twice in one study",
    "rt-length": "RT list length differs from the number of responses (error with strict RTs)",
    # Warnings: the line is used, but something is off.
    "bom": "a UTF-8 byte order mark at the start of the file (removed)",
    "crlf": "Windows CRLF line endings (handled)",
    "empty-response": "empty or blank responses <<>>",
    "no-responses": "a session without any << >> response",
    "duplicate-text": "the same transcript text as an earlier line",
    "rt-values": "RT values that are not numbers",
    "too-long": "longer than the 32K-token guideline (chars / 4)",
    "layout": "a study folder that does not follow the contribution rules",
}


class DataError(InvalidDataError):
    """A data problem with its location: ``file``, 1-based ``line`` and ``column`` (or None)."""

    def __init__(
        self,
        reason: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        code: str = "data",
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.column = column
        self.code = code
        super().__init__(_location(file, line, column) + reason)

    def to_issue(self) -> Issue:
        return Issue("error", self.code, self.file, self.line, self.column, self.reason)


@dataclass(frozen=True, slots=True)
class Issue:
    """One error or warning, located as precisely as the input allows."""

    severity: Severity
    code: str
    file: str
    line: int | None
    column: int | None
    reason: str

    def __str__(self) -> str:
        return f"{_location(self.file, self.line, self.column)}{self.severity}: {self.reason}"


class IssueLog:
    """Collects issues: counts every one, keeps the first ``max_kept``, logs the first few per code.

    Also carries the harmonisation report (metadata values that could not be mapped) and the
    number of lines skipped under ``on_error="skip"``.
    """

    def __init__(self, *, max_kept: int = 1000, log_first: int = 3) -> None:
        self.max_kept = max_kept
        self.log_first = log_first
        self.issues: list[Issue] = []
        self.counts: Counter[tuple[Severity, str]] = Counter()
        self.skipped_lines = 0
        self.unmapped = HarmonisationReport()

    def add(self, issue: Issue) -> None:
        key = (issue.severity, issue.code)
        self.counts[key] += 1
        if len(self.issues) < self.max_kept:
            self.issues.append(issue)
        if self.counts[key] <= self.log_first:
            logger.warning("%s", issue)
        elif self.log_first and self.counts[key] == self.log_first + 1:
            logger.warning("more '%s' %ss are counted, not logged", issue.code, issue.severity)

    def warn(
        self,
        code: str,
        reason: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.add(Issue("warning", code, file, line, column, reason))

    @property
    def n_errors(self) -> int:
        return sum(n for (severity, _), n in self.counts.items() if severity == "error")

    @property
    def n_warnings(self) -> int:
        return sum(n for (severity, _), n in self.counts.items() if severity == "warning")

    def summary(self) -> list[tuple[Severity, str, int]]:
        """(severity, code, count), errors first, then by count."""
        return sorted(
            ((severity, code, n) for (severity, code), n in self.counts.items()),
            key=lambda row: (row[0] != "error", -row[2], row[1]),
        )


def _location(file: str, line: int | None, column: int | None) -> str:
    where = file
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    return where + ": "
