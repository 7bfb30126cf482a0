"""Resume bookkeeping: which cells are finished, skipped for good, or hold no rows.

All of it is read from the cells' directories without loading a model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from psych201.pipeline import ScoreConfig, window_config
from psych201.results.manifest_model import SpecRecord
from psych201.results.manifest_read import read_manifest
from psych201.results.writer import ResultsError
from psych201.study.cells import Cell


def is_complete(cell: Cell, config: ScoreConfig) -> bool:
    """A finished run of this very cell is in its directory (checked without loading a model).

    Compares what the run spec records from the configuration alone (not the model's or the
    data's hashes, which need them opened): a cell whose engine settings changed is rerun, and
    ``score_run`` then refuses the directory with the fields that differ.
    """
    try:
        manifest = read_manifest(cell.out)
    except ResultsError:
        return False
    spec = manifest.spec or SpecRecord()
    wanted = {
        "split": config.split,
        "seed": config.seed,
        "limit": config.limit,
        "alignment": config.alignment,
        "dtype": config.dtype,
        "studies": sorted(config.studies),  # the spec stores them sorted
        "window": asdict(window_config(config)),
    }
    model_args = {k: v for k, v in config.model_args.items() if k != "cache_dir"}
    return (
        manifest.complete
        and all(_json_equal(getattr(spec, key), value) for key, value in wanted.items())
        and _json_equal(spec.extra.get("model_args", {}), model_args)
        and _same_engine(spec.engine or "", cell.engine.name)
    )


def _same_engine(recorded: str, wanted: str) -> bool:
    """A cell scored by another registered engine than the study file now names is not this
    cell (a Ray run records ``ray:ENGINE``); a setup outside the registry (a test's) is not
    judged."""
    from psych201.scoring.engines import engine_names

    engine = recorded.removeprefix("ray:")
    return engine == wanted or engine not in engine_names()


def _json_equal(stored: Any, wanted: Any) -> bool:
    # The manifest is JSON: tuples came back as lists.
    return bool(json.loads(json.dumps(wanted, default=str)) == stored)


#: Written in a cell's directory when its condition does not apply to its model (a base model
#: without a chat template): reruns skip the cell without loading the model to find that out
#: again. Delete the file (or the directory) to retry, e.g. after giving the model a template.
SKIP_FILE = "skipped.json"


def record_skip(cell: Cell, reason: str) -> None:
    cell.out.mkdir(parents=True, exist_ok=True)
    record = {"model": cell.model, "condition": cell.condition.label, "reason": reason}
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    (cell.out / SKIP_FILE).write_text(text, encoding="utf-8")


def skipped_before(cell: Cell) -> str | None:
    """The recorded reason this very cell (same model and condition) was skipped, if any."""
    try:
        record = json.loads((cell.out / SKIP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("model") != cell.model or record.get("condition") != cell.condition.label:
        return None
    return str(record.get("reason", "condition unavailable"))


def table_rows(run_dir: Path) -> int | None:
    """Rows of the run's final table (read from its footer), ``None`` when there is none."""
    import pyarrow.parquet as pq

    from psych201.results.writer import RESPONSES_FILE

    try:
        return int(pq.read_metadata(run_dir / RESPONSES_FILE).num_rows)
    except (OSError, ValueError):
        return None
