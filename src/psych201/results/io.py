"""Reading response tables and manifests back (what analysis and report build on)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from psych201.results.manifest import load_manifest
from psych201.results.schema import conform
from psych201.results.writer import RESPONSES_FILE, ResultsError, read_parts, sort_responses


def read_table(run_dir_or_file: str | Path) -> pa.Table:
    """The response table of a run directory or a Parquet file, as Arrow (schema-checked).

    A run directory without a final ``responses.parquet`` (still running, or killed) yields the
    rows of its finished parts, sorted, with a warning: they are valid but incomplete.
    """
    path = Path(run_dir_or_file)
    if path.is_dir():
        final = path / RESPONSES_FILE
        if final.is_file():
            path = final
        else:
            load_manifest(path)  # a clear error when this is not a run directory at all
            warnings.warn(
                f"{path}: run not finished (no {RESPONSES_FILE}); reading its finished parts",
                stacklevel=2,
            )
            return sort_responses(read_parts(path))
    if not path.is_file():
        raise ResultsError(f"{path}: no such response table or run directory")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ResultsError(f"{path}: unreadable Parquet file ({exc})") from exc
    try:
        return conform(table)
    except KeyError as exc:
        raise ResultsError(
            f"{path}: not a psych201 response table (missing {exc.args[0]})"
        ) from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ResultsError(f"{path}: column types differ from the response schema ({exc})") from exc


def read_responses(run_dir_or_file: str | Path) -> pd.DataFrame:
    """The response table as pandas, one row per response (columns of ``RESPONSE_SCHEMA``).

    ``top1_correct`` and ``offered_correct`` are nullable booleans (``<NA>`` where not defined).
    """
    table = read_table(run_dir_or_file)
    return table.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run manifest of a run directory (or of ``manifest.json`` itself), as a dict."""
    return load_manifest(Path(run_dir))
