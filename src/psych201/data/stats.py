"""Per-study description of a dataset: sizes, response lengths, metadata coverage."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from psych201.data.fields import HARMONISED_FIELDS, NA
from psych201.data.issues import IssueLog, OnError
from psych201.data.readers import DEFAULT_MAX_LINE_BYTES, iter_sessions
from psych201.data.records import Session
from psych201.data.variants import is_discrete_response


@dataclass(frozen=True)
class StudyStats:
    """What one study holds. Response lengths are in characters of the content between markers."""

    study: str
    participants: int
    responses: int
    sessions_without_responses: int
    empty_responses: int
    response_chars_mean: float
    response_chars_median: float
    response_chars_p90: float
    response_chars_max: int
    single_letter_share: float
    longest_session_chars: int
    metadata_fields: tuple[str, ...]
    #: Share of sessions with at least one harmonised field that is not N/A.
    metadata_coverage: float
    #: Share of sessions with a value, per harmonised field (every field, 0.0 where absent).
    field_coverage: dict[str, float] = field(default_factory=dict)


class _Accumulator:
    """Running totals for one study; response lengths kept compactly (4 bytes each)."""

    def __init__(self, study: str) -> None:
        self.study = study
        self.participants = 0
        self.without_responses = 0
        self.lengths = array("I")
        self.single_letter = 0
        self.empty = 0
        self.longest = 0
        self.metadata_keys: set[str] = set()
        self.with_metadata = 0
        self.field_counts = dict.fromkeys(HARMONISED_FIELDS, 0)

    def add(self, session: Session) -> None:
        self.participants += 1
        self.longest = max(self.longest, len(session.text))
        if not session.responses:
            self.without_responses += 1
        for response in session.responses:
            self.lengths.append(len(response.text))
            self.single_letter += is_discrete_response(response.text)
            self.empty += not response.text.strip()
        self.metadata_keys.update(session.metadata)
        present = [name for name, value in session.harmonised.items() if value != NA]
        self.with_metadata += bool(present)
        for name in present:
            self.field_counts[name] += 1

    def result(self) -> StudyStats:
        lengths = np.frombuffer(self.lengths, dtype=np.uint32) if self.lengths else np.zeros(0)
        n = len(lengths)
        share = 1.0 / self.participants if self.participants else 0.0
        return StudyStats(
            study=self.study,
            participants=self.participants,
            responses=n,
            sessions_without_responses=self.without_responses,
            empty_responses=self.empty,
            response_chars_mean=float(lengths.mean()) if n else 0.0,
            response_chars_median=float(np.median(lengths)) if n else 0.0,
            response_chars_p90=float(np.percentile(lengths, 90)) if n else 0.0,
            response_chars_max=int(lengths.max()) if n else 0,
            single_letter_share=self.single_letter / n if n else 0.0,
            longest_session_chars=self.longest,
            metadata_fields=tuple(sorted(self.metadata_keys)),
            metadata_coverage=self.with_metadata * share,
            field_coverage={name: count * share for name, count in self.field_counts.items()},
        )


def summarise(sessions: Iterable[Session]) -> list[StudyStats]:
    """Stats per study of a session stream (studies in the order they first appear)."""
    accumulators: dict[str, _Accumulator] = {}
    for session in sessions:
        accumulator = accumulators.get(session.study)
        if accumulator is None:
            accumulator = accumulators[session.study] = _Accumulator(session.study)
        accumulator.add(session)
    return [accumulator.result() for accumulator in accumulators.values()]


def study_stats(
    path: str | Path,
    *,
    on_error: OnError = "fail",
    log: IssueLog | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> list[StudyStats]:
    """Stats for every study under ``path``, streamed."""
    return summarise(iter_sessions(path, on_error=on_error, log=log, max_line_bytes=max_line_bytes))


def stats_frame(stats: Iterable[StudyStats]) -> pd.DataFrame:
    """One row per study; field coverage flattened into ``coverage:<field>`` columns."""
    rows: list[dict[str, Any]] = []
    for item in stats:
        row = asdict(item)
        coverage = row.pop("field_coverage")
        row["metadata_fields"] = "; ".join(item.metadata_fields)
        row.update({f"coverage:{name}": value for name, value in coverage.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_stats(stats: Iterable[StudyStats], path: str | Path) -> Path:
    """Write the stats table as Parquet and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats_frame(stats).to_parquet(out, index=False)
    return out
