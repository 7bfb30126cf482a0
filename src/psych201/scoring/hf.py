"""The reference engine: Hugging Face transformers causal LMs, on CPU or GPU.

Scoring only needs the output distribution at the response tokens, so the model's body runs on
the whole sequence but the output layer (lm_head, soft-capping, log-softmax) runs only at the
positions that predict a target: a 32k-token session with Gemma's 262,144-entry vocabulary would
otherwise need ~34 GB of float32 logits. The head is applied in row chunks so even many targets
never hold more than ``head_chunk_elems`` logits at once.

Requests are sorted by length and, by default, packed without padding: many sequences share one
row of at most ``batch_tokens`` tokens, each with its own position ids and attention that stays
inside it (:mod:`psych201.scoring.packing`). With ``packing="off"`` (or an architecture packing
does not support) they go in padded batches of at most ``batch_tokens`` tokens (padded length ×
batch size), right-padded with an attention mask; causal attention means the padding never
reaches a real token. A batch that runs out of memory is split in half and retried; a single
sequence that does not fit is an error naming its length.

The shortcut is verified, not assumed: on construction the engine compares its head against the
model's own ``forward`` logits on a short probe, so an architecture with an output transform we do
not know (beyond Gemma's final-logit soft-capping, Cohere's ``logit_scale`` and Granite's
``logits_scaling``) fails loudly instead of scoring wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from psych201.scoring.engine import EngineInfo, ScoringRequest, TemperatureSupport, TokenScores
from psych201.scoring.engine_util import EngineError, check_request, empty_scores
from psych201.scoring.engines import BuiltScorer, ScorerSpec, token_scorer
from psych201.scoring.hf_batches import (
    free_memory,
    is_oom,
    packed_tokens,
    padded_batches,
    padded_tokens,
)
from psych201.scoring.hf_head import head_scores, logit_transform, temperatures_on
from psych201.scoring.models import LoadedModel, max_context
from psych201.scoring.packing import (
    ATTENTION_NAME,
    SEGMENTS_KWARG,
    attention_implementation,
    bin_pack,
    packing_supported,
    register,
)

#: Default token budget per batch (padded tokens); fits a 270M model comfortably on CPU.
DEFAULT_BATCH_TOKENS = 8192

#: ``packing`` choices: ``auto`` packs wherever the architecture allows it, ``on`` insists.
PACKING_CHOICES = ("auto", "on", "off")

_PROBE_TOL = 1e-3  # nats: head shortcut vs the model's own logits (bf16 noise is ~1e-2 relative)


class HFEngine:
    """Score token sequences with a transformers causal LM (implements ``Engine``).

    ``model`` is a :class:`~psych201.scoring.models.LoadedModel` or a transformers
    ``PreTrainedModel``. ``device`` moves the model there unless it is spread over devices
    already (``load_model(..., device="auto")``). ``batch_tokens`` caps padded tokens per batch;
    ``max_padding`` is the largest fraction of a batch's longest sequence a shorter member may
    be padded by (padded batches only). ``head_chunk_elems`` caps the logits held at once
    (rows × vocabulary). ``packing`` (``auto``/``on``/``off``): padding-free rows instead of
    padded batches; ``auto`` falls back to padding for attention packing cannot reproduce.
    """

    def __init__(
        self,
        model: LoadedModel | Any,
        *,
        device: str = "cpu",
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        head_chunk_elems: int = 1 << 23,
        max_padding: float = 0.25,
        packing: str | bool = "auto",
        temperatures: str | bool = "auto",
    ) -> None:
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        loaded = model if isinstance(model, LoadedModel) else None
        raw: Any = model
        if loaded is not None:
            raw = loaded.model
        self._model: Any = raw
        if getattr(self._model, "hf_device_map", None) is None and device != "auto":
            self._model.to(device)
        self._model.eval()
        if not 0.0 <= max_padding <= 1.0:
            raise ValueError(f"max_padding must lie in [0, 1], got {max_padding}")
        self.batch_tokens = batch_tokens
        self.max_padding = max_padding
        self._head_chunk_elems = head_chunk_elems
        self._body: Any = self._model.get_decoder()
        self._head: Any = self._model.get_output_embeddings()
        if self._body is None or self._head is None:
            raise EngineError(f"hf: {type(self._model).__name__} has no decoder/lm_head to split")
        self._transform, transform_name = logit_transform(self._model.config)
        config = self._model.config
        self._attention = self._choose_packing(packing)
        self._temperatures = temperatures_on(temperatures, self._input_device())
        vocab = int(self._head.weight.shape[0])
        self._rows_per_chunk = max(1, head_chunk_elems // vocab)
        model_id = (
            loaded.model_id
            if loaded is not None
            else str(getattr(self._model, "name_or_path", "") or type(self._model).__name__)
        )
        import transformers

        self._info = EngineInfo(
            name="hf",
            model_id=model_id,
            dtype=str(self._model.dtype).removeprefix("torch."),
            device=str(self._input_device()) if device != "auto" else "auto",
            max_context=loaded.max_context if loaded is not None else max_context(config),
            versions={"torch": torch.__version__, "transformers": transformers.__version__},
            extra={
                "logit_transform": transform_name,
                "batch_tokens": batch_tokens,
                "packing": self._attention or "off",
            },
            temperatures=TemperatureSupport(None if self._temperatures else (
                f"off (temperatures={temperatures}; --engine-args temperatures=on)")),
        )
        try:
            self._check_head()
        except Exception as exc:  # any failure of the packed probe
            if self._attention is None or str(packing).lower() != "auto":
                raise
            # auto: an architecture (or transformers version) whose attention does not pack
            # exactly, or calls the kernel differently, falls back to padded batches rather
            # than failing or scoring wrongly
            self._attention = None
            self._info.extra["packing"] = f"off (packed probe failed: {type(exc).__name__})"
            self._check_head()

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def packing(self) -> str | None:
        """The attention implementation packed rows run with, or None for padded batches."""
        return self._attention

    def _choose_packing(self, packing: str | bool) -> str | None:
        mode = {True: "on", False: "off"}.get(packing, packing) if isinstance(packing, bool) else (
            str(packing).lower()
        )
        if mode not in PACKING_CHOICES:
            choices = ", ".join(PACKING_CHOICES)
            raise ValueError(f"packing must be one of {choices}, got {packing!r}")
        if mode == "off":
            return None
        why_not = packing_supported(self._model.config)
        if why_not is not None:
            if mode == "on":
                raise EngineError(f"hf: cannot pack {type(self._model).__name__}: {why_not}")
            return None
        device = self._input_device()
        if device.type == "cuda" and self._model.dtype in (torch.float16, torch.bfloat16):
            from transformers.utils import is_flash_attn_2_available

            if is_flash_attn_2_available():
                return "flash_attention_2"
        try:
            register()
        except (ImportError, AttributeError) as exc:  # a transformers without AttentionInterface
            if mode == "on":
                raise EngineError(f"hf: cannot pack with this transformers: {exc}") from exc
            return None
        return ATTENTION_NAME

    def close(self) -> None:
        # The model may be the caller's (an adapter scored in a lab run): free only the cache.
        free_memory()

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        """Scores for every request, in request order."""
        for req in requests:
            check_request(req, engine="hf", max_context=self._info.max_context)
        results: dict[int, TokenScores] = {}
        todo = [i for i, r in enumerate(requests) if r.target_positions.size]
        for i, r in enumerate(requests):
            if not r.target_positions.size:
                results[i] = empty_scores(r.key)
        # Longest first: a batch's padded length is set by its first member.
        todo.sort(key=lambda i: -int(requests[i].token_ids.size))
        lengths = [int(r.token_ids.size) for r in requests]
        batches = (
            bin_pack(todo, lengths, self.batch_tokens)
            if self._attention
            else padded_batches(todo, lengths, self.batch_tokens, self.max_padding)
        )
        for batch in batches:
            for i, scores in self._run_with_backoff([requests[i] for i in batch], batch):
                results[i] = scores
        return [results[i] for i in range(len(requests))]

    # -----------------------------------------------------------------------------------------

    def _run_with_backoff(
        self, batch: list[ScoringRequest], ids: list[int]
    ) -> list[tuple[int, TokenScores]]:
        try:
            return list(zip(ids, self._forward(batch), strict=True))
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc):
                raise
            free_memory()
            if len(batch) == 1:
                raise EngineError(
                    f"hf: out of memory on one sequence of {batch[0].token_ids.size} tokens "
                    f"(request {batch[0].key!r}); lower WindowConfig.max_tokens or use a "
                    "smaller dtype"
                ) from exc
            half = len(batch) // 2
            # Later batches of the same size would fail too: shrink the budget for the run.
            size = packed_tokens(batch[:half]) if self._attention else padded_tokens(batch[:half])
            self.batch_tokens = max(1, min(self.batch_tokens, size))
            return self._run_with_backoff(batch[:half], ids[:half]) + self._run_with_backoff(
                batch[half:], ids[half:]
            )

    @torch.inference_mode()
    def _forward(self, batch: list[ScoringRequest]) -> list[TokenScores]:
        hidden, rows = self._packed_body(batch) if self._attention else self._padded_body(batch)
        # Target t is predicted by the hidden state at t - 1.
        picked = hidden[rows.to(hidden.device)]
        targets = torch.cat([torch.from_numpy(r.token_ids[r.target_positions]) for r in batch])
        # Candidate ids per row of `picked` (rows are the batch's targets, request by request),
        # flattened so each head chunk gathers all of its candidates at once.
        asked: list[tuple[int, np.ndarray]] = []  # (row, candidate ids), rows ascending
        offset = 0
        for req in batch:
            asked.extend((offset + j, req.candidates[j]) for j in sorted(req.candidates))
            offset += int(req.target_positions.size)
        sizes = [int(ids.size) for _, ids in asked]
        cand_rows = np.repeat(np.asarray([r for r, _ in asked], dtype=np.int64), sizes)
        cand_ids = np.concatenate([ids for _, ids in asked] or [np.zeros(0)]).astype(np.int64)
        # Every temperature any request asked for, each computed once for the whole batch.
        grid = (
            tuple(dict.fromkeys(t for r in batch for t in r.temperatures))
            if self._temperatures
            else ()
        )
        logp, top1, entropy, cand_flat, temp = head_scores(
            self._head, self._transform, self._rows_per_chunk,
            picked, targets, cand_rows, cand_ids, grid
        )
        splits = np.split(cand_flat, np.cumsum(sizes)[:-1]) if asked else []
        cand = dict(zip([r for r, _ in asked], splits, strict=True))
        results: list[TokenScores] = []
        offset = 0
        for req in batch:
            k = int(req.target_positions.size)
            results.append(
                TokenScores(
                    key=req.key,
                    logprobs=logp[offset : offset + k],
                    top1=top1[offset : offset + k],
                    entropy=entropy[offset : offset + k],
                    candidate_logprobs=(
                        {j: cand[offset + j] for j in req.candidates} if req.candidates else None
                    ),
                    temperature_logprobs=(
                        temp[offset : offset + k][:, [grid.index(t) for t in req.temperatures]]
                        if grid and req.temperatures
                        else None
                    ),
                )
            )
            offset += k
        return results

    def _padded_body(self, batch: list[ScoringRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states ``[batch × width, d]`` of a right-padded batch, and each target's row."""
        device = self._input_device()
        width = max(int(r.token_ids.size) for r in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, req in enumerate(batch):
            n = int(req.token_ids.size)
            input_ids[b, :n] = torch.from_numpy(req.token_ids)
            mask[b, :n] = 1
        # Without padding, no mask: attention takes its causal fast path.
        attention_mask = mask.to(device) if bool((mask == 0).any()) else None
        out = self._body(
            input_ids=input_ids.to(device), attention_mask=attention_mask, use_cache=False
        )
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        rows = torch.cat(
            [torch.from_numpy(b * width + r.target_positions - 1) for b, r in enumerate(batch)]
        )
        return hidden.reshape(-1, hidden.shape[-1]), rows

    def _packed_body(self, batch: list[ScoringRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states ``[tokens, d]`` of one padding-free row, and each target's row."""
        assert self._attention is not None
        device = self._input_device()
        sizes = [int(r.token_ids.size) for r in batch]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        input_ids = torch.from_numpy(np.concatenate([r.token_ids for r in batch]))[None]
        position_ids = torch.from_numpy(np.concatenate([np.arange(n) for n in sizes]))[None]
        kwargs: dict[str, Any] = {}
        if self._attention == ATTENTION_NAME:
            kwargs[SEGMENTS_KWARG] = tuple(int(x) for x in starts)
        else:  # flash-attn varlen: the boundaries the kernel expects, sparing a recount per layer
            cu = torch.from_numpy(starts).to(device=device, dtype=torch.int32)
            kwargs.update(
                cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(sizes), max_length_k=max(sizes)
            )
        with attention_implementation(self._configs(), self._attention):
            out = self._body(
                input_ids=input_ids.to(device),
                position_ids=position_ids.to(device),
                attention_mask=None,
                use_cache=False,
                **kwargs,
            )
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        rows = torch.cat(
            [torch.from_numpy(starts[b] + r.target_positions - 1) for b, r in enumerate(batch)]
        )
        return hidden[0], rows

    def _configs(self) -> list[Any]:
        """Every distinct config object the model's attention modules may read."""
        found: list[Any] = []
        for c in (self._model.config, getattr(self._body, "config", None)):
            for x in (c, getattr(c, "text_config", None)):
                if x is not None and all(x is not y for y in found):
                    found.append(x)
        return found

    def _input_device(self) -> torch.device:
        return torch.device(self._model.get_input_embeddings().weight.device)

    @torch.inference_mode()
    def _check_head(self) -> None:
        """Compare the at-target head with the model's own forward on a short probe.

        With packing, two probes share one row, so attention leaking across the boundary (or
        position ids that do not restart) fails here too.
        """
        vocab = int(self._head.weight.shape[0])
        gen = torch.Generator().manual_seed(0)
        probes = [torch.randint(0, vocab, (1, n), generator=gen) for n in (12, 9)]
        if not self._attention:
            probes = probes[:1]
        reqs, expected = [], []
        for k, probe in enumerate(probes):
            reference = self._model(input_ids=probe.to(self._input_device()), use_cache=False)
            ref_logp = torch.log_softmax(reference.logits[0, :-1].float(), dim=-1).cpu()
            positions = np.arange(1, probe.shape[1], dtype=np.int64)
            ids = probe[0].numpy().astype(np.int64)
            reqs.append(ScoringRequest(f"probe{k}", ids, positions))
            expected.append(ref_logp[torch.arange(len(positions)), probe[0, 1:]].double().numpy())
        mine = self._forward(reqs)
        pairs = zip(mine, expected, strict=True)
        gap = max(float(np.max(np.abs(m.logprobs - e))) for m, e in pairs)
        scale = max(1.0, max(float(np.max(np.abs(e))) for e in expected))
        if not gap <= _PROBE_TOL * scale:
            raise EngineError(
                f"hf: {type(self._model).__name__}'s output layer does more than lm_head + "
                f"{self._info.extra['logit_transform']}"
                + (f" or its attention packs differently ({self._attention})" if self._attention
                   else "")
                + f" (probe differs by {gap:.3g} nats); "
                "this architecture needs support in psych201.scoring.hf"
            )


def scorer_from_loaded(loaded: LoadedModel, spec: ScorerSpec) -> BuiltScorer:
    """The HF engine and session scorer around an already loaded model (base or adapter)."""
    engine = HFEngine(loaded, device=spec.device, **dict(spec.options))
    info = {
        "id": loaded.model_id,
        "source": str(loaded.source),
        "file_sha256": loaded.file_sha256,
        "max_context": loaded.max_context,
        **({"revision": loaded.revision} if loaded.revision else {}),
    }
    return token_scorer(spec, engine, loaded.tokenizer, loaded.model_id, info)


def build(spec: ScorerSpec) -> BuiltScorer:
    """Load ``spec.model`` with transformers (``options``: :class:`HFEngine` keywords)."""
    from psych201.scoring.models import load_model

    loaded = load_model(spec.model, dtype=spec.dtype, device=spec.device, **spec.loader_args)
    return scorer_from_loaded(loaded, spec)
