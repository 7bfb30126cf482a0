"""Build any engine, and a :class:`SessionScorer` on it, from a small picklable recipe.

A recipe (:class:`ScorerSpec`) rather than a live object crosses process boundaries: a Ray
worker, a Slurm array task or a benchmark subprocess builds its own engine replica from it.

Engines and what ``model`` means for each:

==========  ==================================================================================
``hf``      built-in name, local HF folder or ``.gguf`` (transformers; the parity reference)
``vllm``    same; GGUF built-ins are served from the safetensors folder ``load_model`` caches
``llamacpp`` built-in name or ``.gguf`` file, run quantised as stored (no de-quantisation)
``openai``  the served model name; ``options["tokenizer"]`` names the local tokenizer
==========  ==================================================================================

``options`` holds engine-specific settings: :class:`~psych201.scoring.vllm.VLLMConfig` fields
for vLLM, :class:`~psych201.scoring.llamacpp.LlamaCppEngine` keywords for llama.cpp,
:class:`~psych201.scoring.openai.OpenAIServer` fields (plus ``tokenizer``, ``max_context``) for
OpenAI-compatible servers, ``batch_tokens`` for hf.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psych201.scoring.engine import Engine
from psych201.scoring.scorer import SessionScorer, WindowConfig

ENGINES: tuple[str, ...] = ("hf", "vllm", "llamacpp", "openai")


@dataclass(frozen=True)
class ScorerSpec:
    """Everything needed to build a scorer: engine, model, numerics, alignment and windows."""

    engine: str
    model: str
    dtype: str = "float32"
    device: str = "cpu"
    alignment: str = "offsets"
    window: WindowConfig = field(default_factory=WindowConfig)
    options: Mapping[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    #: Softmax temperatures every response is also scored at (``SpanScore.nll_temperature``).
    temperatures: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r} (known: {', '.join(ENGINES)})")


@dataclass(frozen=True, eq=False)
class BuiltScorer:
    """A scorer with its engine and tokenizer (the pipeline records the engine's info)."""

    scorer: SessionScorer
    engine: Engine
    tokenizer: Any
    model_id: str


def build_scorer(spec: ScorerSpec) -> BuiltScorer:
    """Load the tokenizer and engine named by ``spec`` and wrap them in a SessionScorer."""
    engine, tokenizer, model_id = build_engine(spec)
    scorer = SessionScorer(tokenizer, engine, alignment=spec.alignment, window=spec.window,
                           temperatures=spec.temperatures)
    return BuiltScorer(scorer, engine, tokenizer, model_id)


def build_engine(spec: ScorerSpec) -> tuple[Engine, Any, str]:
    """(engine, tokenizer, model id) for ``spec``."""
    from psych201.scoring import models

    cache = Path(spec.cache_dir) if spec.cache_dir else None
    options = dict(spec.options)
    if spec.engine == "hf":
        from psych201.scoring.hf import HFEngine

        loaded = models.load_model(spec.model, dtype=spec.dtype, device=spec.device,
                                   cache_dir=cache)
        engine: Engine = HFEngine(loaded, device=spec.device, **options)
        return engine, loaded.tokenizer, loaded.model_id
    if spec.engine == "vllm":
        from psych201.scoring.vllm import VLLMConfig, VLLMEngine

        folder, model_id = hf_folder(spec.model, cache)
        config = VLLMConfig(model=str(folder), dtype=spec.dtype, **options)
        return VLLMEngine(config, model_id=model_id), models.load_tokenizer(str(folder)), model_id
    if spec.engine == "llamacpp":
        from psych201.scoring.llamacpp import LlamaCppEngine

        gguf = gguf_file(spec.model, cache)
        tokenizer = models.load_tokenizer(spec.model, cache_dir=cache)
        model_id = spec.model if spec.model in models.BUILTIN_MODELS else gguf.stem
        return LlamaCppEngine(gguf, model_id=model_id, **options), tokenizer, model_id
    from psych201.scoring.openai import OpenAICompatEngine, OpenAIServer

    tokenizer_name = options.pop("tokenizer", None)
    if tokenizer_name is None:
        raise ValueError("the openai engine needs options['tokenizer'] (the served model's)")
    max_ctx = options.pop("max_context", None)
    engine = OpenAICompatEngine(OpenAIServer(model=spec.model, **options), max_context=max_ctx)
    return engine, models.load_tokenizer(str(tokenizer_name), cache_dir=cache), spec.model


def hf_folder(name_or_path: str, cache_dir: Path | None = None) -> tuple[Path, str]:
    """The local Hugging Face folder of a model (converting a GGUF built-in once) and its id."""
    from psych201.scoring.models import model_folder

    found = model_folder(name_or_path, cache_dir=cache_dir)
    return found.folder, found.model_id


def model_identity(name_or_path: str, cache_dir: str | None = None) -> tuple[str, str, str]:
    """(model id, weights SHA-256, source) of a model, as ``load_model`` records them."""
    from psych201.scoring.models import model_folder

    found = model_folder(name_or_path, cache_dir=Path(cache_dir) if cache_dir else None)
    return found.model_id, found.file_sha256, found.source


def gguf_file(name_or_path: str, cache_dir: Path | None = None) -> Path:
    """The GGUF file of a built-in model (assembled once under the cache) or a ``.gguf`` path."""
    from psych201.scoring import models

    if name_or_path in models.BUILTIN_MODELS:
        source = models.BUILTIN_MODELS[name_or_path]()
        target = models.cache_root(cache_dir) / "gguf" / f"{source.name}-{source.sha256()[:16]}"
        done = target / "model.gguf"
        if done.is_file():
            return done
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as scratch:
            located = Path(source.locate(Path(scratch)))
            if located.parent != Path(scratch):
                return located  # shipped as one file: use it where it lies
            located.replace(done)  # same filesystem: atomic, never a half-written file
        return done
    path = Path(name_or_path).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise ValueError(
            f"{name_or_path}: the llamacpp engine needs a .gguf file or a built-in model name "
            f"({', '.join(sorted(models.BUILTIN_MODELS))})"
        )
    return path


def make_scorer(spec: ScorerSpec) -> SessionScorer:
    """Just the scorer: ``functools.partial(make_scorer, spec)`` is a Ray worker's factory."""
    return build_scorer(spec).scorer
