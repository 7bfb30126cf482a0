"""Score GGUF models with llama.cpp (``llama-cpp-python``), quantised as stored.

transformers de-quantises a GGUF to float32 before running it; llama.cpp computes with the
quantised weights themselves, which is what people who run GGUF models actually get (and needs a
fraction of the memory). Expect small per-token differences from the HF engine (a documented
tolerance, not 1e-4: see tests/test_engines_parity.py).

How the log-probs are read. llama-cpp-python's ``echo=True`` + ``logprobs`` completion path reports
every prompt log-prob one position off, so it is never used. ``Llama(logits_all=True)`` +
``eval(tokens)`` + ``scores`` is correct but keeps an ``n_ctx × vocab`` float32 buffer (a 32k
context with Gemma's 262,144-entry vocabulary: 34 GB). This engine drives the same ``llama_decode``
itself, in chunks of ``n_batch`` tokens, and asks llama.cpp for output rows only at the positions
that predict a target (``batch.logits[i] = 1`` there, 0 elsewhere), so at most ``n_batch × vocab``
logits exist at any time and the output layer runs only where it is needed. Each chunk's rows are
reduced to log-prob, top-1 and entropy right away. ``mode="scores"`` keeps the plain
``eval`` + ``scores`` path as a cross-check (tests compare the two).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from psych201.scoring.engine import EngineInfo, ScoringRequest, TemperatureSupport, TokenScores
from psych201.scoring.engine_util import (
    EngineError,
    check_request,
    empty_scores,
    scores_from_logits,
)
from psych201.scoring.engines import BuiltScorer, ScorerSpec, token_scorer

Mode = Literal["targets", "scores"]


class LlamaCppEngine:
    """:class:`~psych201.scoring.engine.Engine` on a GGUF file through llama-cpp-python.

    ``n_ctx``: the longest request (None: the model's trained context). ``n_batch``: tokens per
    ``llama_decode`` call and the most logit rows held at once (lower it for huge vocabularies).
    ``n_threads``: CPU threads (None: all cores). ``n_gpu_layers``: layers offloaded to a GPU
    where llama.cpp was built with one (0: CPU only).
    """

    def __init__(
        self,
        gguf_path: str | Path,
        *,
        model_id: str | None = None,
        n_ctx: int | None = None,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        mode: Mode = "targets",
        seed: int = 0,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as err:  # pragma: no cover - exercised where it is absent
            raise EngineError(
                "the llamacpp engine needs llama-cpp-python: pip install llama-cpp-python "
                "(it compiles llama.cpp, about 5 minutes on 2 cores)"
            ) from err
        path = Path(gguf_path)
        if not path.is_file():
            raise EngineError(f"llamacpp: no GGUF file at {path}")
        if mode not in ("targets", "scores"):
            raise ValueError(f"llamacpp: mode must be 'targets' or 'scores', got {mode!r}")
        self._lib: Any = llama_cpp
        self._path = path
        self._mode: Mode = mode
        threads = n_threads or os.cpu_count() or 1
        self._llm: Any = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx or 0,  # 0: the model's trained context
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=n_gpu_layers,
            logits_all=mode == "scores",
            seed=seed,
            verbose=False,
        )
        self._n_ctx = int(self._llm.n_ctx())
        self._n_batch = int(self._llm.n_batch)
        self._n_vocab = int(self._llm.n_vocab())
        self._info = EngineInfo(
            name="llamacpp",
            model_id=model_id or path.stem,
            dtype=_gguf_type(self._llm),
            device="gpu" if n_gpu_layers else "cpu",
            max_context=self._n_ctx,
            versions={"llama_cpp_python": str(llama_cpp.__version__)},
            extra={"gguf": str(path), "n_batch": self._n_batch, "mode": mode,
                   "n_gpu_layers": n_gpu_layers},
            # Its logits are whole; only the wiring (and a test with llama.cpp) is missing.
            temperatures=TemperatureSupport("not implemented for llama.cpp yet"),
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        for request in requests:
            check_request(request, engine="llamacpp", max_context=self._n_ctx)
        out: list[TokenScores] = []
        for request in requests:
            if not request.target_positions.size:
                out.append(empty_scores(request.key))
            elif self._mode == "scores":
                out.append(self._score_eval(request))
            else:
                out.append(self._score_targets(request))
        return out

    def close(self) -> None:
        self._llm.close()

    # ------------------------------------------------------------------------------------------
    def _score_targets(self, request: ScoringRequest) -> TokenScores:
        """Decode in ``n_batch`` chunks with output rows only before each target."""
        lib = self._lib
        ids = request.token_ids
        targets = request.target_positions
        unique, inverse = np.unique(targets, return_inverse=True)
        # Only tokens up to the last target's predecessor change any target's distribution.
        n = int(unique[-1])
        wanted = np.zeros(n, dtype=bool)
        wanted[unique - 1] = True
        self._clear_memory()
        batch = lib.llama_batch_init(self._n_batch, 0, 1)
        rows: dict[int, TokenScores] = {}
        # Candidate ids by target position, and their log-probs once decoded.
        want_at = {int(targets[j]): c for j, c in request.candidates.items()}
        cand_at: dict[int, np.ndarray] = {}
        try:
            for start in range(0, n, self._n_batch):
                stop = min(n, start + self._n_batch)
                batch.n_tokens = stop - start
                for i, pos in enumerate(range(start, stop)):
                    batch.token[i] = int(ids[pos])
                    batch.pos[i] = pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = bool(wanted[pos])
                code = lib.llama_decode(self._llm.ctx, batch)
                if code != 0:
                    raise EngineError(
                        f"llamacpp: request {request.key!r}: llama_decode returned {code} at "
                        f"tokens {start}-{stop}"
                    )
                picked = np.flatnonzero(wanted[start:stop])
                if picked.size:
                    logits = np.empty((picked.size, self._n_vocab), dtype=np.float32)
                    for r, batch_index in enumerate(picked.tolist()):
                        ptr = lib.llama_get_logits_ith(self._llm.ctx, batch_index)
                        logits[r] = np.ctypeslib.as_array(
                            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                            shape=(self._n_vocab,),
                        )
                    positions = start + picked  # output row at p predicts token p + 1
                    asked = {
                        r: want_at[int(p) + 1]
                        for r, p in enumerate(positions.tolist())
                        if int(p) + 1 in want_at
                    }
                    rows[start] = scores_from_logits(
                        request.key, logits, ids[positions + 1], asked
                    )
                    for r, logps in (rows[start].candidate_logprobs or {}).items():
                        cand_at[int(positions[r]) + 1] = logps
        finally:
            lib.llama_batch_free(batch)
            self._clear_memory()
        merged = _concat(request.key, [rows[k] for k in sorted(rows)])
        # From ascending unique positions back to the targets in the order they were asked.
        return TokenScores(
            request.key,
            merged.logprobs[inverse],
            merged.top1[inverse],
            merged.entropy[inverse],
            candidate_logprobs=(
                {j: cand_at[int(targets[j])] for j in request.candidates}
                if request.candidates
                else None
            ),
        )

    def _score_eval(self, request: ScoringRequest) -> TokenScores:
        """The plain path: ``eval`` the tokens, read the ``scores`` rows (needs logits_all)."""
        n = int(request.target_positions.max())
        self._llm.reset()
        self._llm.eval(request.token_ids[:n].tolist())
        logits = np.asarray(self._llm.scores[: self._llm.n_tokens])[request.target_positions - 1]
        return scores_from_logits(
            request.key,
            logits,
            request.token_ids[request.target_positions],
            dict(request.candidates),
        )

    def _clear_memory(self) -> None:
        self._llm.reset()
        memory = self._lib.llama_get_memory(self._llm.ctx)
        if memory is not None:
            self._lib.llama_memory_clear(memory, True)


def _concat(key: str, parts: list[TokenScores]) -> TokenScores:
    if not parts:
        return empty_scores(key)
    return TokenScores(
        key,
        np.concatenate([p.logprobs for p in parts]),
        np.concatenate([p.top1 for p in parts]),
        np.concatenate([p.entropy for p in parts]),
    )


def _gguf_type(llm: Any) -> str:
    """The GGUF's weight type as llama.cpp names it (e.g. ``Q4_1``), for the manifest."""
    meta = getattr(llm, "metadata", None) or {}
    file_type = meta.get("general.file_type")
    names = {"0": "F32", "1": "F16", "2": "Q4_0", "3": "Q4_1", "7": "Q8_0", "8": "Q5_0",
             "9": "Q5_1", "10": "Q2_K", "11": "Q3_K_S", "12": "Q3_K_M", "13": "Q3_K_L",
             "14": "Q4_K_S", "15": "Q4_K_M", "16": "Q5_K_S", "17": "Q5_K_M", "18": "Q6_K",
             "32": "BF16"}
    return f"gguf:{names.get(str(file_type), str(file_type))}"


def gguf_file(name_or_path: str, cache_dir: Path | None = None) -> Path:
    """The GGUF file of a built-in model (assembled once under the cache) or a ``.gguf`` path."""
    from psych201.scoring.catalogue import BUILTIN_MODELS
    from psych201.scoring.model_files import cache_root

    if name_or_path in BUILTIN_MODELS:
        source = BUILTIN_MODELS[name_or_path]()
        target = cache_root(cache_dir) / "gguf" / f"{source.name}-{source.sha256()[:16]}"
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
            f"({', '.join(sorted(BUILTIN_MODELS))})"
        )
    return path


def build(spec: ScorerSpec) -> BuiltScorer:
    """llama.cpp on the GGUF file, quantised as stored (``options``: engine keywords)."""
    from psych201.scoring.catalogue import BUILTIN_MODELS
    from psych201.scoring.engines import model_identity
    from psych201.scoring.models import load_tokenizer

    cache = spec.loader_args.get("cache_dir")
    gguf = gguf_file(spec.model, cache)
    tokenizer = load_tokenizer(spec.model, cache_dir=cache)
    model_id = spec.model if spec.model in BUILTIN_MODELS else gguf.stem
    engine = LlamaCppEngine(gguf, model_id=model_id, **dict(spec.options))
    info = model_identity(spec, engine.info.max_context)
    return token_scorer(spec, engine, tokenizer, model_id, info)
