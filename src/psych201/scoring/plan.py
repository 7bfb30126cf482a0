"""What scoring costs: forward FLOPs of a model on given sequences, and a device's matmul peak.

FLOPs count multiply-adds as two. A forward over a sequence of ``n`` tokens costs
``2 · (decoder weights) · n`` in its linear layers, plus attention scores and their weighting,
``4 · heads · head_dim`` per (query, key) pair a layer actually attends to: ``n(n+1)/2`` pairs
for a causal layer, at most ``window`` keys per query for a sliding-window layer (what the model
defines, not what a dense kernel happens to compute). The output layer runs only at targets:
``2 · hidden · vocab`` per target.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    """The parts of a decoder's shape that set its forward cost."""

    layers: int
    heads: int
    head_dim: int
    hidden: int
    vocab: int
    body_params: int  # weights of the decoder layers' linear maps (no embeddings, no head)
    windows: tuple[int | None, ...]  # per layer: sliding window, None for full attention


def shape_of(config: Any, body_params: int | None = None) -> Shape:
    """A :class:`Shape` from a transformers config (``body_params`` estimated if not given)."""
    cfg = getattr(config, "text_config", None) or config
    layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    hidden = int(cfg.hidden_size)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
    if body_params is None:
        attn = hidden * head_dim * (2 * heads + 2 * kv_heads)
        mlp = 3 * hidden * inter  # gated MLP (gate, up, down)
        body_params = layers * (attn + mlp)
    types = getattr(cfg, "layer_types", None) or ["full_attention"] * layers
    window = getattr(cfg, "sliding_window", None)
    windows = tuple(
        int(window) if t == "sliding_attention" and window else None for t in types[:layers]
    )
    return Shape(layers, heads, head_dim, hidden, int(cfg.vocab_size), int(body_params), windows)


def body_params_of(model: Any) -> int:
    """Weights of the linear maps inside the decoder layers of a loaded transformers model."""
    import torch

    body = model.get_decoder()
    return sum(
        int(m.weight.numel())
        for m in body.modules()
        if isinstance(m, torch.nn.Linear)
    )


def attended_pairs(n: int, window: int | None) -> int:
    """(query, key) pairs a causal layer attends over ``n`` tokens, within ``window`` if set."""
    if window is None or n <= window:
        return n * (n + 1) // 2
    return window * (window + 1) // 2 + (n - window) * window


def forward_flops(shape: Shape, lengths: Iterable[int], targets: int = 0) -> float:
    """FLOPs of forwarding sequences of ``lengths`` tokens and the head at ``targets`` rows."""
    total = 0.0
    for n in lengths:
        total += 2.0 * shape.body_params * n
        for w in shape.windows:
            total += 4.0 * shape.heads * shape.head_dim * attended_pairs(n, w)
    return total + 2.0 * shape.hidden * shape.vocab * targets


def matmul_peak(device: str = "cpu", dtype: str = "float32", seconds: float = 3.0) -> float:
    """Measured FLOP/s of a large square matmul on ``device`` (the roof MFU is stated against)."""
    import torch

    n = 2048 if device == "cpu" else 8192
    dt = getattr(torch, dtype)
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 4 * 2.0 * n**3 / (time.perf_counter() - t))
    return best
