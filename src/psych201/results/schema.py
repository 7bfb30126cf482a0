"""The response table: one row per scored human response, and the run spec that names a run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

#: Column order and types of every response table psych201 writes (Parquet).
RESPONSE_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string()),
        pa.field("condition", pa.string()),
        pa.field("study", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("participant", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("response_index", pa.int64()),
        pa.field("response_text", pa.string()),
        pa.field("n_tokens", pa.int64()),
        pa.field("nll", pa.float64()),
        pa.field("top1_correct", pa.bool_()),  # null unless the response is one token
        pa.field("entropy", pa.float64()),  # mean predictive entropy over the span's tokens
        pa.field("context_tokens", pa.int64()),  # tokens the first span token was conditioned on
        pa.field("truncated", pa.bool_()),  # preceding context was cut (window or truncation)
        # Among the options the transcript offered: null unless known and one token each.
        pa.field("offered_correct", pa.bool_()),
        pa.field("n_offered", pa.int64()),  # null where the transcript does not state them
        # NLL of the response with the logits divided by each temperature of
        # scoring.engine.TEMPERATURE_GRID
        # (calibration control); null where the engine cannot see the whole distribution.
        pa.field("nll_temperature", pa.list_(pa.float64())),
        # The options the transcript offered (as written) and the model's log-probability of
        # each at the response position (full-vocabulary softmax, same order); null unless the
        # response and every option are one token each and the engine reports candidates.
        pa.field("offered_options", pa.list_(pa.string())),
        pa.field("offered_logprobs", pa.list_(pa.float64())),
    ]
)

#: Columns added after the first release: tables written before them are read with nulls.
ADDED_COLUMNS = ("offered_correct", "n_offered", "nll_temperature", "offered_options",
                 "offered_logprobs")


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly :data:`RESPONSE_SCHEMA` (added columns filled with nulls).

    Raises ``KeyError`` naming a missing original column, and Arrow errors on type clashes.
    """
    for name in ADDED_COLUMNS:
        if name not in table.column_names:
            spec = RESPONSE_SCHEMA.field(name)
            table = table.append_column(spec, pa.nulls(table.num_rows, spec.type))
    missing = [n for n in RESPONSE_SCHEMA.names if n not in table.column_names]
    if missing:
        raise KeyError(", ".join(missing))
    return table.select(RESPONSE_SCHEMA.names).cast(RESPONSE_SCHEMA)

#: Columns that identify one response across models and conditions.
RESPONSE_KEY = ["study", "experiment", "participant", "line", "response_index"]


@dataclass(frozen=True)
class ResponseScore:
    """One row of :data:`RESPONSE_SCHEMA`."""

    model: str
    condition: str
    study: str
    experiment: str
    participant: str
    line: int
    response_index: int
    response_text: str
    n_tokens: int
    nll: float
    top1_correct: bool | None
    entropy: float
    context_tokens: int
    truncated: bool
    offered_correct: bool | None = None
    n_offered: int | None = None
    nll_temperature: tuple[float, ...] | None = None
    offered_options: tuple[str, ...] | None = None
    offered_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's numbers; its hash guards a run directory."""

    model: str
    engine: str
    condition: str
    alignment: str
    dtype: str
    data: str
    data_hash: str
    split: str
    seed: int
    studies: tuple[str, ...] = ()
    limit: int | None = None
    window: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        payload = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
