"""``psych201 export``: runs as one long table for R (lme4) or pandas, CSV or Feather.

One row per scored response of each run (model × condition × response), joined with what the
transcripts say about the trial (its number, the option count and what guessing scores, per-trial
metadata such as response times) and about the participant (harmonised demographics and every
other scalar field of the session). Column names are lower-case ``snake_case``; every column is
described in :data:`COLUMNS` (and in the ``.columns.json`` file written beside the table), the
metadata columns by the prefix they carry.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from psych201.atomic import write_text_atomic
from psych201.results.io import read_manifest, read_responses
from psych201.results.writer import ResultsError

FORMATS = ("csv", "feather")

#: The fixed columns, in order, and what each holds (units in the text).
COLUMNS: dict[str, str] = {
    "model": "model id",
    "condition": "prompt condition the run scored (raw = the transcript as is)",
    "study": "study folder name",
    "experiment": "experiment string of the session",
    "participant": "participant id as written in the data (unique within study and experiment)",
    "participant_id": "study/experiment/participant: one id per person, for random effects",
    "line": "line of the session in the study's prompts file (1-based)",
    "trial": "position of the response in the session (1-based)",
    "response_index": "position of the response in the session (0-based, as in the run)",
    "response_text": "the participant's response (the text between << and >>)",
    "nll": "negative log-likelihood of the response under the model (nats)",
    "n_tokens": "tokens of the response",
    "nll_per_token": "nll / n_tokens (nats per token)",
    "n_options": "options the response was chosen among (empty: unknown)",
    "options_inferred": "true when n_options was inferred from the participant's distinct "
                        "responses, not stated in the text",
    "chance_nll": "what guessing uniformly among the options scores: log(n_options) (nats)",
    "top1_correct": "the response was the model's most likely token (one-token responses)",
    "entropy": "mean predictive entropy over the response's tokens (nats)",
    "truncated": "the preceding context was cut to fit the model's window",
}
#: Prefixes of the columns taken from the data, and what they hold.
PREFIXES: dict[str, str] = {
    "trial_": "a per-trial metadata list of the session (one value per response, e.g. "
              "trial_rts: response time, in the data's unit, usually ms)",
    "participant_": "a scalar metadata field of the session (harmonised demographics: "
                    "participant_age, participant_gender, ...; others as in the data)",
}


def _column(prefix: str, field: str) -> str:
    """``prefix`` + the field name in snake_case, never one of the fixed :data:`COLUMNS`."""
    name = prefix + (re.sub(r"[^0-9a-z]+", "_", field.lower()).strip("_") or "field")
    return f"{name}_data" if name in COLUMNS else name


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _session_columns(sessions: Iterable[Any]) -> pd.DataFrame:
    """Per response of ``sessions``: option count, chance and the per-trial and participant
    metadata columns."""
    from psych201.prompts.chance import offered_sets

    rows: list[dict[str, Any]] = []
    for session in sessions:
        n = len(session.responses)
        participant = {_column("participant_", k): v for k, v in session.harmonised.items()
                       if v not in ("N/A", "")}
        for key, value in session.metadata.items():
            name = _column("participant_", key)
            if _scalar(value) and name not in participant:
                participant[name] = value
        per_trial = {_column("trial_", k): v for k, v in session.metadata.items()
                     if isinstance(v, list) and len(v) == n and all(_scalar(x) for x in v)}
        for position, (span, offered) in enumerate(
                zip(session.responses, offered_sets(session), strict=True)):
            k = len(offered.options) if offered.options is not None else None
            rows.append({
                "study": session.study, "experiment": session.experiment,
                "participant": session.participant, "line": session.line,
                "response_index": span.index,
                "n_options": k,
                "options_inferred": offered.source == "inferred" if k else None,
                "chance_nll": math.log(k) if k and k >= 2 else None,
                **{name: values[position] for name, values in per_trial.items()},
                **participant,
            })
    return pd.DataFrame(rows)


def _sessions_of(data: Path, scored: set[tuple[str, str, str, int]]) -> Iterable[Any]:
    from psych201.data.discover import discover_studies
    from psych201.data.hub import resolve_data
    from psych201.data.readers import iter_sessions

    studies = {key[0] for key in scored}
    for source in discover_studies(resolve_data(data)):
        if source.name in studies:
            for session in iter_sessions(source, on_error="skip"):
                if (session.study, session.experiment, session.participant,
                        session.line) in scored:
                    yield session


def data_of(run: Path) -> Path | None:
    """The data folder a run's manifest names, when it still exists."""
    try:
        path = (read_manifest(run).get("data") or {}).get("path")
    except (OSError, ValueError):
        return None
    return Path(path) if path and Path(str(path)).exists() else None


def long_table(runs: Sequence[Path], data: Path | None = None) -> pd.DataFrame:
    """The runs' responses as one long table (see the module doc); ``data`` defaults to the
    folder each run's manifest names. Without data, the trial and participant columns the
    response table cannot give are left out."""
    keys = ["study", "experiment", "participant", "line", "response_index"]
    frames = []
    for run in runs:
        responses = read_responses(run)
        source = data if data is not None else data_of(run)
        if source is not None and len(responses):
            scored = set(responses[keys[:4]].drop_duplicates().itertuples(index=False,
                                                                          name=None))
            extra = _session_columns(_sessions_of(source, scored))
            if len(extra):
                responses = responses.merge(extra, on=keys, how="left")
        frames.append(responses)
    if not frames:
        raise ResultsError("no runs to export")
    table = pd.concat(frames, ignore_index=True, sort=False)
    table["participant_id"] = (table["study"] + "/" + table["experiment"] + "/"
                               + table["participant"])
    table["trial"] = table["response_index"] + 1
    table["nll_per_token"] = table["nll"] / table["n_tokens"].where(table["n_tokens"] > 0)
    fixed = [c for c in COLUMNS if c in table.columns]
    extra_cols = sorted(c for c in table.columns
                        if c.startswith(tuple(PREFIXES)) and c not in COLUMNS)
    return _one_type_per_column(table[fixed + extra_cols])


def _one_type_per_column(table: pd.DataFrame) -> pd.DataFrame:
    """Metadata columns whose values mix types (an age written 31 here and "31" there) as text:
    CSV does not care, Feather (Arrow) needs one type per column."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        kinds = {type(v) for v in out[column] if v is not None and not (
            isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1:
            out[column] = out[column].map(
                lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                else str(v))
    return out


def column_docs(table: pd.DataFrame) -> dict[str, str]:
    """What each column of an exported ``table`` holds."""
    docs = {}
    for column in table.columns:
        prefix = next((p for p in PREFIXES if column.startswith(p)), None)
        docs[column] = COLUMNS.get(column) or (PREFIXES[prefix] if prefix else "")
    return docs


def write_export(table: pd.DataFrame, out: Path, fmt: str) -> tuple[Path, Path]:
    """Write ``table`` as ``fmt`` to ``out`` and its column descriptions beside it
    (``OUT.columns.json``); returns both paths."""
    if fmt not in FORMATS:
        raise ResultsError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        table.to_csv(out, index=False)
    else:
        table.reset_index(drop=True).to_feather(out)
    docs = out.with_name(out.name + ".columns.json")
    write_text_atomic(json.dumps(column_docs(table), indent=2) + "\n", docs)
    return out, docs
