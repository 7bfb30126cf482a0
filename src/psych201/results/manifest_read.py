"""Reading a run directory's manifest as the typed :class:`~.manifest_model.Manifest`.

:func:`read_manifest` reads ``DIR/manifest.json`` through :func:`~.manifest.load_manifest` (which
refuses another format and names a mistyped field). Code that updates a manifest keeps the dict
of :func:`~.manifest.load_manifest` and :func:`~.manifest.save_manifest`, the one writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from psych201.results.manifest import load_manifest, manifest_path
from psych201.results.manifest_model import Manifest
from psych201.results.writer import ResultsError


def read_manifest(run_dir: Path) -> Manifest:
    """The manifest of ``run_dir``, typed (``ResultsError`` where it is missing or damaged)."""
    return typed_manifest(load_manifest(run_dir), run_dir)


def typed_manifest(raw: dict[str, Any], run_dir: Path) -> Manifest:
    """``raw`` (what :func:`~.manifest.load_manifest` read from ``run_dir``) as a
    :class:`Manifest`; ``ResultsError`` naming the file and the first field that does not fit."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        path = manifest_path(run_dir) if Path(run_dir).is_dir() else Path(run_dir)
        raise ResultsError(f"{path}: damaged manifest: {where}: {first['msg']}") from exc
