"""The output layer of the Hugging Face engine: the architecture's logit transform (e.g.
soft-capping), the scores at the target rows only (log-prob, top-1, entropy, candidates, a
temperature grid; never the whole ``[tokens × vocab]`` logits at once), chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def temperature_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperatures: tuple[float, ...]
) -> torch.Tensor:
    """``[rows, temperatures]`` float64: ``log softmax(logits / T)[target]`` per row and T.

    Shifts ``logits`` in place by each row's maximum (log-softmax and arg-max do not change), so
    every ``exp`` is of a number <= 0, and reuses one scratch buffer for all temperatures:
    memory stays at two ``[rows × vocab]`` float32 buffers, never one per temperature.
    """
    logits.sub_(logits.max(dim=-1, keepdim=True).values)
    sums = logits.new_empty((len(temperatures), logits.shape[0]))
    scratch = torch.empty_like(logits)
    for k, t in enumerate(temperatures):
        torch.div(logits, t, out=scratch)
        torch.sum(scratch.exp_(), dim=-1, out=sums[k])
    del scratch
    # One transfer per chunk; the rest in float64 (MPS has no float64 on the device).
    picked = logits.gather(1, targets[:, None]).cpu().double()
    scale = torch.tensor(temperatures, dtype=torch.float64)
    return picked / scale - sums.T.cpu().double().log()


#: ``temperatures`` choices; ``auto`` is on where the softmax over the vocabulary is cheap.
TEMPERATURE_CHOICES = ("auto", "on", "off")


def temperatures_on(value: str | bool, device: torch.device | None = None) -> bool:
    """The ``temperatures`` setting (a bool or auto/on/off, ``--engine-args``) on ``device``.

    ``auto`` is on for CUDA only: each temperature is one more exp and sum over the whole
    vocabulary per target token, negligible on a GPU but on a CPU measured at about +20 % of the
    scoring time for SmolLM2 (49k vocabulary) and about double for Gemma 3 (262k) on sessions
    scored token by token (docs in the README).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return device is not None and device.type == "cuda"
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"temperatures must be one of {', '.join(TEMPERATURE_CHOICES)}, "
                     f"got {value!r}")


def logit_transform(config: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The post-lm_head transform the architecture's forward applies (from its config)."""
    cfg = getattr(config, "text_config", None) or config
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        c = float(cap)
        return (lambda x: torch.tanh(x / c) * c), f"softcap({c:g})"
    scale = getattr(cfg, "logit_scale", None)
    if isinstance(scale, int | float) and not isinstance(scale, bool) and scale != 1:
        s = float(scale)
        return (lambda x: x * s), f"scale({s:g})"
    div = getattr(cfg, "logits_scaling", None)
    if isinstance(div, int | float) and not isinstance(div, bool) and div != 1:
        d = float(div)
        return (lambda x: x / d), f"divide({d:g})"
    return (lambda x: x), "none"


def head_scores(
    head: Any,  # the model's output embeddings (lm_head)
    transform: Callable[[torch.Tensor], torch.Tensor],
    rows_per_chunk: int,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    cand_rows: np.ndarray | None = None,
    cand_ids: np.ndarray | None = None,
    temperatures: tuple[float, ...] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log-prob of each target, arg-max id and entropy from the hidden rows, chunk by chunk.

    ``cand_rows[i]`` (ascending) and ``cand_ids[i]`` ask for one more log-prob: token
    ``cand_ids[i]`` at row ``cand_rows[i]``; they come back in that order. The last array
    is ``[rows, len(temperatures)]``: each target's log-prob under ``softmax(logits / T)``.
    """
    head_device = head.weight.device
    logps, tops, ents, cands, temps = [], [], [], [], []
    rows = np.zeros(0, dtype=np.int64) if cand_rows is None else cand_rows
    ids = np.zeros(0, dtype=np.int64) if cand_ids is None else cand_ids
    for lo in range(0, hidden.shape[0], rows_per_chunk):
        h = hidden[lo : lo + rows_per_chunk].to(head_device)
        # float32 softmax whatever the model dtype: bf16 log-probs lose ~2 significant digits.
        logits = transform(head(h).float())
        tops.append(logits.argmax(dim=-1).cpu())
        tgt = targets[lo : lo + rows_per_chunk].to(head_device)
        if temperatures:
            temps.append(temperature_logprobs(logits, tgt, temperatures))
        logp = torch.log_softmax(logits, dim=-1)
        del logits  # at most two [rows × vocab] buffers alive at once
        logps.append(logp.gather(1, tgt[:, None])[:, 0].double().cpu())
        if temperatures and 1.0 in temperatures:
            # T = 1 is the plain log-prob: the very same number, not a re-rounded one.
            temps[-1][:, temperatures.index(1.0)] = logps[-1]
        a, b = np.searchsorted(rows, [lo, lo + rows_per_chunk])
        if b > a:
            picked_rows = torch.from_numpy(rows[a:b] - lo).to(head_device)
            picked_ids = torch.from_numpy(ids[a:b]).to(head_device)
            cands.append(logp[picked_rows, picked_ids].double().cpu())
        # p·log p with 0·(-inf) = 0 (masked vocabulary entries), in place.
        plogp = logp.exp().mul_(logp).nan_to_num_(0.0)
        ents.append((-plogp.sum(dim=-1)).double().cpu())
        del logp, plogp
    return (
        torch.cat(logps).numpy(),
        torch.cat(tops).numpy().astype(np.int64),
        torch.cat(ents).numpy(),
        torch.cat(cands).numpy() if cands else np.zeros(0, dtype=np.float64),
        (
            torch.cat(temps).numpy()
            if temps
            else np.zeros((hidden.shape[0], 0), dtype=np.float64)
        ),
    )
