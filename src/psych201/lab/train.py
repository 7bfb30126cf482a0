"""The training loop: LoRA on a frozen base, masked causal-LM loss or DPO, in plain torch.

Why not ``transformers.Trainer``: the loss must be taken only at the response tokens, and the
output layer must only run there (Gemma's 262,144-entry vocabulary would otherwise cost ~1 GB of
logits per 1,024-token sequence and dominate a CPU step). ``logits_to_keep`` with the positions
that predict a target gives exactly that, through the model's own head (soft-capping included).

One optimiser step = ``batch_size`` sequences, each its own forward/backward (no padding, so the
numbers do not depend on how sequences were batched), gradients summed.

* ``instruct`` / ``human``: mean negative log-likelihood over all target tokens of the step.
* ``preference``: DPO (Rafailov et al. 2023) with the frozen base as the reference policy:
  ``-log σ(β · [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])``, where
  ``log π(y)`` sums the log-probabilities of a sequence's target tokens. The reference is the same
  network with the adapter switched off, so no second copy of the base is held in memory; its
  log-probabilities are computed once per pair and cached.

Reproducibility: the adapter's initialisation, the example order and dropout all come from
``settings.seed`` (torch and numpy generators seeded here), so a run is regenerated from its card.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psych201.lab.checkpoint import Checkpoint, fingerprint, load_checkpoint, save_checkpoint
from psych201.lab.examples import PreferencePair, TrainingData, TrainingExample
from psych201.lab.settings import LabError, LoRASettings, TrainSettings

#: Optimiser steps between two training checkpoints.
CHECKPOINT_EVERY = 10

#: The learning rate decays linearly from its peak to this fraction at the last step.
FINAL_LR_FRACTION = 0.1


@dataclass(frozen=True)
class StepLog:
    """One optimiser step: its loss, learning rate, target tokens and wall time."""

    step: int
    loss: float
    learning_rate: float
    n_targets: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained peft model and its training log."""

    model: Any
    steps: tuple[StepLog, ...]
    wall_s: float
    n_sequences: int
    n_trainable: int

    @property
    def losses(self) -> list[float]:
        return [s.loss for s in self.steps]


def lora_model(base: Any, lora: LoRASettings, *, seed: int) -> Any:
    """``base`` wrapped with a freshly initialised LoRA adapter (seeded)."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise LabError(
            f"{type(base).__name__} has no module named {', '.join(missing)} to adapt "
            "(LoRA target_modules)"
        )
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        layers_to_transform=list(lora.layers) if lora.layers else None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    return get_peft_model(base, config)


def target_logprobs(model: Any, example: TrainingExample, device: str = "cpu") -> torch.Tensor:
    """``log P(token_t | tokens before t)`` at each target position (differentiable)."""
    ids = torch.as_tensor(example.token_ids, device=device)[None, :]
    # Causal LM logits at position t predict token t + 1.
    keep = torch.as_tensor(example.target_positions - 1, device=device)
    out = model(input_ids=ids, logits_to_keep=keep, use_cache=False)
    logits = out.logits[0].float()
    targets = ids[0, keep + 1]
    return -torch.nn.functional.cross_entropy(logits, targets, reduction="none")


@torch.no_grad()
def mean_nll(model: Any, examples: Sequence[TrainingExample], device: str = "cpu") -> float:
    """Mean NLL per target token over ``examples`` (nats), without gradients."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for example in examples:
        if example.n_targets:
            total -= float(target_logprobs(model, example, device).sum())
            count += example.n_targets
    model.train(was_training)
    return total / count if count else math.nan


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then linear decay to 10 % at the last step."""
    peak = settings.learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps - 1)
    done = min(1.0, (step - settings.warmup_steps) / span)
    return peak * (1.0 - (1.0 - FINAL_LR_FRACTION) * done)


def _order(n: int, total: int, rng: np.random.Generator) -> list[int]:
    """``total`` indices into ``n`` items: whole seeded permutations, one epoch after another."""
    out: list[int] = []
    while len(out) < total:
        out.extend(int(i) for i in rng.permutation(n))
    return out[:total]


def train(
    model: Any,
    data: TrainingData,
    settings: TrainSettings,
    *,
    progress: Callable[[StepLog], None] | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    note: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the adapter of ``model`` (a peft model) on ``data`` for ``settings.steps`` steps.

    With ``checkpoint_dir`` the state is saved every ``checkpoint_every`` steps and when
    interrupted (:mod:`psych201.lab.checkpoint`), and a checkpoint of this very training found
    there is resumed from: the result is the one an uninterrupted training gives.
    """
    preference = settings.recipe == "preference"
    items: Sequence[TrainingExample | PreferencePair] = data.pairs if preference else data.examples
    if not items:
        raise LabError(
            f"recipe {settings.recipe!r} needs "
            f"{'preference pairs' if preference else 'training examples'}, got none"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise LabError("the model has no trainable parameters (is it a peft model?)")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    order = _order(len(items), settings.steps * settings.batch_size, rng)
    optimiser = torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    reference: dict[int, tuple[float, float]] = {}
    logs: list[StepLog] = []
    key = fingerprint(settings.to_dict(), data.description, len(items))
    start = 0
    if checkpoint_dir is not None:
        resumed = load_checkpoint(checkpoint_dir, key, model, optimiser)
        if resumed is not None:
            start, reference = resumed.step, resumed.reference
            logs = [StepLog(**entry) for entry in resumed.logs]
            if note is not None:
                note(f"resuming training at step {start} of {settings.steps} "
                     f"(checkpoint in {checkpoint_dir})")

    def save(done: int, random_state: torch.Tensor) -> None:
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, key, model, optimiser,
                            Checkpoint(done, [asdict(log) for log in logs], reference),
                            rng=random_state)

    started = time.perf_counter()
    model.train()
    # torch_rng: the random state step ``done`` starts from (dropout draws)
    done, torch_rng, updating = start, torch.get_rng_state(), False
    try:
        for step in range(start, settings.steps):
            t0 = time.perf_counter()
            lr = learning_rate(settings, step)
            for group in optimiser.param_groups:
                group["lr"] = lr
            batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            if preference:
                loss, n_targets, extra = _dpo_step(model, data.pairs, batch, reference,
                                                   settings)
            else:
                loss, n_targets, extra = _sft_step(model, data.examples, batch, settings)
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            updating = True  # an interrupt inside the update leaves the weights half-changed
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            log = StepLog(step + 1, loss, lr, n_targets, time.perf_counter() - t0, extra)
            logs.append(log)
            done, updating = step + 1, False
            torch_rng = torch.get_rng_state()
            if done % checkpoint_every == 0 and done < settings.steps:
                save(done, torch_rng)
            if progress is not None:
                progress(log)
    except KeyboardInterrupt:
        if not updating and done > start:
            # Gradients of the unfinished step are dropped; the step reruns from ``rng``.
            optimiser.zero_grad(set_to_none=True)
            save(done, torch_rng)
        raise
    model.eval()
    return TrainResult(
        model=model,
        steps=tuple(logs),
        wall_s=time.perf_counter() - started,
        n_sequences=len(order) * (2 if preference else 1),
        n_trainable=sum(p.numel() for p in params),
    )


def _sft_step(
    model: Any, examples: Sequence[TrainingExample], batch: Sequence[int],
    settings: TrainSettings,
) -> tuple[float, int, dict[str, float]]:
    n_targets = sum(examples[i].n_targets for i in batch)
    total = 0.0
    for i in batch:
        nll = -target_logprobs(model, examples[i], settings.device).sum()
        (nll / n_targets).backward()
        total += float(nll.detach())
    return total / n_targets, n_targets, {}


def _dpo_step(
    model: Any, pairs: Sequence[PreferencePair], batch: Sequence[int],
    reference: dict[int, tuple[float, float]], settings: TrainSettings,
) -> tuple[float, int, dict[str, float]]:
    beta = settings.dpo_beta
    total, margins, n_targets = 0.0, [], 0
    for i in batch:
        pair = pairs[i]
        if i not in reference:
            with torch.no_grad(), model.disable_adapter():
                reference[i] = (
                    float(target_logprobs(model, pair.chosen, settings.device).sum()),
                    float(target_logprobs(model, pair.rejected, settings.device).sum()),
                )
        ref_w, ref_l = reference[i]
        pol_w = target_logprobs(model, pair.chosen, settings.device).sum()
        pol_l = target_logprobs(model, pair.rejected, settings.device).sum()
        margin = beta * ((pol_w - ref_w) - (pol_l - ref_l))
        loss = -torch.nn.functional.logsigmoid(margin)
        (loss / len(batch)).backward()
        total += float(loss.detach())
        margins.append(float(margin.detach()))
        n_targets += pair.chosen.n_targets + pair.rejected.n_targets
    extra = {
        "reward_margin": float(np.mean(margins)),
        "reward_accuracy": float(np.mean([m > 0 for m in margins])),
    }
    return total / len(batch), n_targets, extra
