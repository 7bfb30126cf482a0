"""`psych201 plan`: its token counts are the tokens `psych201 score` forwards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from typer.testing import CliRunner

from paths import DATA, needs_data
from psych201.cli import app
from psych201.pipeline import ScoreConfig, score_run, setup_from_loaded
from psych201.plan import plan_model
from psych201.scoring.engine import EngineInfo, ScoringRequest, TokenScores
from psych201.scoring.models import load_model
from psych201.scoring.plan import Shape, attended_pairs, forward_flops
from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

STUDIES = ("dezfouli2019", "thoma2025problearn", "busch2024_stroop")


class Counting:
    """Wraps a real engine; counts the tokens of every sequence it forwards."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.tokens = 0

    @property
    def info(self) -> EngineInfo:
        return self.engine.info  # type: ignore[attr-defined, no-any-return]

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        self.tokens += sum(int(r.token_ids.size) for r in requests)
        return self.engine.score(requests)  # type: ignore[attr-defined, no-any-return]


@needs_data
def test_plan_tokens_equal_tokens_scored(tmp_path: Path) -> None:
    tok = byte_bpe_tokenizer()
    folder = save_tiny(tiny_llama(tok, max_positions=1024), tok, tmp_path / "tiny")
    loaded = load_model(str(folder))
    for study in STUDIES:
        # A 1,024-token context: long sessions are cut into overlapping windows, counted too.
        config = ScoreConfig(data=DATA, out=tmp_path / study, model=str(folder),
                             studies=(study,), limit=2)
        setup = setup_from_loaded(loaded, config)
        counting = Counting(setup.scorer.engine)  # type: ignore[attr-defined]
        setup.scorer.engine = counting  # type: ignore[attr-defined]
        summary = score_run(config, setup=setup)
        assert summary.sessions == 2 and counting.tokens > 1_000
        planned = plan_model(config)
        assert planned.exact
        assert planned.tokens == counting.tokens, study
        assert planned.studies[0].study == study


def test_flops_count_the_window() -> None:
    assert attended_pairs(4, None) == 10
    assert attended_pairs(10, 3) == 6 + 7 * 3
    full = Shape(1, 2, 8, 16, 100, 1000, (None,))
    window = Shape(1, 2, 8, 16, 100, 1000, (3,))
    assert forward_flops(full, [10]) == 2 * 1000 * 10 + 4 * 2 * 8 * 55
    head = 2 * 16 * 100 * 2
    assert forward_flops(window, [10], targets=2) == 2 * 1000 * 10 + 4 * 2 * 8 * 27 + head


@needs_data
def test_plan_cli_writes_json(tmp_path: Path) -> None:
    tok = byte_bpe_tokenizer()
    folder = save_tiny(tiny_llama(tok), tok, tmp_path / "tiny")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"mix": {"packed": {"flops_per_s": 1e9}}}))
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", "--data", str(DATA / "thoma2025problearn"),
                                      "--model", str(folder), "--limit", "1",
                                      "--benchmark", str(bench), "-o", str(out)])
    assert result.exit_code == 0, result.output
    plans = json.loads(out.read_text())["plans"]
    assert plans[0]["exact"] and plans[0]["tokens"] > 0 and plans[0]["hours"] > 0
