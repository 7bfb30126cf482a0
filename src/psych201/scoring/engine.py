"""The engine contract: token ids in, per-target-token scores out. Nothing else crosses it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TemperatureSupport:
    """Whether an engine fills :attr:`TokenScores.temperature_logprobs` (the ``nll_temperature``
    column: the full softmax at each grid temperature) and, where it does not, why not."""

    missing_because: str | None = None  # None: it does

    @property
    def available(self) -> bool:
        return self.missing_because is None

    @property
    def wording(self) -> str:
        """As run manifests record it (``engine.extra.temperature_logprobs``)."""
        return "full softmax" if self.missing_because is None else f"null: {self.missing_because}"


#: Engines that compute every logit.
FULL_SOFTMAX = TemperatureSupport()
#: Engines that see only the top-k log-probs.
TOPK_ONLY_TEMPERATURES = TemperatureSupport(
    "top-k log-probs only; a softmax temperature needs every logit")
#: What an engine that says nothing about temperatures is taken to mean.
NOT_REPORTED = TemperatureSupport("the engine does not report them")


#: Softmax temperatures of the ``nll_temperature`` column: log-spaced 1/8 … 8 (2^(k/8), k = −24 …
#: 24), neighbours 9.1 % apart; index 24 is exactly 1.0, the plain NLL. Eight-fold either way, so
#: an oracle tempered by 0.2 … 5 is fitted inside it (a fit at an end is flagged "≥ 8");
#: tables scored on the earlier 0.25 … 4 grid (31 values) are named, not calibrated.
TEMPERATURE_GRID: tuple[float, ...] = tuple(float(2.0 ** (k / 8)) for k in range(-24, 25))


@dataclass(frozen=True, eq=False)
class ScoringRequest:
    """One sequence to run through the model.

    ``target_positions[j] = t`` asks for ``log P(token_ids[t] | token_ids[:t])``; t >= 1.
    ``key`` is opaque to the engine and comes back on the matching :class:`TokenScores`.
    ``candidates`` optionally asks, for target index ``j``, the log-probs of other token ids at
    the same position (the options a participant was offered, for restricted accuracy).
    ``temperatures`` optionally asks, for every target, ``log softmax(logits / T)[target]`` at
    each softmax temperature ``T`` (the calibration control); engines that see only the top-k
    log-probs cannot and leave :attr:`TokenScores.temperature_logprobs` ``None``.
    """

    key: str
    token_ids: npt.NDArray[np.int64]
    target_positions: npt.NDArray[np.int64]
    candidates: Mapping[int, npt.NDArray[np.int64]] = field(default_factory=dict)
    temperatures: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class TokenScores:
    """Scores at the target positions of one request, in the order they were asked for.

    ``candidate_logprobs[j]`` holds the log-probs of ``request.candidates[j]`` in the same order;
    ``None`` where the engine cannot see the whole distribution (top-k APIs) or none were asked.
    ``temperature_logprobs[j, k]`` is the log-prob of target ``j`` with the logits divided by
    ``request.temperatures[k]`` (shape ``[targets, temperatures]``); ``None`` where the engine
    cannot (or was asked none). Engines say why in ``EngineInfo.temperatures``.
    """

    key: str
    logprobs: npt.NDArray[np.float64]
    top1: npt.NDArray[np.int64]
    entropy: npt.NDArray[np.float64]
    candidate_logprobs: Mapping[int, npt.NDArray[np.float64]] | None = None
    temperature_logprobs: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True)
class EngineInfo:
    """What the run manifest records about an engine."""

    name: str
    model_id: str
    dtype: str
    device: str
    max_context: int | None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    temperatures: TemperatureSupport | None = None  # None: the engine does not say

    def record(self) -> dict[str, Any]:
        """The run manifest's ``engine`` record: every field, the temperature support written
        into ``extra`` as ``temperature_logprobs`` (the manifests' wording since version 1)."""
        record = asdict(self)
        del record["temperatures"]
        if self.temperatures is not None:
            record["extra"]["temperature_logprobs"] = self.temperatures.wording
        return record


@runtime_checkable
class Engine(Protocol):
    """Scores token sequences. Engines know nothing about studies, spans or responses."""

    @property
    def info(self) -> EngineInfo: ...

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]: ...

    def close(self) -> None:
        """Free what the engine holds (weights, a server session); the pipeline calls it once
        when a run ends, however it ends."""
