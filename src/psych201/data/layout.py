"""Where a study's data lives: data file names and suffixes, study ids, the StudySource record."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from psych201.data.issues import DataError

#: The data file of a study folder, in order of preference.
STUDY_FILES: tuple[str, ...] = (
    "prompts.jsonl.zip",
    "prompts.zip",
    "prompts_jsonl.zip",
    "prompts.jsonl",
    "prompts.parquet",
)
_SUFFIXES: tuple[tuple[str, Literal["zip", "jsonl", "parquet"]], ...] = (
    (".jsonl.zip", "zip"),
    (".zip", "zip"),
    (".jsonl", "jsonl"),
    (".parquet", "parquet"),
)


TableFormat = Literal["parquet", "jsonl", "arrow"]


@dataclass(frozen=True, slots=True)
class StudySource:
    """One study to read: its id (``name``) and the data file (``path``).

    For one study of a multi-study table, ``path`` is the table (its file or folder), ``table``
    every file of it in order (a ``save_to_disk`` folder for ``arrow``) and ``table_format`` how
    to read them; only the rows whose ``study`` is ``name`` belong to this source.
    """

    name: str
    path: Path
    table: tuple[Path, ...] = ()
    table_format: TableFormat | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this source reads (a table's files are shared with its other studies)."""
        return self.table or (self.path,)

    @property
    def format(self) -> Literal["zip", "jsonl", "parquet", "arrow"]:
        if self.table_format is not None:
            return self.table_format
        fmt = _format_of(self.path)
        if fmt is None:  # discover_studies never builds one; a hand-made one may be wrong
            raise DataError("unsupported file type", file=str(self.path), code="unsupported")
        return fmt


def _default_study(path: Path) -> str:
    """The study of a table row that names none: the table's file stem or folder name."""
    return _study_name(path) if path.is_file() else path.name


def _format_of(path: Path) -> Literal["zip", "jsonl", "parquet"] | None:
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    return None


def _study_name(path: Path) -> str:
    """The file stem without its data suffix; a ``prompts*`` file takes its folder's name."""
    name = path.name
    for suffix, _ in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.lower().startswith("prompts"):
        try:
            return path.resolve(strict=True).parent.name
        except RuntimeError as error:  # a symlink loop before Python 3.13 (then an OSError)
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from error
    return name


def _study_file_in(folder: Path) -> Path | None:
    for name in STUDY_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _ignored(name: str) -> bool:
    """macOS resource forks and hidden files are never data."""
    return name.startswith((".", "__MACOSX"))


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")
