"""The engine registry: each engine's name, the factory that builds its scorer, its loader keys.

A recipe (:class:`ScorerSpec`) rather than a live object crosses process boundaries: a Ray
worker, a Slurm array task or a benchmark subprocess builds its own engine replica from it.

Built-in engines live one per module and register their factory with :func:`register_engine`;
the module is imported only when its engine is asked for. Another package adds an engine
without editing psych201 by declaring an entry point in the ``psych201.engines`` group::

    [project.entry-points."psych201.engines"]
    toy = "toy_engine:build"   # a factory ScorerSpec -> BuiltScorer

==========  ==================================================================================
``hf``      built-in name, local HF folder or ``.gguf`` (transformers; the parity reference)
``vllm``    same; GGUF built-ins are served from the safetensors folder ``load_model`` caches
``llamacpp`` built-in name or ``.gguf`` file, run quantised as stored (no de-quantisation)
``openai``  the served model name; ``options["tokenizer"]`` names the local tokenizer
``oracle``  simulated data: the generating model's stored choice probabilities (no model)
``cognitive`` a task's cognitive model (Q-learning) fitted on a study's training participants
==========  ==================================================================================

``options`` (``--engine-args``) holds engine settings; ``model_args`` (``--model-args``) go to
the engine's loader, which accepts exactly the keys its registration names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from psych201.errors import UsageError
from psych201.scoring.engine import Engine, EngineInfo
from psych201.scoring.protocols import PromptScorer, Scorer
from psych201.scoring.scorer import SessionScorer, WindowConfig

ENTRY_POINT_GROUP = "psych201.engines"

#: Built-in engines and the module that registers each (imported on first use).
_BUILTIN: dict[str, str] = {
    "hf": "psych201.scoring.hf",
    "vllm": "psych201.scoring.vllm",
    "llamacpp": "psych201.scoring.llamacpp",
    "openai": "psych201.scoring.openai",
    "oracle": "psych201.scoring.oracle_engine",
    "cognitive": "psych201.scoring.cognitive_engine",
}


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
    model_args: Mapping[str, Any] = field(default_factory=dict)
    #: Softmax temperatures every response is also scored at (``SpanScore.nll_temperature``).
    temperatures: tuple[float, ...] = ()

    @property
    def loader_args(self) -> dict[str, Any]:
        """``model_args`` as the loaders take them (``cache_dir`` as a path)."""
        args = dict(self.model_args)
        if args.get("cache_dir") is not None:
            args["cache_dir"] = Path(str(args["cache_dir"]))
        return args


@dataclass(frozen=True, eq=False)
class BuiltScorer:
    """A scorer with what the run manifest records about it; ``close`` frees its engine."""

    scorer: Scorer
    info: EngineInfo
    tokenizer: Any  # None when the engine reads no text (the oracle)
    model_id: str
    model_info: Mapping[str, Any]
    engine: Engine | None = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


EngineFactory = Callable[[ScorerSpec], BuiltScorer]


@dataclass(frozen=True)
class EngineEntry:
    """A registered engine: its factory and the ``--model-args`` keys its loader accepts."""

    name: str
    factory: EngineFactory
    model_args: tuple[str, ...] = ()


_REGISTRY: dict[str, EngineEntry] = {}


def register_engine(
    name: str, *, model_args: tuple[str, ...] = ()
) -> Callable[[EngineFactory], EngineFactory]:
    """Decorator: register ``factory`` as engine ``name`` (its loader takes ``model_args``)."""

    def add(factory: EngineFactory) -> EngineFactory:
        _REGISTRY[name] = EngineEntry(name, factory, tuple(model_args))
        return factory

    return add


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def engine_names() -> tuple[str, ...]:
    """Every engine that can be asked for: built-ins, then installed entry points."""
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY, *sorted(_entry_points())]))


def engine_entry(name: str) -> EngineEntry:
    """The registered engine ``name`` (importing its module first); UsageError if unknown."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
        return _REGISTRY[name]
    found = _entry_points().get(name)
    if found is None:
        raise UsageError(f"unknown engine {name!r} (choose one of {', '.join(engine_names())})")
    factory = found.load()  # a module that registers itself, or the factory
    if name not in _REGISTRY:
        register_engine(name, model_args=tuple(getattr(factory, "model_args", ())))(factory)
    return _REGISTRY[name]


def check_model_args(engine: str, model_args: Mapping[str, Any]) -> None:
    """Refuse ``--model-args`` keys the engine's loader does not take (before it loads)."""
    accepted = engine_entry(engine).model_args
    own = sorted(set(model_args) & {"dtype", "device"})
    if own:
        raise UsageError(
            f"--model-args: {', '.join(own)} has its own option "
            f"({', '.join('--' + f for f in own)})"
        )
    unknown = sorted(set(model_args) - set(accepted))
    if unknown:
        raise UsageError(
            f"--model-args: engine {engine} does not take {', '.join(unknown)} "
            f"(accepted: {', '.join(accepted) or 'none'})"
        )


def build_scorer(spec: ScorerSpec) -> BuiltScorer:
    """Build the scorer ``spec`` names through the registry (model args checked first)."""
    check_model_args(spec.engine, spec.model_args)
    return engine_entry(spec.engine).factory(spec)


def build_engine(spec: ScorerSpec) -> tuple[Engine, Any, str]:
    """(engine, tokenizer, model id) of a token engine, for parity checks and benchmarks."""
    built = build_scorer(spec)
    if built.engine is None:
        raise UsageError(f"engine {spec.engine} scores no tokens")
    return built.engine, built.tokenizer, built.model_id


def make_scorer(spec: ScorerSpec) -> PromptScorer:
    """Just the scorer: ``functools.partial(make_scorer, spec)`` is a Ray worker's factory
    (which sees prompts only, so an engine that reads sessions cannot run there)."""
    scorer = build_scorer(spec).scorer
    if not isinstance(scorer, PromptScorer):
        raise UsageError(f"engine {spec.engine} reads whole sessions and cannot run on Ray")
    return scorer


def token_scorer(
    spec: ScorerSpec, engine: Engine, tokenizer: Any, model_id: str, model_info: Mapping[str, Any]
) -> BuiltScorer:
    """A :class:`SessionScorer` on a token engine, as every token engine's factory returns."""
    scorer = SessionScorer(tokenizer, engine, alignment=spec.alignment, window=spec.window,
                           temperatures=spec.temperatures)
    return BuiltScorer(scorer, engine.info, tokenizer, model_id, model_info, engine)


def model_identity(spec: ScorerSpec, max_context: int | None) -> dict[str, Any]:
    """What the manifest records about a local model: id, source, weights hash, revision."""
    from psych201.scoring.models import model_folder

    found = model_folder(spec.model, **spec.loader_args)
    info = {"id": found.model_id, "source": found.source, "file_sha256": found.file_sha256,
            "max_context": max_context}
    return {**info, **({"revision": found.revision} if found.revision else {})}
