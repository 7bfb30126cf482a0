"""Response tables as the analyses see them: read, checked, and restricted to comparable sets.

Everything downstream works on one pandas frame with the columns of
:data:`psych201.results.schema.RESPONSE_SCHEMA` (one row per scored response; ``model`` and
``condition`` tell the runs apart), optionally plus ``n_options`` (the size of the option set a
response was chosen from, where the transcript tells).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from psych201.errors import UsageError
from psych201.prompts.records import ConditionRole
from psych201.results.io import read_manifest, read_responses
from psych201.results.schema import ADDED_COLUMNS, RESPONSE_KEY, RESPONSE_SCHEMA

#: Columns that identify a participant within a study (ids repeat across sub-experiments).
PARTICIPANT_KEY = ["experiment", "participant"]
#: Optional columns the analyses use when a table carries them.
OPTIONAL_COLUMNS = ("n_options", "is_psych101")


class TableError(UsageError):
    """A response table the analyses cannot use; the message names the source and reason."""


class StudySetError(UsageError):
    """Models (or conditions) compared over different study or response sets.

    ``missing`` maps each model to the studies the others have and it lacks.
    """

    def __init__(self, message: str, missing: dict[str, tuple[str, ...]]) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class RunSource:
    """One input of an analysis: where its rows came from and the run manifest, if any."""

    path: str
    n_rows: int
    models: tuple[str, ...]
    conditions: tuple[str, ...]
    manifest: dict[str, Any] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, eq=False)
class Results:
    """All rows of the inputs, concatenated, and where each came from."""

    responses: pd.DataFrame
    sources: tuple[RunSource, ...]

    @property
    def models(self) -> list[str]:
        return sorted(self.responses["model"].unique())

    @property
    def conditions(self) -> list[str]:
        return sorted(self.responses["condition"].unique())

    def condition_roles(self) -> dict[str, ConditionRole]:
        """The role each run's manifest records for its condition (runs of one condition; older
        manifests record none, and the analyses then go by the condition's registered name)."""
        roles: dict[str, ConditionRole] = {}
        for source in self.sources:
            recorded = (source.manifest or {}).get("condition_role")
            if recorded in {r.value for r in ConditionRole} and len(source.conditions) == 1:
                roles[source.conditions[0]] = ConditionRole(recorded)
        return roles


def _parquet_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    final = path / "responses.parquet"
    return final if final.is_file() else None


def _extra_columns(path: Path, n_rows: int) -> pd.DataFrame | None:
    """Optional columns (``n_options``) the schema-checked reader drops, in the same row order."""
    file = _parquet_file(path)
    if file is None:
        return None
    names = pq.read_schema(file).names
    wanted = [c for c in OPTIONAL_COLUMNS if c in names]
    if not wanted:
        return None
    extra = pq.read_table(file, columns=wanted).to_pandas()
    return extra if len(extra) == n_rows else None


def read_one(path: str | Path) -> tuple[pd.DataFrame, RunSource]:
    """Rows and source record of one run directory or Parquet file."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such run directory or Parquet file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unfinished run is reported by the caller below
            frame = read_responses(path)
    except ValueError as exc:  # ResultsError is a ValueError: keep its file/reason message
        raise TableError(str(exc)) from exc
    extra = _extra_columns(path, len(frame))
    if extra is not None:
        for column in extra.columns:
            frame[column] = extra[column].to_numpy()
    manifest: dict[str, Any] | None = None
    run_dir = path if path.is_dir() else path.parent
    if (run_dir / "manifest.json").is_file():
        try:
            manifest = read_manifest(run_dir)
        except ValueError:
            manifest = None
    frame = frame.reset_index(drop=True)
    source = RunSource(
        path=str(path),
        n_rows=len(frame),
        models=tuple(sorted(frame["model"].unique())),
        conditions=tuple(sorted(frame["condition"].unique())),
        manifest=manifest,
    )
    return frame, source


def validate_responses(frame: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Check columns, values and uniqueness; return the frame with analysis dtypes.

    Refuses missing columns, non-finite or negative NLLs, and the same response scored twice by
    one model under one condition (e.g. a run passed twice), naming the first offending row.
    """
    missing = [c for c in RESPONSE_SCHEMA.names if c not in frame.columns]
    if missing and set(missing) <= set(ADDED_COLUMNS):
        # A table written before these columns existed: they are unknown, not wrong.
        frame = frame.assign(**{c: pd.NA for c in missing})
    elif missing:
        raise TableError(f"{source}: missing columns {', '.join(missing)}")
    # A response without tokens carries no evidence: an empty response (nll 0) or one the paper's
    # marker matching never found (nll NaN). The authors' pooled means skip both.
    frame = frame[pd.to_numeric(frame["n_tokens"], errors="coerce").fillna(0).to_numpy() > 0]
    frame = frame.reset_index(drop=True)
    nll = pd.to_numeric(frame["nll"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(nll) | (nll < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(
            f"{source}: row {row}: nll must be a finite number ≥ 0 (got "
            f"{_plain(frame['nll'].iloc[row])!r}, model {frame['model'].iloc[row]!r}, "
            f"study {frame['study'].iloc[row]!r})"
        )
    keys = ["model", "condition", *RESPONSE_KEY]
    dup = frame.duplicated(keys)
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        where = ", ".join(f"{k}={_plain(frame[k].iloc[row])!r}" for k in keys)
        raise TableError(f"{source}: row {row}: response scored twice ({where})")
    out = frame.copy()
    out["nll"] = nll
    for column in ("experiment", "participant"):
        out[column] = out[column].astype(str)
    # categoricals: selecting one model/condition/study is a code comparison, not a string scan
    for column in ("model", "condition", "study"):
        out[column] = out[column].astype(str).astype("category")
    return out


def read_results(paths: Sequence[str | Path]) -> Results:
    """Read and concatenate run directories / Parquet files (each checked, then all together)."""
    if not paths:
        raise TableError("no results given")
    frames: list[pd.DataFrame] = []
    sources: list[RunSource] = []
    for path in paths:
        frame, source = read_one(path)
        if frame.empty:
            raise TableError(f"{path}: the response table is empty")
        frames.append(frame)
        sources.append(source)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    label = paths[0] if len(paths) == 1 else f"{len(paths)} inputs ({', '.join(map(str, paths))})"
    return Results(validate_responses(frame, str(label)), tuple(sources))


def results_from_frame(frame: pd.DataFrame, source: str = "table") -> Results:
    """Wrap an in-memory table (synthetic data, tests) like :func:`read_results` would."""
    checked = validate_responses(frame, source)
    record = RunSource(
        path=source,
        n_rows=len(checked),
        models=tuple(sorted(checked["model"].unique())),
        conditions=tuple(sorted(checked["condition"].unique())),
    )
    return Results(checked, (record,))


def select(frame: pd.DataFrame, *, model: str | None = None, condition: str | None = None,
           studies: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of one model and/or condition, optionally restricted to ``studies``."""
    mask = np.ones(len(frame), dtype=bool)
    if model is not None:
        mask &= (frame["model"] == model).to_numpy()
    if condition is not None:
        mask &= (frame["condition"] == condition).to_numpy()
    if studies is not None:
        mask &= frame["study"].isin(list(studies)).to_numpy()
    return frame.loc[mask]


def study_sets(frame: pd.DataFrame, models: Sequence[str], condition: str) -> dict[str, set[str]]:
    sub = select(frame, condition=condition)
    grouped = sub.groupby("model", observed=True)["study"].unique()
    return {m: set(grouped.get(m, [])) for m in models}


def common_studies(frame: pd.DataFrame, models: Sequence[str], condition: str, *,
                   allow_missing: bool = False) -> list[str]:
    """The studies every model in ``models`` has under ``condition``.

    When the study sets differ this raises :class:`StudySetError` saying which model lacks which
    studies, unless ``allow_missing`` — then the comparison runs on the shared studies.
    """
    sets = study_sets(frame, models, condition)
    empty = [m for m, s in sets.items() if not s]
    if empty:
        raise StudySetError(
            f"no rows for {', '.join(empty)} under condition {condition!r}",
            {m: () for m in empty},
        )
    union = set().union(*sets.values())
    shared = set.intersection(*sets.values()) if sets else set()
    missing = {m: tuple(sorted(union - s)) for m, s in sets.items() if union - s}
    if missing and not allow_missing:
        detail = "; ".join(f"{m} lacks {', '.join(s)}" for m, s in missing.items())
        raise StudySetError(
            f"models were scored on different study sets under {condition!r}: {detail}. "
            "Score the missing studies or pass --allow-missing to compare on the "
            f"{len(shared)} shared studies",
            missing,
        )
    if not shared:
        raise StudySetError("the models share no study", missing)
    return sorted(shared)


def check_same_responses(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str], *,
                         allow_missing: bool = False) -> int:
    """Refuse a paired comparison whose two sides scored different responses.

    Returns the number of responses present on one side only (0 unless ``allow_missing``).
    """
    ka = pd.MultiIndex.from_frame(a[RESPONSE_KEY])
    kb = pd.MultiIndex.from_frame(b[RESPONSE_KEY])
    only_a = len(ka.difference(kb))
    only_b = len(kb.difference(ka))
    if (only_a or only_b) and not allow_missing:
        raise StudySetError(
            f"{names[0]} and {names[1]} scored different responses in their shared studies "
            f"({only_a} only in {names[0]}, {only_b} only in {names[1]}); pass --allow-missing "
            "to pair the common responses only",
            {},
        )
    return only_a + only_b


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (a message shows 15, not ``np.int64(15)``)."""
    return value.item() if isinstance(value, np.generic) else value


def response_tokens(rows: pd.DataFrame) -> pd.Series | float:
    """Tokens per response (1 where the table does not say: a one-token response)."""
    if "n_tokens" not in rows.columns:
        return 1.0
    return pd.to_numeric(rows["n_tokens"], errors="coerce").fillna(1).clip(lower=1)
