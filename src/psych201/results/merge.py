"""Merge shards (or run directories of one configuration) into one response table.

Merging checks what a reader would otherwise have to trust: every source ran the same
configuration (same config hash), each is finished, shards are distinct and cover 0..N-1, and no
response appears twice. The output is a run directory of its own (``manifest.json`` with the
sources listed, ``responses.parquet`` sorted like a single run's) or, for ``*.parquet``, one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from psych201.results.io import read_table
from psych201.results.lock import LOCK_FILE, lock_output_file, lock_run_dir
from psych201.results.manifest import (
    MANIFEST_FILE,
    ConfigMismatchError,
    describe_differences,
    load_manifest,
    now_iso,
    save_manifest,
)
from psych201.results.schema import RESPONSE_KEY, conform
from psych201.results.writer import (
    CONFIG_KEY,
    RESPONSES_FILE,
    ResultsError,
    is_temporary,
    remove_stale_temporaries,
    sort_responses,
    table_record,
    write_parquet_atomic,
)

#: Status of a merge output while it is being written.
MERGING = "merging"


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_runs` wrote."""

    path: Path
    sources: int
    rows: int
    config_hash: str | None


def _source_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():  # before "a bare table has no manifest", which would mislead
        raise ResultsError(f"{path}: no such run directory (or response table)")
    return load_manifest(path) if path.is_dir() else None


def merge_runs(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    allow_incomplete: bool = False,
    allow_mixed: bool = False,
    force: bool = False,
) -> MergeSummary:
    """Merge run directories (shards of one run, usually) into ``out``.

    ``allow_incomplete`` accepts unfinished runs and missing shards; ``allow_mixed`` accepts
    different configurations and bare Parquet files (e.g. several models in one table), checking
    duplicates per (model, condition) instead. ``out`` is never inside a source (nor a source
    inside it); an existing ``out`` is refused unless ``force`` (which replaces a previous merge
    output, never a scoring run), except an output of the same merge (interrupted, or repeated),
    which is redone. ``out`` is locked for the whole merge.
    """
    paths = [Path(s) for s in sources]
    if not paths:
        raise ResultsError("merge: no sources given")
    out = Path(out)
    _check_not_a_source(out, paths)
    if out.suffix == ".parquet":
        if out.exists() and not out.is_file():
            raise ResultsError(f"{out}: exists and is not a file")
        with lock_output_file(out):
            if out.exists() and not force:
                raise ResultsError(f"{out}: exists; pass --force to replace it")
            merged, _, config_hash = _merged_table(paths, allow_incomplete, allow_mixed)
            write_parquet_atomic(merged, out)
        return MergeSummary(out, len(paths), merged.num_rows, config_hash)
    with lock_run_dir(out):
        _check_output_dir(out, paths, force=force)
        merged, manifests, config_hash = _merged_table(paths, allow_incomplete, allow_mixed)
        _write_merged_dir(out, paths, manifests, merged, config_hash)
    return MergeSummary(out, len(paths), merged.num_rows, config_hash)


def _check_not_a_source(out: Path, paths: Sequence[Path]) -> None:
    target = out.resolve()
    for path in paths:
        source = path.resolve()
        if target == source or source in target.parents or target in source.parents:
            raise ResultsError(
                f"{out}: the output cannot be, or be inside, a source ({path}) or contain one; "
                "merge into a new directory"
            )


def _merged_from(paths: Sequence[Path]) -> list[str]:
    return [str(p.resolve()) for p in paths]


def _check_output_dir(out: Path, paths: Sequence[Path], *, force: bool) -> None:
    """Refuse an existing output directory unless it is this merge interrupted, or ``force``
    replaces a previous merge output."""
    present = sorted(
        p.name for p in out.iterdir() if p.name != LOCK_FILE and not is_temporary(p)
    )
    if not present:
        return
    try:
        manifest: dict[str, Any] | None = load_manifest(out)
    except ResultsError:
        manifest = None
    sources = manifest.get("merged_from") if manifest else None
    is_merge = isinstance(sources, list) and set(present) <= {MANIFEST_FILE, RESPONSES_FILE}
    if is_merge and [s.get("path") for s in sources or []] == _merged_from(paths):
        return  # the same merge (interrupted, or finished and now repeated): redo it
    if not force:
        raise ResultsError(f"{out}: exists and is not empty; pass --force to replace it")
    if not is_merge:
        raise ResultsError(
            f"{out}: --force replaces only a previous merge output (manifest.json and "
            f"responses.parquet), and this directory holds {', '.join(present[:5])}"
        )


def _merged_table(
    paths: list[Path], allow_incomplete: bool, allow_mixed: bool
) -> tuple[pa.Table, list[dict[str, Any] | None], str | None]:
    manifests = [_source_manifest(p) for p in paths]
    _check_sources(paths, manifests, allow_incomplete=allow_incomplete, allow_mixed=allow_mixed)

    tables = []
    for path in paths:
        table = read_table(path).replace_schema_metadata(None)
        tables.append(table)
    # Parquet gives list columns back with element fields named "element" (Arrow writes "item"):
    # conform restores the writer's exact schema, so merging one run reproduces its bytes.
    merged = conform(sort_responses(pa.concat_tables(tables)))
    _check_duplicates(merged, paths, tables)

    hashes = {m["config_hash"] for m in manifests if m is not None}
    config_hash = hashes.pop() if len(hashes) == 1 and all(manifests) else None
    if config_hash:
        merged = merged.replace_schema_metadata({CONFIG_KEY: config_hash.encode()})
    return merged, manifests, config_hash


def _write_merged_dir(
    out: Path,
    paths: list[Path],
    manifests: list[dict[str, Any] | None],
    merged: pa.Table,
    config_hash: str | None,
) -> None:
    # The manifest says "merging" until the table is written and recorded, so an interrupted
    # merge is recognised (and redone) by the same command, and never taken for a finished one.
    remove_stale_temporaries(out)
    first = next((m for m in manifests if m is not None), {})
    manifest = {
        **{k: v for k, v in first.items() if k not in ("invocations", "counts", "shard", "table")},
        "format": first.get("format", "psych201-run/1"),
        "config_hash": config_hash,
        "shard": None,
        "status": MERGING,
        "created": now_iso(),
        "responses": RESPONSES_FILE,
        "counts": {
            "responses": merged.num_rows,
            "sessions": _count_sessions(merged),
        },
        "merged_from": [
            {
                "path": str(p.resolve()),
                "config_hash": m.get("config_hash") if m else None,
                "shard": m.get("shard") if m else None,
                "status": m.get("status") if m else None,
            }
            for p, m in zip(paths, manifests, strict=True)
        ],
        "invocations": [],
    }
    if config_hash is None:
        manifest["spec"] = None
    save_manifest(out, manifest)
    write_parquet_atomic(merged, out / RESPONSES_FILE)
    manifest["status"] = "complete"
    manifest["table"] = table_record(out)
    save_manifest(out, manifest)


def _check_sources(
    paths: list[Path],
    manifests: list[dict[str, Any] | None],
    *,
    allow_incomplete: bool,
    allow_mixed: bool,
) -> None:
    for path, manifest in zip(paths, manifests, strict=True):
        if manifest is None:
            if not allow_mixed:
                raise ResultsError(
                    f"{path}: a bare table has no {MANIFEST_FILE} to check its configuration "
                    "against; merge run directories, or pass allow_mixed (--allow-mixed)"
                )
            continue
        if manifest.get("status") != "complete" and not allow_incomplete:
            raise ResultsError(
                f"{path}: run not finished (status {manifest.get('status')!r}); rerun its score "
                "command to complete it, or pass allow_incomplete (--allow-incomplete)"
            )
    present = [(p, m) for p, m in zip(paths, manifests, strict=True) if m is not None]
    if not allow_mixed and present:
        ref_path, ref = present[0]
        for path, manifest in present[1:]:
            if manifest.get("config_hash") != ref.get("config_hash"):
                diff = describe_differences(ref.get("spec") or {}, manifest.get("spec") or {})
                raise ConfigMismatchError(
                    f"{path} ran configuration {manifest.get('config_hash')}, {ref_path} ran "
                    f"{ref.get('config_hash')}; only runs of one configuration merge "
                    f"(differences: {'; '.join(diff) or 'none in the spec'})"
                )
    if allow_mixed:
        return
    shards = [m.get("shard") for _, m in present]
    if any(s is not None for s in shards):
        if any(s is None for s in shards):
            raise ResultsError("cannot merge an unsharded run with shards of the same run")
        counts = {s["count"] for s in shards if s is not None}
        if len(counts) != 1:
            raise ResultsError(f"shards of different partitions (N = {sorted(counts)})")
        count = counts.pop()
        indices = [s["index"] for s in shards if s is not None]
        if len(set(indices)) != len(indices):
            raise ResultsError(f"a shard appears twice among the sources ({sorted(indices)})")
        missing = sorted(set(range(count)) - set(indices))
        if missing and not allow_incomplete:
            raise ResultsError(
                f"shards {', '.join(f'{i}/{count}' for i in missing)} are missing; pass them too, "
                "or allow_incomplete (--allow-incomplete)"
            )


def _check_duplicates(merged: pa.Table, paths: list[Path], tables: list[pa.Table]) -> None:
    columns = ["model", "condition", *RESPONSE_KEY]
    counts = merged.group_by(columns).aggregate([([], "count_all")])
    dup = counts.filter(pc.greater(counts["count_all"], 1))
    if dup.num_rows:
        row = dup.slice(0, 1).to_pylist()[0]
        where = [
            str(p)
            for p, t in zip(paths, tables, strict=True)
            if t.filter(
                pc.and_(
                    pc.equal(t["study"], row["study"]),
                    pc.and_(
                        pc.equal(t["line"], row["line"]),
                        pc.equal(t["response_index"], row["response_index"]),
                    ),
                )
            ).num_rows
        ]
        raise ResultsError(
            f"{dup.num_rows} responses appear more than once, e.g. study {row['study']!r} line "
            f"{row['line']} response {row['response_index']} (model {row['model']!r}) in "
            f"{', '.join(where)}; overlapping sources cannot be merged"
        )


def _count_sessions(table: pa.Table) -> int:
    keys = table.select(["study", "experiment", "participant", "line"])
    return int(keys.group_by(keys.column_names).aggregate([]).num_rows)
