"""The files of a model: the error when they cannot be loaded, the cache they live in, and
their hashes (the identity a run records)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from psych201.errors import UsageError

_WEIGHT_SUFFIX = ".safetensors"


class ModelLoadError(UsageError):
    """A model that cannot be loaded: unknown name, missing file, unsafe weights."""


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where converted models live: ``cache_dir``, else ``$PSYCH201_CACHE``, else ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PSYCH201_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "psych201"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(path: Path) -> list[Path]:
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: not a Hugging Face model folder (no config.json)")
    weights = sorted(path.glob(f"*{_WEIGHT_SUFFIX}"))
    if not weights:
        raise ModelLoadError(
            f"{path}: no *.safetensors weights; psych201 never loads pickled weights "
            "(*.bin, *.pt) — convert the folder to safetensors first"
        )
    return weights


def folder_sha256(weights: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()
