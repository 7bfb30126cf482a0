"""GGUF checkpoints converted once into a Hugging Face folder in the cache (keyed by the file's
SHA-256; workers sharing the cache convert it once)."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from psych201.scoring.catalogue import GGUFSource
from psych201.scoring.model_files import cache_root


def converted_folder(src: GGUFSource, cache_dir: Path | None) -> Path:
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


def _convert_into(src: GGUFSource, sha: str, root: Path, target: Path) -> None:
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
