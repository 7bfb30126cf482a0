"""One record of a study: decode and check a line or row, warn on its content, build a Session."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from psych201.data.harmonise import harmonise_with_report
from psych201.data.issues import DataError, IssueLog, OnError
from psych201.data.layout import StudySource, _default_study
from psych201.data.lines import (
    REQUIRED_FIELDS,
    _bounded_int,
    _DuplicateField,
    _encodable,
    _identifier,
    _no_duplicate_fields,
    _peek_study,
    _type_name,
    parse_rts,
)
from psych201.data.markers import MarkerError, parse_responses
from psych201.data.records import Session
from psych201.data.tables import _table_fields


class _LineChecker:
    """Checks one study's records and builds their sessions; holds the per-study state used
    for duplicate detection (the reading itself: :class:`psych201.data.readers._StudyReader`)."""

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
            obj = json.loads(
                line, object_pairs_hook=_no_duplicate_fields, parse_int=_bounded_int
            )
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
            # Python refuses to convert integers of more than 4,300 digits (CVE-2020-10735), and
            # _bounded_int those no float can hold.
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
