"""What a run will cost before it starts: tokens, FLOPs, memory and hours per model.

**Tokens** are the tokens *forwarded*: the summed length of every sequence the scorer sends to
the engine (every window of every session, leading special tokens included), i.e. what the model
computes over, not the responses' ``n_tokens``. With the model's tokenizer at hand they are exact:
the run's own pipeline (selection, condition, alignment, windows) is driven with an engine that
only counts. Without it they are estimated from characters (:data:`CHARS_PER_TOKEN`).

**FLOPs** follow :mod:`psych201.scoring.plan` (attention included, sliding-window layers count
their window) from the model's config when it is local, else ``2 × parameters`` per token from
the registry. **Hours** divide FLOPs by an achieved FLOP/s: measured on the spot (``calibrate``)
or read from a ``benchmarks/packing.py`` JSON.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from psych201.bounds import read_bounded
from psych201.errors import UsageError
from psych201.pipeline import (
    ScoreConfig,
    ScoringSetup,
    score_run,
    tokenizer_info,
    window_config,
)
from psych201.pipeline.selection import select_sources, study_sessions
from psych201.scoring.engine import EngineInfo, ScoringRequest, TokenScores
from psych201.scoring.plan import Shape, forward_flops, shape_of

#: Characters per token when no tokenizer is at hand (English prose with BPE: ~4).
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class TokenCount:
    """What one study of a run forwards."""

    study: str
    sessions: int
    sequences: int
    tokens: int
    targets: int
    exact: bool
    lengths: tuple[int, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ModelPlan:
    """The cost of one (model, run) pair."""

    model: str
    data: str
    condition: str
    studies: tuple[TokenCount, ...]
    tokens: int
    exact: bool
    params_b: float | None
    flops: float | None
    peak_memory_bytes: int | None
    hours: float | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for s in out["studies"]:
            s.pop("lengths")
        return out


class CountingEngine:
    """An engine that scores nothing and records every sequence it is sent."""

    def __init__(self, max_context: int | None) -> None:
        self._info = EngineInfo("count", "count", "none", "none", max_context)
        self.lengths: list[int] = []
        self.targets = 0

    @property
    def info(self) -> EngineInfo:
        return self._info

    def close(self) -> None:
        pass  # holds nothing

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        out = []
        for r in requests:
            self.lengths.append(int(r.token_ids.size))
            self.targets += int(r.target_positions.size)
            k = int(r.target_positions.size)
            out.append(TokenScores(r.key, np.full(k, -1.0), np.zeros(k, dtype=np.int64),
                                   np.zeros(k)))
        return out


def count_tokens(config: ScoreConfig, tokenizer: Any | None, max_context: int | None) -> list[
    TokenCount
]:
    """Per study of ``config``: tokens forwarded (exact with ``tokenizer``, else estimated)."""
    from psych201.scoring.scorer import SessionScorer

    counts = []
    for source in select_sources(config):
        one = replace(config, studies=(source.name,))
        if tokenizer is None:
            chars = [len(s.text) for s in study_sessions(one, source)]
            tokens = [int(np.ceil(c / CHARS_PER_TOKEN)) for c in chars]
            counts.append(TokenCount(source.name, len(chars), len(chars), sum(tokens), 0, False,
                                     tuple(tokens)))
            continue
        engine = CountingEngine(max_context)
        window = window_config(config)
        setup = ScoringSetup(
            model_id=config.model, engine="count", tokenizer=tokenizer,
            scorer=SessionScorer(tokenizer, engine, alignment=config.alignment, window=window),
            model_info={"id": config.model, "source": "plan", "file_sha256": None,
                        "max_context": max_context},
            engine_info=engine.info, tokenizer_info=tokenizer_info(tokenizer),
            window=asdict(window),
        )
        with tempfile.TemporaryDirectory(prefix="psych201-plan-") as tmp:
            summary = score_run(replace(one, out=Path(tmp) / "run"), setup=setup)
        counts.append(TokenCount(source.name, summary.sessions, len(engine.lengths),
                                 sum(engine.lengths), engine.targets, True,
                                 tuple(engine.lengths)))
    return counts


@functools.lru_cache(maxsize=256)  # a study plans each model once per cell
def model_shape(model: str, cache_dir: Path | None = None) -> tuple[Any, Shape | None, int | None]:
    """(tokenizer, shape, max context) of a model whose files are local; Nones where not."""
    from psych201.scoring.models import load_tokenizer, max_context, model_folder

    try:
        tokenizer = load_tokenizer(model, cache_dir=cache_dir)
    except (ValueError, OSError):  # not local (ModelLoadError): estimates instead
        return None, None, None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_folder(model, cache_dir=cache_dir).folder)
    except (ValueError, OSError):  # e.g. a GGUF-only model: registry parameters instead
        return tokenizer, None, None
    return tokenizer, shape_of(config), max_context(config)


def peak_memory(shape: Shape | None, params_b: float | None, batch_tokens: int,
                dtype_bytes: int) -> int | None:
    """Peak resident memory of a scoring process: the runtime (Python, torch, transformers,
    tokenizer: :data:`RUNTIME_BYTES`), the weights, one batch's activations (residual,
    attention, MLP) and the head chunks."""
    if params_b is None:
        return None
    weights = params_b * 1e9 * dtype_bytes
    if shape is None:
        return int(RUNTIME_BYTES + weights)
    acts = batch_tokens * (6 * shape.hidden + 3 * shape.heads * shape.head_dim) * dtype_bytes
    head = 2 * (1 << 23) * 4  # two float32 chunks of HFEngine's head_chunk_elems
    return int(RUNTIME_BYTES + weights + acts + head)


#: Resident memory of a scoring process before any weights: Python, torch, transformers and the
#: tokenizer. Measured 2026-12-07 (CPU, float32, peak RSS of ``psych201 score``): gemma-3-270m
#: 1.95 GB (estimate 1.87 with this term, 1.37 without), smollm2-135m-instruct 1.11 GB.
RUNTIME_BYTES = 0.5e9


def plan_model(config: ScoreConfig, *, flops_per_s: float | None = None,
               registry: Any | None = None,
               estimates: dict[str, list[TokenCount]] | None = None) -> ModelPlan:
    """Tokens, FLOPs, memory and hours of scoring ``config``.

    ``estimates`` caches the character-based token counts, which do not depend on the model
    (a study's hundred hub models without local tokenizers read their data once per cell type).
    """
    tokenizer, shape, context = model_shape(config.model)
    if tokenizer is None and estimates is not None:
        key = repr(replace(config, model="", out=Path()))
        if key not in estimates:
            estimates[key] = count_tokens(config, None, context)
        counts = estimates[key]
    else:
        counts = count_tokens(config, tokenizer, context)
    info = registry.get(config.model) if registry is not None else None
    params_b = info.params_b if info is not None else None
    if params_b is None and shape is not None:
        params_b = (shape.body_params + 2 * shape.hidden * shape.vocab) / 1e9
    flops: float | None = None
    if shape is not None:
        flops = sum(forward_flops(shape, c.lengths, c.targets) for c in counts)
    elif params_b is not None:
        flops = 2.0 * params_b * 1e9 * sum(c.tokens for c in counts)
    dtype_bytes = 4 if config.dtype == "float32" else 2
    return ModelPlan(
        model=config.model, data=str(config.data), condition=config.condition,
        studies=tuple(counts), tokens=sum(c.tokens for c in counts),
        exact=all(c.exact for c in counts), params_b=params_b, flops=flops,
        peak_memory_bytes=peak_memory(shape, params_b, config.batch_tokens, dtype_bytes),
        hours=flops / flops_per_s / 3600 if flops is not None and flops_per_s else None,
    )


@dataclass(frozen=True)
class ShippedThroughput:
    """One measured entry of ``throughput.json``: FLOP/s of a device kind, and when."""

    device: str
    dtype: str
    flops_per_s: float
    model: str
    measured: str
    where: str

    def describe(self) -> str:
        return (f"{self.flops_per_s / 1e12:.3g} TFLOP/s measured {self.measured} on "
                f"{self.device} ({self.dtype}, {self.model}; {self.where})")


def shipped_throughput(device: str, dtype: str) -> ShippedThroughput | None:
    """The shipped figure for ``device``'s kind (``cpu``, or a GPU's name) and ``dtype``."""
    import json
    from importlib import resources

    from psych201.pipeline.setup import device_kind

    kind = device_kind(device)
    entries = json.loads(resources.files("psych201").joinpath("throughput.json").read_text())
    for entry in entries.get("devices", []):
        if entry.get("device") == kind and entry.get("dtype") == dtype:
            return ShippedThroughput(**entry)
    return None


#: A benchmarks/packing.py JSON is a few KiB; anything far larger is not one.
_MAX_BENCHMARK_BYTES = 1024 * 1024


class BenchmarkFileError(UsageError):
    """A ``--benchmark`` file that is not a readable benchmarks/packing.py JSON (names it)."""


def throughput_from_benchmark(path: Path) -> float:
    """Achieved FLOP/s from a ``benchmarks/packing.py`` JSON (its best packed figure).

    Any other file (``/etc/passwd``, a binary, a JSON of another shape) raises
    :class:`BenchmarkFileError` naming it, before any model is read.
    """
    import json

    what = "not a benchmarks/packing.py JSON"
    data = read_bounded(path, _MAX_BENCHMARK_BYTES, BenchmarkFileError,
                        kind="benchmarks/packing.py JSON")
    try:
        result = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not JSON"
        raise BenchmarkFileError(f"{path}: {what} ({reason})") from exc
    parts = [result.get(k) for k in ("long", "mix")] if isinstance(result, dict) else []
    best = [
        part[name].get("flops_per_s")
        for part in parts
        if isinstance(part, dict)
        for name in ("packed", "packed_windowed")
        if isinstance(part.get(name), dict)
    ]
    figures = [x for x in map(_positive_float, best) if x is not None]
    if not figures:
        raise BenchmarkFileError(f"{path}: no packed flops_per_s figure ({what})")
    return max(figures)


def _positive_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number > 0 else None


#: Wall-clock budget of the probe of ``plan --calibrate``, model load included (a GGUF's one-time
#: conversion excepted): with the imports and the plan itself the command ends within 45 s on a
#: loaded 2-core machine (20 s left it at 45.5 s with both cores busy, 2026-12-07).
CALIBRATE_SECONDS = 15.0
#: Tokens of one probe sequence: small, so that one round fits a loaded CPU's budget.
PROBE_TOKENS = 512


def calibrate(model: str, *, device: str, dtype: str, batch_tokens: int,
              seconds: float = CALIBRATE_SECONDS) -> float:
    """Achieved FLOP/s of the HF engine on ``model`` here, within ``seconds`` of wall clock
    from the call (loading included): one warm-up sequence, then probe sequences of
    :data:`PROBE_TOKENS` until the next one would overrun the budget (at least one)."""
    from psych201.scoring.hf import HFEngine
    from psych201.scoring.models import load_model, model_folder
    from psych201.scoring.plan import body_params_of

    model_folder(model)  # a GGUF converts once here, outside the budget
    began = time.perf_counter()
    loaded = load_model(model, dtype=dtype, device=device)
    engine = HFEngine(loaded, device=device, batch_tokens=batch_tokens)
    shape = shape_of(loaded.model.config, body_params_of(loaded.model))
    rng = np.random.default_rng(0)
    n = min(PROBE_TOKENS, batch_tokens)
    request = ScoringRequest("probe", rng.integers(0, shape.vocab, n).astype(np.int64),
                             np.arange(n // 2, n, dtype=np.int64))
    per_round = forward_flops(shape, [n], n - n // 2)
    engine.score([request])  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        engine.score([request])
        done += 1
        now = time.perf_counter()
        if now - began + (now - start) / done > seconds:  # the next round would overrun
            break
    return per_round * done / (time.perf_counter() - start)


def check_model_name(model: str) -> None:
    """Refuse (ValueError) a model ``score`` would refuse, without loading it: a path that is
    neither a Hugging Face folder nor a ``.gguf`` file, or a name that is no built-in, no hub
    id ``ORG/NAME`` and not in the registry. A hub id need not be downloaded to be planned."""
    from psych201.analysis.registry import load_registry
    from psych201.data.hub import is_repo_id
    from psych201.scoring.catalogue import BUILTIN_MODELS

    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{model}: not a .gguf file or a Hugging Face model folder")
        return
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ValueError(f"{model}: not a Hugging Face model folder (no config.json)")
        return
    if model in BUILTIN_MODELS or is_repo_id(model) or load_registry().get(model) is not None:
        return
    known = ", ".join(sorted(BUILTIN_MODELS))
    raise ValueError(f"unknown model {model!r}: not a built-in ({known}), a local model folder, "
                     "a .gguf file, a hub id ORG/NAME or a registry name")


