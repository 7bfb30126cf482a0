"""`psych201 run STUDY.yaml`: every cell of a study on real data, resume, skips, and the report."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from paths import DATA, needs_data
from psych201.cli import app
from psych201.pipeline import ScoreConfig, ScoringSetup, load_hf_setup
from psych201.results import read_responses
from psych201.study import (
    StudyFileError,
    expand,
    is_complete,
    load_study,
    run_study,
    score_config,
)
from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

REPO = Path(__file__).parents[1]

pytestmark = needs_data

runner = CliRunner()

# A ChatML-like template: the chat-template cell runs for the model that has it.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    plain_tok = byte_bpe_tokenizer()
    plain = save_tiny(tiny_llama(plain_tok), plain_tok, root / "tiny-base")
    chat_tok = copy.copy(byte_bpe_tokenizer())  # the cached tokenizer is shared: leave it bare
    chat_tok.chat_template = CHAT_TEMPLATE
    chat = save_tiny(tiny_llama(chat_tok, seed=1), chat_tok, root / "tiny-chat")
    return plain, chat


def _study(tmp_path: Path, models: tuple[Path, Path]) -> Path:
    spec: dict[str, Any] = {
        "name": "tiny",
        "out": str(tmp_path / "runs"),
        "seed": 0,
        "models": [str(m) for m in models],
        "conditions": [
            "raw",
            "chat-template",
            "no-persona",
            {"name": "persona", "mode": "interview"},
            {"name": "persona-shuffled", "mode": "interview"},
        ],
        "data": [
            {
                "name": "shared",
                "path": str(DATA),
                "split": "test",
                "studies": ["franke2024bayesian", "guenther2023associations_individual"],
            },
            {"name": "demo", "path": "demo", "split": "all", "studies": ["simulated_bandit"]},
        ],
        "engine": {"batch_tokens": 4096},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_shipped_study_files_are_valid() -> None:
    for name, n_models in (("local.yaml", 3), ("paper.yaml", 102)):
        study = load_study(REPO / "studies" / name)
        assert len(study.models) == n_models
        assert len(expand(study)) == n_models * len(study.conditions) * len(study.data)


def test_bad_study_files_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: [m]\ndata: [{name: d, path: p}]\nengin: {}\n")
    with pytest.raises(StudyFileError, match=r"bad.yaml: engin: Extra inputs"):
        load_study(bad)
    bad.write_text("name: x\nmodels: [m]\ndata: [{name: d, path: p, split: dev}]\n")
    with pytest.raises(StudyFileError, match=r"data.0.split"):
        load_study(bad)
    bad.write_text("[unclosed")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


@pytest.mark.slow  # over 40 s on the shared 2-core machine
def test_run_scores_every_cell_then_rerun_scores_nothing(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    study_path = _study(tmp_path, models)
    result = runner.invoke(app, ["run", str(study_path), "--limit", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    study = load_study(study_path)
    cells = expand(study, limit=3)
    assert len(cells) == 2 * 5 * 2

    plain, chat = (str(m) for m in models)
    tables: dict[tuple[str, str, str], pd.DataFrame] = {}
    for cell in cells:
        table_path = cell.out / "responses.parquet"
        if cell.condition.name == "chat-template" and cell.model == plain:
            assert not table_path.exists()  # no chat template: skipped, not failed
            continue
        assert table_path.exists(), cell.label
        tables[(cell.data.name, cell.model, cell.condition.label)] = read_responses(cell.out)
    assert "skipped" in result.output and "report.html" in result.output
    assert (tmp_path / "runs" / "report.html").stat().st_size > 10_000

    # At most 3 participants per study; the persona cells and no-persona score the very same
    # responses (franke2024bayesian has no metadata, so only the other studies appear).
    for table in tables.values():
        assert table.groupby("study").participant.nunique().max() <= 3
    for model in (plain, chat):
        keys = {
            label: set(
                map(tuple, tables[("shared", model, label)][
                    ["study", "participant", "line", "response_index"]
                ].to_numpy().tolist())
            )
            for label in ("no-persona", "persona-mode=interview", "persona-shuffled-mode=interview")
        }
        assert keys["no-persona"] == keys["persona-mode=interview"]
        assert keys["no-persona"] == keys["persona-shuffled-mode=interview"]
        assert {k[0] for k in keys["no-persona"]} == {"guenther2023associations_individual"}
    # The preamble changes the numbers; the response texts are the same.
    own = tables[("demo", chat, "persona-mode=interview")]
    none = tables[("demo", chat, "no-persona")]
    assert own.response_text.tolist() == none.response_text.tolist()
    assert not (own.nll.to_numpy() == none.nll.to_numpy()).all()

    # Rerun: finished cells are recognised from their manifests; no model is even loaded.
    loads: list[str] = []

    def counting_loader(config: ScoreConfig) -> ScoringSetup:
        loads.append(config.model)
        return load_hf_setup(config)

    again = run_study(study, limit=3, load_setup=counting_loader, note=lambda _: None)
    statuses = {(o.cell.model, o.cell.condition.label): o.status for o in again.outcomes}
    assert statuses[(plain, "chat-template")] == "skipped"  # recorded: no template
    assert all(s == "done" for k, s in statuses.items() if k != (plain, "chat-template"))
    assert again.scored_cells == 0
    assert loads == []  # not even the skipped cell's model: its skip was recorded
    # Deleting the record retries the cell (and learns again that there is no template).
    skip_files = [c.out / "skipped.json" for c in cells
                  if c.model == plain and c.condition.label == "chat-template"]
    assert skip_files
    for path in skip_files:
        path.unlink()  # a missing record fails the test here
    third = run_study(study, limit=3, load_setup=counting_loader, note=lambda _: None)
    assert {o.status for o in third.outcomes if o.cell.condition.label == "chat-template"
            and o.cell.model == plain} == {"skipped"}
    assert set(loads) == {plain} and third.scored_cells == 0

    # Completeness is judged from the configuration: study order does not matter (the spec
    # stores them sorted), settings that change the numbers do.
    cell = next(c for c in cells if c.data.name == "shared" and c.condition.label == "raw")
    config = score_config(cell, study)
    assert is_complete(cell, config)
    assert is_complete(cell, replace(config, studies=tuple(reversed(config.studies))))
    assert not is_complete(cell, replace(config, max_tokens=64))
    assert not is_complete(cell, replace(config, window_overlap=8))
    assert not is_complete(cell, replace(config, model_args={"revision": "other"}))
    assert not is_complete(cell, replace(config, seed=1))
