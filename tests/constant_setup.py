"""A scoring setup without a model: one NLL per response from its text, for CLI tests that need
real run directories in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence

from psych201.pipeline import ScoringSetup
from psych201.prompts.records import Prompt
from psych201.scoring.engine import EngineInfo
from psych201.scoring.scorer import SpanScore


class ConstantScorer:
    """One NLL per response from its length: enough to write real run directories fast."""

    def score(self, prompts: Sequence[Prompt]) -> list[list[SpanScore]]:
        return [
            [
                SpanScore(
                    index=s.index,
                    n_tokens=1,
                    nll=1.0 + len(s.text) % 7,
                    top1_correct=None,
                    entropy=1.0,
                    context_tokens=0,
                    truncated=False,
                )
                for s in prompt.spans
            ]
            for prompt in prompts
        ]


def constant_setup() -> ScoringSetup:
    info = EngineInfo(name="constant", model_id="const", dtype="float32", device="cpu",
                      max_context=None)  # fmt: skip
    return ScoringSetup(
        model_id="const", engine="constant", tokenizer=None, scorer=ConstantScorer(),
        model_info={"id": "const", "source": "test", "file_sha256": None, "max_context": None},
        engine_info=info, tokenizer_info={}, window={},
    )  # fmt: skip
