"""Score prompts on a Ray cluster: a Ray Data ``map_batches`` job, one engine replica per worker.

Each worker (a Ray actor of the job's actor pool) builds its own scorer once from a picklable
factory, e.g. ``functools.partial(make_scorer, ScorerSpec(...))``, and scores batches of
prompts with it; any engine works (hf, vllm, llamacpp, openai). Prompts travel as plain columns
(text, spans as JSON) and scores come back as JSON, so nothing but our own data is pickled.
Results are returned in input order: :class:`RayScorer` is a drop-in ``PromptScorer`` for the
pipeline, which writes the very same Parquet parts (and resumes) as a single-process run.

``score`` runs one job per call (the pipeline calls it per part); ``score_stream`` runs one job
over many chunks and yields each chunk's scores as soon as it is complete, so engine replicas load
once per run: the right shape for a whole study set on a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from psych201.data.records import ResponseSpan
from psych201.prompts.records import Prompt
from psych201.scoring.engine_util import EngineError
from psych201.scoring.protocols import PromptScorer
from psych201.scoring.scorer import SpanScore

ScorerFactory = Callable[[], PromptScorer]


@dataclass(frozen=True)
class RayConfig:
    """The Ray job's shape.

    ``num_workers`` engine replicas (actors), each reserving ``cpus_per_worker`` CPUs and
    ``gpus_per_worker`` GPUs (use 1, or the tensor-parallel size, for vLLM on GPUs).
    ``address``: ``None`` starts a local cluster (``local_cpus`` CPUs) unless one is already
    initialised in this process, ``"auto"`` joins the cluster this node belongs to.
    ``prompts_per_batch``: prompts per ``map_batches`` call (one forward batch per call).
    """

    num_workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    prompts_per_batch: int = 4
    address: str | None = None
    local_cpus: int | None = None
    object_store_mb: int | None = None

    def __post_init__(self) -> None:
        if self.num_workers < 1 or self.prompts_per_batch < 1:
            raise ValueError("num_workers and prompts_per_batch must be >= 1")


class RayScorer:
    """A ``PromptScorer`` whose work runs on a Ray cluster (see the module docstring)."""

    def __init__(self, factory: ScorerFactory, config: RayConfig = RayConfig()) -> None:
        try:
            import ray
        except ImportError as err:  # pragma: no cover - exercised where ray is absent
            raise EngineError("the ray engine needs Ray: pip install 'ray[data]'") from err
        self.factory = factory
        self.config = config
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if config.address is not None:
                kwargs["address"] = config.address
            else:
                if config.local_cpus is not None:
                    kwargs["num_cpus"] = config.local_cpus
                if config.object_store_mb is not None:
                    kwargs["object_store_memory"] = config.object_store_mb << 20
            ray.init(**kwargs)

    def score(self, prompts: Sequence[Prompt]) -> list[list[SpanScore]]:
        """One list per prompt, one :class:`SpanScore` per span (like ``SessionScorer``)."""
        if not prompts:
            return []
        return next(self.score_stream([prompts]))

    def score_stream(
        self, chunks: Iterable[Sequence[Prompt]]
    ) -> Iterator[list[list[SpanScore]]]:
        """Scores of each chunk, in chunk order, as soon as the whole chunk is scored."""
        import ray

        rows: list[dict[str, Any]] = []
        sizes: list[int] = []
        for chunk in chunks:
            sizes.append(len(chunk))
            rows.extend(_prompt_row(len(rows), p) for p in chunk)
        if not rows:
            yield from ([] for _ in sizes)
            return
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in input order
        cfg = self.config
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 200)).map_batches(
            _ScoreActor,
            fn_constructor_args=(self.factory,),
            batch_size=cfg.prompts_per_batch,
            batch_format="numpy",
            concurrency=cfg.num_workers,
            num_cpus=cfg.cpus_per_worker,
            num_gpus=cfg.gpus_per_worker or None,
        )
        results = (row for row in dataset.iter_rows())
        expected = 0
        for size in sizes:
            out: list[list[SpanScore]] = []
            for _ in range(size):
                row = next(results)
                if int(row["i"]) != expected:
                    raise EngineError(f"ray: result {row['i']} arrived for prompt {expected}")
                out.append([_span_score(d) for d in json.loads(row["scores"])])
                expected += 1
            yield out


class _ScoreActor:
    """One engine replica: built once per actor, then scores batch after batch."""

    def __init__(self, factory: ScorerFactory) -> None:
        self.scorer = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prompts = [
            _prompt_from_row(text, spans, condition, int(dropped), bool(aligned), options)
            for text, spans, condition, dropped, aligned, options in zip(
                batch["text"],
                batch["spans"],
                batch["condition"],
                batch["n_dropped"],
                batch["marker_aligned"],
                batch["options"],
                strict=True,
            )
        ]
        scores = self.scorer.score(prompts)
        encoded = [json.dumps([asdict(s) for s in one]) for one in scores]
        return {"i": batch["i"], "scores": np.asarray(encoded, dtype=object)}


def _prompt_row(i: int, prompt: Prompt) -> dict[str, Any]:
    return {
        "i": i,
        "text": prompt.text,
        "spans": json.dumps([[s.index, s.start, s.end, s.text] for s in prompt.spans]),
        "condition": prompt.condition,
        "n_dropped": prompt.n_dropped,
        "marker_aligned": prompt.marker_aligned,
        # Option sets as sorted lists (null where unknown); "[]" when the prompt has none.
        "options": json.dumps([None if o is None else sorted(o) for o in prompt.options]),
    }


def _prompt_from_row(
    text: str, spans: str, condition: str, n_dropped: int, marker_aligned: bool, options: str
) -> Prompt:
    decoded = tuple(
        ResponseSpan(int(i), int(a), int(b), str(t)) for i, a, b, t in json.loads(spans)
    )
    offered = tuple(None if o is None else frozenset(o) for o in json.loads(options))
    return Prompt(str(text), decoded, str(condition), n_dropped, marker_aligned, offered)


def _span_score(d: dict[str, Any]) -> SpanScore:
    # asdict went out, JSON keeps NaN and None (multi-token top1_correct): the fields come back.
    # JSON turned the tuple fields into lists.
    tuples = ("nll_temperature", "offered_options", "offered_logprobs")
    fields: dict[str, Any] = {k: tuple(v) if k in tuples and v is not None else v
                              for k, v in d.items()}
    return SpanScore(**fields)
