"""Turn a directory of study folders into one harmonised Parquet dataset (``data build``).

Columns, as in the paper's released dataset: ``study, experiment, participant, line, text``, the
25 harmonised metadata fields (strings, ``N/A`` where missing), ``metadata_raw`` (the raw metadata
as a JSON string, NaN written as null so any JSON reader accepts it) and ``in_eval`` (the test
split). Sessions without any response are dropped, as the authors do. Rows are written in row
groups as they stream by, to a temporary file renamed into place at the end, so memory stays
bounded and a crash never leaves a half-written dataset. The split seed and rule are stored in the
Parquet key-value metadata under ``psych201``.

The file is plain Parquet with string/int64/bool columns: pandas and HF ``datasets``
(``load_dataset("parquet", data_files=...)``) both load it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from psych201.atomic import write_atomic
from psych201.data.fields import HARMONISED_FIELDS
from psych201.data.issues import IssueLog, OnError
from psych201.data.readers import DEFAULT_MAX_LINE_BYTES, iter_sessions
from psych201.data.records import Session
from psych201.data.split import TEST_CAP, held_out_participants

#: Schema of a built dataset.
DATASET_SCHEMA = pa.schema(
    [
        pa.field("study", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("participant", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("text", pa.string()),
        *(pa.field(name, pa.string()) for name in HARMONISED_FIELDS),
        pa.field("metadata_raw", pa.string()),
        pa.field("in_eval", pa.bool_()),
    ]
)

_ROWS_PER_GROUP = 512


@dataclass(frozen=True)
class BuildSummary:
    """What ``build_dataset`` wrote."""

    path: Path
    seed: int
    sessions: int
    test_sessions: int
    dropped_without_responses: int
    sessions_per_study: dict[str, int]


def build_dataset(
    source: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    on_error: OnError = "fail",
    log: IssueLog | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> BuildSummary:
    """Write every study under ``source`` to the Parquet file ``out`` with the test split."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    keys = (
        s.key
        for s in iter_sessions(
            source, on_error=on_error, log=IssueLog(log_first=0), max_line_bytes=max_line_bytes
        )
    )
    test = held_out_participants(keys, seed=seed)
    provenance = {
        "split_seed": seed,
        "split_rule": f"per study min(floor(0.1 n), {TEST_CAP}); numpy default_rng([seed, "
        "sha256(study)[:8]]) over keys sorted by (experiment, participant, line)",
        "dropped": "sessions without any << >> response",
    }
    schema = DATASET_SCHEMA.with_metadata({"psych201": json.dumps(provenance)})
    per_study: Counter[str] = Counter()
    dropped = n_test = 0

    def write(handle: BinaryIO) -> None:
        nonlocal dropped, n_test
        rows: list[dict[str, Any]] = []
        with pq.ParquetWriter(handle, schema) as writer:
            for session in iter_sessions(
                source, on_error=on_error, log=log, max_line_bytes=max_line_bytes
            ):
                if not session.responses:
                    dropped += 1
                    continue
                in_eval = session.key in test
                n_test += in_eval
                per_study[session.study] += 1
                rows.append(dataset_row(session, in_eval))
                if len(rows) >= _ROWS_PER_GROUP:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    rows.clear()
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))

    write_atomic(target, write)
    return BuildSummary(
        path=target,
        seed=seed,
        sessions=sum(per_study.values()),
        test_sessions=n_test,
        dropped_without_responses=dropped,
        sessions_per_study=dict(per_study),
    )


def dataset_row(session: Session, in_eval: bool) -> dict[str, Any]:
    """One row of :data:`DATASET_SCHEMA`."""
    return {
        "study": session.study,
        "experiment": session.experiment,
        "participant": session.participant,
        "line": session.line,
        "text": session.text,
        **{name: session.harmonised[name] for name in HARMONISED_FIELDS},
        "metadata_raw": json.dumps(_json_safe(session.metadata), ensure_ascii=False),
        "in_eval": in_eval,
    }


def _json_safe(value: Any) -> Any:
    """Standard JSON: NaN and infinities (bare in some Psych-201 files) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
