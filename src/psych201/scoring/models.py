"""Load a causal LM and its tokenizer: built-in packaged models, local HF folders, GGUF files.

GGUF files load through transformers (``gguf_file=``), which de-quantises every tensor and parses
the whole GGUF header twice (tokenizer, then weights): 20–60 s on a laptop CPU. So a GGUF is
converted once to a plain safetensors folder under ``$PSYCH201_CACHE/models/<name>-<sha>``
(default ``~/.cache/psych201``) and every later load reads that folder (a few seconds). The
folder name carries the GGUF's SHA-256, so a changed file can never reuse a stale conversion.

A hub id ``ORG/NAME[@revision]`` (``Qwen/Qwen3-0.6B``) resolves through ``huggingface_hub`` to a
snapshot in the standard HF cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``): downloaded with a
progress bar when online, taken from the cache with ``HF_HUB_OFFLINE=1``. Only the config,
tokenizer and safetensors files are fetched; the snapshot's commit sha is the model's
``revision``, which the run manifest records.

Safe by default: weights load from safetensors only (never pickle), remote code is never run and
transformers itself never downloads (``local_files_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psych201.data.hub import is_repo_id, split_revision
from psych201.scoring.catalogue import BUILTIN_MODELS, GGUFSource
from psych201.scoring.gguf_conversion import converted_folder
from psych201.scoring.hub import HUB_SOURCE_PREFIX, hub_revision, hub_snapshot
from psych201.scoring.model_files import (
    ModelLoadError,
    folder_sha256,
    sha256_file,
    weight_files,
)

#: The model ``psych201 score`` and ``psych201 demo`` use unless told otherwise.
DEFAULT_MODEL = "gemma-3-270m"

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to score, with what a run manifest records about it.

    ``file_sha256`` identifies the weights: the GGUF file's SHA-256 for GGUF sources, else a
    SHA-256 over the folder's safetensors files. ``max_context`` is the longest sequence the
    model was trained for (None when its config does not say). ``source`` is where it came from
    (a path, or ``package:<name>`` for a built-in).
    """

    model_id: str
    tokenizer: Any
    model: Any
    file_sha256: str
    max_context: int | None
    source: str
    revision: str | None = None


# ---------------------------------------------------------------------------------------------
# Built-in models


# ---------------------------------------------------------------------------------------------
# Public API


def load_model(
    name_or_path: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load a built-in model name, a local HF folder or a local ``.gguf`` file.

    ``dtype`` is ``float32`` (the parity reference), ``bfloat16`` or ``float16``. ``device`` is a
    torch device (``cpu``, ``cuda``, ``cuda:1``) or ``auto`` to spread a model too large for one
    GPU over all of them (accelerate's ``device_map="auto"``).
    """
    from transformers.utils import logging as hf_logging

    # psych201 draws its own progress; transformers' per-tensor loading bars only clutter it.
    hf_logging.disable_progress_bar()
    folder, model_id, sha, source = _resolve(name_or_path, cache_dir)
    tokenizer = _load_tokenizer(folder)
    model = _load_weights(folder, dtype=dtype, device=device)
    return LoadedModel(
        model_id=model_id,
        tokenizer=tokenizer,
        model=model,
        file_sha256=sha,
        max_context=max_context(model.config),
        source=source,
        revision=hub_revision(source),
    )


def load_tokenizer(name_or_path: str, *, cache_dir: Path | None = None) -> Any:
    """Only the tokenizer of :func:`load_model`'s model (converting a GGUF once if needed)."""
    folder, *_ = _resolve(name_or_path, cache_dir)
    return _load_tokenizer(folder)


@dataclass(frozen=True)
class ModelFolder:
    """Where a model's Hugging Face files are and what the run manifest records about them."""

    folder: Path
    model_id: str
    file_sha256: str
    source: str

    @property
    def revision(self) -> str | None:
        """The hub commit sha for a hub model, else None."""
        return hub_revision(self.source)


def model_folder(name_or_path: str, *, cache_dir: Path | None = None) -> ModelFolder:
    """The local Hugging Face folder of a model, without loading it (a GGUF is converted once).

    Engines that load weights themselves (vLLM) start from this folder; the identity fields are
    the ones :func:`load_model` records.
    """
    folder, model_id, sha, source = _resolve(name_or_path, cache_dir)
    return ModelFolder(Path(folder), model_id, sha, source)


def model_identity(name_or_path: str) -> str | None:
    """The model id :func:`load_model` will record, read from the name alone (no conversion,
    download or hashing); None where only loading can tell."""
    if name_or_path in BUILTIN_MODELS:
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.resolve().stem
    if path.is_dir():
        return path.resolve().name
    if is_repo_id(name_or_path):
        return split_revision(name_or_path)[0]
    return None


def max_context(config: Any) -> int | None:
    """The model's trained context length from its config (text config for multimodal ones)."""
    for cfg in (config, getattr(config, "text_config", None)):
        value = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# Resolution and conversion


def _resolve(name_or_path: str, cache_dir: Path | None) -> tuple[Path, str, str, str]:
    """(folder to load, model id, weights sha256, source) for a name or path."""
    if name_or_path in BUILTIN_MODELS:
        src = BUILTIN_MODELS[name_or_path]()
        return converted_folder(src, cache_dir), src.name, src.sha256(), src.source
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        resolved = path.resolve()
        sha = sha256_file(resolved)
        src = GGUFSource(
            name=resolved.stem,
            sha256=lambda: sha,
            locate=lambda _scratch: resolved,
            source=str(resolved),
        )
        return converted_folder(src, cache_dir), resolved.stem, sha, str(resolved)
    if path.is_dir():
        return path, path.resolve().name, folder_sha256(weight_files(path)), str(path.resolve())
    if is_repo_id(name_or_path):
        repo, _ = split_revision(name_or_path)
        snapshot = hub_snapshot(name_or_path)
        sha = folder_sha256(weight_files(snapshot))
        return snapshot, repo, sha, f"{HUB_SOURCE_PREFIX}{repo}@{snapshot.name}"
    known = ", ".join(sorted(BUILTIN_MODELS))
    raise ModelLoadError(
        f"unknown model {name_or_path!r}: not a built-in ({known}), a local model folder, a "
        ".gguf file or a hub id ORG/NAME[@revision]"
    )


# ---------------------------------------------------------------------------------------------
# Hub ids


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)


def _load_weights(folder: Path, *, dtype: str, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, dtype),
        "local_files_only": True,
        "trust_remote_code": False,
        "use_safetensors": True,
    }
    if device == "auto":
        kwargs["device_map"] = "auto"
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot load the model: {exc}") from exc
    if device != "auto":
        model.to(device)
    model.eval()
    return model
