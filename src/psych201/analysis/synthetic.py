"""Synthetic response tables with known structure, for tests and the documentation figures.

No model is run: every NLL is drawn from an explicit additive model, so each analysis has a known
right answer. For model ``m``, study ``s``, participant ``p`` and response ``r``::

    nll = μ_s + q_m + u_sp + e_spr + δ_m · g_s + η_mspr      (clipped at 0, which is rare)

* ``μ_s`` study difficulty; ``q_m`` model quality: ``size_slope · log10(params)`` plus a
  per-family offset (newer generations slightly better);
* ``u_sp`` participant and ``e_spr`` response difficulty, **shared by all models** — the pairing
  that paired statistics exploit;
* ``δ_m`` the post-training penalty of the model's type, in units of the response-level SD, and
  ``g_s`` a per-domain multiplier (largest for psycholinguistics, as in the paper);
* ``η`` model-specific response noise.

Every model has the same response-level SD (``response_sd``), so the true per-study paper d of a
pair is ``δ · g_s`` and the true pair d is its mean over studies (:func:`true_pair_d`).
Conditions: ``raw`` as above; ``discrete`` (single-letter responses of the discrete-choice studies
with top-1 hits, more often for better models); ``chat-template`` (post-trained models much worse,
as in the paper); ``persona`` / ``persona-shuffled`` (participants with metadata only; no real
benefit, as the paper found). Discrete-choice responses carry ``n_options``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from psych201.analysis.domains import load_categories
from psych201.analysis.registry import ModelInfo, ModelRegistry
from psych201.prompts.conditions import registered_role
from psych201.prompts.records import ConditionRole
from psych201.results.schema import RESPONSE_SCHEMA

#: The 19 studies of the curated real subset (../shared/data/psych201), discrete-choice flag and
#: number of options (None for free text / numbers).
STUDIES: dict[str, int | None] = {
    "alsobay2025publicGoodsGame": None,
    "busch2024_stroop": 3,
    "dezfouli2019": 2,
    "franke2024bayesian": 3,
    "frey2017lotteries": 2,
    "guenther2020LDT": 2,
    "guenther2022relational": None,
    "guenther2023associations_individual": None,
    "guenther2024substitutions": None,
    "haridi2024memorySemanticContext": None,
    "jansen2021logic": 4,
    "little2024functionestimation": None,
    "nussenbaum2023novelty": 4,
    "olschewski2024skewness": 2,
    "sandbrink2024metacontrol": 3,
    "schiekiera2025metascience": None,
    "spektor2024lossaversion": 2,
    "thoma2025problearn": 2,
    "xu2023augmenting": 2,
}

#: Families whose models make up the default synthetic set (those the paper's figures show).
DEFAULT_FAMILIES = ("Qwen2", "Qwen2.5", "Qwen3", "Qwen3.5", "Llama 3", "OLMo 3", "Gemma 3",
                    "SmolLM2")


@dataclass(frozen=True)
class SyntheticDesign:
    """Parameters of the generating model (see the module docstring)."""

    studies: Mapping[str, int | None] = field(default_factory=lambda: dict(STUDIES))
    n_participants: int = 6
    n_responses: int = 20
    response_sd: float = 0.6
    participant_share: float = 0.12  # share of response variance from participants
    shared_share: float = 0.6  # share of response variance shared by all models (item difficulty)
    size_slope: float = -0.15  # NLL per tenfold parameters
    penalty_d: Mapping[str, float] = field(default_factory=lambda: {
        "base": 0.0, "instruct": 0.10, "reasoning": 0.15, "vision": 0.12, "code": 0.06,
        "math": 0.20, "human": -0.10})
    domain_gain: Mapping[str, float] = field(default_factory=lambda: {
        "Psycholinguistics": 1.8, "Reasoning": 1.3, "Memory": 1.0, "Risky Choice": 0.9,
        "Reinforcement Learning": 0.9, "Categorization": 0.8, "Economic Games": 0.6})
    family_offset: Mapping[str, float] = field(default_factory=lambda: {
        "Qwen2": 0.10, "Qwen2.5": 0.06, "Qwen3": 0.0, "Qwen3.5": -0.03, "Llama 3": 0.02,
        "OLMo 3": 0.25, "Gemma 3": 0.3, "SmolLM2": 0.35})
    template_penalty: float = 12.0  # nats added to post-trained models under a chat template
    persona_share: float = 0.7  # participants with metadata (get persona rows)
    persona_effect: float = 0.0  # true persona benefit in nats (the paper: none)
    seed: int = 0


def study_gain(design: SyntheticDesign, study: str, categories: pd.DataFrame) -> float:
    """``g_s``: mean domain multiplier of the study's categories (1 where none is listed)."""
    if study not in categories.index:
        return 1.0
    row = categories.loc[study]
    gains = [design.domain_gain[c] for c in categories.columns if row[c] and
             c in design.domain_gain]
    return float(np.mean(gains)) if gains else 1.0


def true_pair_d(design: SyntheticDesign, post_training: str) -> float:
    """True pair d (mean over the design's studies of δ·g_s) for a post-training type."""
    categories = load_categories()
    gains = [study_gain(design, s, categories) for s in design.studies]
    return float(design.penalty_d[post_training] * np.mean(gains))


def _rng(seed: int, *names: str) -> np.random.Generator:
    words = [zlib.crc32(n.encode()) for n in names]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def _texts(k: int | None, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The humans' answers (the same for every model): letters among k options, or words."""
    if k is not None:
        letters = np.array([chr(ord("A") + i) for i in range(k)], dtype=object)
        return letters[rng.integers(0, k, shape)]
    words = np.array([f"word{i}" for i in range(50)], dtype=object)
    return words[rng.integers(0, 50, shape)]


def default_models(registry: ModelRegistry,
                   families: Sequence[str] = DEFAULT_FAMILIES) -> list[ModelInfo]:
    """Registry models of ``families`` with a known size (the paper's figure set + local)."""
    return [m for m in registry if m.family in families and m.params_b is not None]


def synthetic_responses(models: Sequence[ModelInfo], *, design: SyntheticDesign | None = None,
                        conditions: Sequence[str] = ("raw",)) -> pd.DataFrame:
    """A response table (``RESPONSE_SCHEMA`` columns + ``n_options``) for ``models``."""
    design = design or SyntheticDesign()
    categories = load_categories()
    sd = design.response_sd
    sd_participant = sd * math.sqrt(design.participant_share)
    sd_shared = sd * math.sqrt(design.shared_share)
    sd_own = sd * math.sqrt(max(0.0, 1 - design.participant_share - design.shared_share))
    studies = list(design.studies)
    # shared structure: studies, participants, responses
    shared: list[dict[str, np.ndarray | float | int]] = []
    for s in studies:
        rng = _rng(design.seed, "study", s)
        n_p = max(2, round(design.n_participants * rng.uniform(0.6, 1.4)))
        shared.append(
            {
                "mu": float(rng.uniform(2.0, 3.2)),
                "gain": study_gain(design, s, categories),
                "u": rng.normal(0, sd_participant, n_p),
                "e": rng.normal(0, sd_shared, (n_p, design.n_responses)),
                "persona": rng.random(n_p) < design.persona_share,
                "pid": np.array([str(p) for p in range(n_p)], dtype=object),
                "text": _texts(design.studies[s], (n_p, design.n_responses), rng),
            }
        )
    columns: dict[str, list[np.ndarray]] = {name: [] for name in _COLUMNS}
    for model in models:
        params = model.params_b or 1.0
        quality = design.size_slope * math.log10(params) + design.family_offset.get(
            model.family, 0.0)
        delta = design.penalty_d.get(model.post_training, 0.0) * sd
        for condition in conditions:
            role = registered_role(condition)
            if role is ConditionRole.CHAT_TEMPLATE and model.is_base:
                continue
            for s, info in zip(studies, shared, strict=True):
                k = design.studies[s]
                if role is ConditionRole.DISCRETE and k is None:
                    continue
                rng = _rng(design.seed, model.id, condition, s)
                u = np.asarray(info["u"])
                e = np.asarray(info["e"])
                n_p, n_r = e.shape
                own = rng.normal(0, sd_own, (n_p, n_r))
                nll = float(info["mu"]) + quality + u[:, None] + e + delta * float(
                    info["gain"]) + own
                keep = np.ones(n_p, dtype=bool)
                if role in (ConditionRole.PERSONA, ConditionRole.PERSONA_SHUFFLED):
                    keep = np.asarray(info["persona"])
                    benefit = 0.0 if role is ConditionRole.PERSONA_SHUFFLED else (
                        design.persona_effect)
                    nll = nll - benefit
                if role is ConditionRole.CHAT_TEMPLATE:
                    nll = nll + design.template_penalty * np.exp(rng.normal(0, 0.3, nll.shape))
                nll = np.maximum(nll[keep], 0.0).ravel()
                n = nll.size
                pid = np.repeat(np.flatnonzero(keep), n_r)
                index = np.tile(np.arange(n_r, dtype=np.int64), int(keep.sum()))
                columns["model"].append(np.full(n, model.id, dtype=object))
                columns["condition"].append(np.full(n, condition, dtype=object))
                columns["study"].append(np.full(n, s, dtype=object))
                columns["experiment"].append(np.full(n, f"{s}/", dtype=object))
                columns["participant"].append(np.asarray(info["pid"])[pid])
                columns["line"].append(pid.astype(np.int64) + 1)
                columns["response_index"].append(index)
                columns["response_text"].append(np.asarray(info["text"])[keep].ravel())
                columns["nll"].append(nll)
                if k is not None:
                    # better (lower-NLL) predictions hit the human's letter more often
                    hit_p = 1 / (1 + np.exp(2.0 * (nll - 2.2)))
                    columns["top1_correct"].append((rng.random(n) < hit_p).astype(float))
                    # among k offered options, a miss of the arg-max can still be the best option
                    offered_p = hit_p + (1 - hit_p) / k
                    columns["offered_correct"].append((rng.random(n) < offered_p).astype(float))
                    columns["n_tokens"].append(np.ones(n, dtype=np.int64))
                else:
                    columns["top1_correct"].append(np.full(n, np.nan))
                    columns["offered_correct"].append(np.full(n, np.nan))
                    columns["n_tokens"].append(np.full(n, 2, dtype=np.int64))
                columns["n_options"].append(np.full(n, float(k) if k else math.nan))
    if not columns["nll"]:
        raise ValueError("no rows: no models or conditions given")
    data = {name: np.concatenate(parts) for name, parts in columns.items()}
    hits = data.pop("top1_correct")
    offered_hits = data.pop("offered_correct")
    frame = pd.DataFrame(data)
    frame["top1_correct"] = pd.array(
        np.where(np.isnan(hits), None, hits == 1.0), dtype="boolean")
    frame["offered_correct"] = pd.array(
        np.where(np.isnan(offered_hits), None, offered_hits == 1.0), dtype="boolean")
    frame["n_offered"] = pd.array(
        np.where(np.isnan(frame["n_options"]), None, frame["n_options"]), dtype="Int64")
    frame["entropy"] = 0.8 * frame["nll"] + 0.2
    frame["context_tokens"] = (frame["response_index"] + 1) * 40
    frame["truncated"] = False
    for name in ("nll_temperature", "offered_options", "offered_logprobs"):
        frame[name] = None  # list columns a synthetic table does not model
    order = [*RESPONSE_SCHEMA.names, "n_options"]
    return frame[order]


_COLUMNS = ("model", "condition", "study", "experiment", "participant", "line", "response_index",
            "response_text", "nll", "top1_correct", "offered_correct", "n_tokens", "n_options")


def demo_table(registry: ModelRegistry, *, seed: int = 0) -> pd.DataFrame:
    """The synthetic table behind ``docs/figures``: the paper's figure models, all conditions.

    Persona rows are generated for the Qwen3, OLMo and Llama base/instruct models of Fig. 5 only,
    the chat-template condition for post-trained models, ``discrete`` for everyone.
    """
    design = SyntheticDesign(seed=seed)
    models = default_models(registry)
    main = synthetic_responses(models, design=design, conditions=("raw", "discrete",
                                                                  "chat-template"))
    persona_models = [m for m in models if m.family in ("Qwen3", "OLMo 3", "Llama 3")
                      and m.line == "main"]
    persona = synthetic_responses(persona_models, design=design,
                                  conditions=("persona", "persona-shuffled"))
    return pd.concat([main, persona], ignore_index=True)
