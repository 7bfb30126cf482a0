"""Finding studies: the study folders, data files and tables under a path, by study id."""

from __future__ import annotations

import json
from pathlib import Path

from psych201.data.issues import DataError
from psych201.data.layout import (
    StudySource,
    _format_of,
    _ignored,
    _study_file_in,
    _study_name,
)
from psych201.data.tables import (
    SAVED_DATASET_FILES,
    _has_study_column,
    _jsonl_is_table,
    _saved_dataset_sources,
    _table_sources,
)


def _play_run_transcripts(root: Path) -> Path | None:
    """The transcripts folder of a ``psych201 play`` run folder, which reads as its studies
    (the run's choice table beside them is no transcript: read as one, every line failed)."""
    manifest, transcripts = root / "manifest.json", root / "transcripts"
    if not (manifest.is_file() and transcripts.is_dir()):
        return None
    try:
        kind = json.loads(manifest.read_text("utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return transcripts if kind == "psych201 play" else None


def discover_studies(path: str | Path) -> list[StudySource]:
    """The studies under ``path`` (a study folder, a data file or a dataset directory), by name.

    Raises :class:`DataError` when the path does not exist, holds no study, or two sources would
    give the same study id.
    """
    root = Path(path)
    if not root.exists():
        raise DataError("no such file or directory", file=str(root), code="not-found")
    if root.is_file():
        if _format_of(root) is None:
            raise DataError(
                "unsupported file type: expected a .zip, .jsonl or .parquet file or a folder",
                file=str(root),
                code="unsupported",
            )
        return _table_sources(root, (root,)) or [StudySource(_study_name(root), root)]
    own = _study_file_in(root)
    if own is not None:
        return [StudySource(root.name, own)]
    played = _play_run_transcripts(root)
    if played is not None:
        return discover_studies(played)
    if any((root / name).is_file() for name in SAVED_DATASET_FILES):
        return _saved_dataset_sources(root)
    found: dict[str, StudySource] = {}
    candidates: list[StudySource] = []
    shards: list[Path] = []  # top-level multi-study Parquet files: together, one table
    for child in sorted(root.iterdir()):
        if _ignored(child.name):
            continue
        if child.is_dir():
            data = _study_file_in(child)
            if data is not None:
                candidates.append(StudySource(child.name, data))
        elif _format_of(child) == "parquet" and _has_study_column(child):
            shards.append(child)
        elif _format_of(child) == "jsonl" and _jsonl_is_table(child):
            candidates.extend(_table_sources(child, (child,)))
        elif _format_of(child):
            candidates.append(StudySource(_study_name(child), child))
    if shards:
        candidates.extend(_table_sources(root, tuple(shards)))
    if not candidates:
        # A hub-style dataset folder: Parquet shards below (data/*.parquet) and a README card.
        nested = sorted(
            p
            for p in root.rglob("*.parquet")
            if p.is_file() and not any(_ignored(part) for part in p.relative_to(root).parts)
        )
        if nested and all(_has_study_column(p) for p in nested):
            candidates.extend(_table_sources(root, tuple(nested)))
    for source in candidates:
        if source.name in found:
            raise DataError(
                f"study {source.name!r} is given twice: {found[source.name].path} and "
                f"{source.path}",
                file=str(root),
                code="duplicate-study",
            )
        found[source.name] = source
    if not found:
        raise DataError(
            "no Psych-201 study here: expected a folder with prompts.jsonl.zip (or prompts.zip, "
            "prompts_jsonl.zip, prompts.jsonl), a .zip/.jsonl/.parquet file, or a directory of "
            "those",
            file=str(root),
            code="no-study",
        )
    return list(found.values())
