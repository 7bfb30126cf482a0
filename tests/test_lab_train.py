"""Post-training on tiny random models: loss goes down, seeds reproduce, adapters round-trip and
score through the pipeline, large adapters stay out of git, the CLI works. One slow test trains
the real Gemma 3 270M for two steps."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from paths import DATA
from psych201.analysis.registry import load_registry
from psych201.data.split import iter_split
from psych201.lab import adapter as adapter_mod
from psych201.lab.adapter import (
    CARD_FILE,
    WEIGHTS_FILE,
    check_adapter_destination,
    load_adapter_model,
    read_card,
)
from psych201.lab.examples import example_from_session, human_examples
from psych201.lab.posttrain import DataSpec, build_data, posttrain
from psych201.lab.settings import LabError, LoRASettings, TrainSettings
from psych201.lab.train import learning_rate, lora_model, mean_nll, target_logprobs, train
from psych201.scoring.models import load_model
from psych201.simulate import simulate_study, write_study
from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_gemma3, tiny_llama

STUDY = "franke2024bayesian"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = byte_bpe_tokenizer()
    return save_tiny(tiny_llama(tokenizer, seed=3), tokenizer, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sim_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short sessions for fast training tests: 30 simulated bandit participants (27 train)."""
    folder = tmp_path_factory.mktemp("sim")
    write_study(simulate_study("bandit", n_participants=30, n_trials=8, seed=5),
                folder / "simulated_bandit.jsonl")
    return folder


def human_settings(**kw: Any) -> TrainSettings:
    base: dict[str, Any] = {"recipe": "human", "steps": 6, "batch_size": 2,
                            "learning_rate": 2e-2, "warmup_steps": 1, "max_tokens": 256}
    return TrainSettings(**(base | kw))


@pytest.fixture(scope="module")
def human_data(sim_data: Path) -> DataSpec:
    return DataSpec(data=sim_data, max_sessions_per_study=12)


def test_human_recipe_lowers_training_loss(tiny_base: Path, human_data: DataSpec) -> None:
    loaded = load_model(str(tiny_base))
    settings = human_settings(steps=15)
    data = build_data(settings, human_data, loaded.tokenizer)
    model = lora_model(loaded.model, settings.lora, seed=settings.seed)
    before = mean_nll(model, data.examples)
    result = train(model, data, settings)
    after = mean_nll(result.model, data.examples)
    assert after < before - 0.5, (before, after)
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    assert result.n_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_learning_rate_schedule() -> None:
    s = TrainSettings(recipe="human", steps=11, warmup_steps=2, learning_rate=1.0)
    lrs = [learning_rate(s, i) for i in range(11)]
    assert lrs[:3] == [0.5, 1.0, 1.0] and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))


def test_seed_reproduces_the_adapter(tiny_base: Path, human_data: DataSpec,
                                     tmp_path: Path) -> None:
    runs = [
        posttrain(str(tiny_base), human_settings(seed=seed, steps=3), human_data,
                  out_dir=tmp_path / f"run{i}")
        for i, seed in enumerate((0, 0, 1))
    ]
    a, b, c = (r.card for r in runs)
    assert a.adapter_sha256 == b.adapter_sha256 and a.losses == b.losses
    assert c.adapter_sha256 != a.adapter_sha256
    # the subset of training sessions is part of what the seed fixes
    assert a.data == b.data


def test_adapter_round_trip_and_merged_scores(tiny_base: Path, human_data: DataSpec,
                                               tmp_path: Path) -> None:
    result = posttrain(str(tiny_base), human_settings(), human_data, out_dir=tmp_path / "ad",
                       name="tiny-human")
    card = read_card(result.path)
    assert card == result.card
    assert card.name == "tiny-human" and card.base == str(tiny_base)
    assert card.recipe == card.post_training == "human"
    assert card.steps == len(card.losses) == 6 and card.seed == 0
    assert card.data["studies"]["simulated_bandit"]["used_sessions"] == 12
    assert card.train_settings == human_settings()
    files = {p.name for p in result.path.iterdir()}
    assert {WEIGHTS_FILE, "adapter_config.json", CARD_FILE, "registry.yaml"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    # The registry entry written beside it loads and pairs adapter with base.
    registry = load_registry(result.path / "registry.yaml")
    assert registry.pair_for("tiny-human").base == str(tiny_base)  # type: ignore[union-attr]

    loaded = load_adapter_model(result.path)
    assert loaded.model_id == "tiny-human" and loaded.source == str(result.path.resolve())
    base = load_model(str(tiny_base))
    assert loaded.file_sha256 != base.file_sha256
    # Merged weights give the peft model's log-probabilities, and differ from the base's.
    from peft import PeftModel

    session = next(iter(iter_split(human_data.data, "test")))  # type: ignore[arg-type]
    example = example_from_session(session, loaded.tokenizer, max_tokens=256)
    peft_model = PeftModel.from_pretrained(load_model(str(tiny_base)).model, str(result.path))
    with torch.no_grad():
        merged = target_logprobs(loaded.model, example)
        unmerged = target_logprobs(peft_model, example)
        original = target_logprobs(base.model, example)
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged, original, atol=1e-3)


def test_adapter_scores_through_the_pipeline(tiny_base: Path, human_data: DataSpec,
                                              tmp_path: Path) -> None:
    from psych201.lab.scoring import scoring_setup
    from psych201.pipeline import ScoreConfig, score_run
    from psych201.results.io import read_responses

    result = posttrain(str(tiny_base), human_settings(steps=2), human_data,
                       out_dir=tmp_path / "ad", name="tiny-human")
    tables = {}
    for label, model in (("base", str(tiny_base)), ("adapter", str(result.path))):
        config = ScoreConfig(data=DATA, out=tmp_path / label, model=model, studies=(STUDY,),
                             limit=3)
        score_run(config, setup=scoring_setup(config))
        tables[label] = read_responses(tmp_path / label)
    assert set(tables["adapter"]["model"]) == {"tiny-human"}
    keys = ["line", "response_index"]
    assert tables["adapter"][keys].equals(tables["base"][keys])
    assert not np.allclose(tables["adapter"]["nll"], tables["base"]["nll"])


def test_preference_recipe_prefers_normative_answers(tiny_base: Path) -> None:
    loaded = load_model(str(tiny_base))
    settings = TrainSettings(recipe="preference", steps=12, batch_size=4, learning_rate=2e-2,
                             warmup_steps=1, max_tokens=400, dpo_beta=0.5)
    data = build_data(settings, DataSpec(n_simulated=16, simulate_seed=1000), loaded.tokenizer)
    assert data.pairs
    result = train(lora_model(loaded.model, settings.lora, seed=0), data, settings)
    first, last = result.steps[0].extra, result.steps[-1].extra
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # adapter starts as identity
    assert last["reward_margin"] > 0.1 and last["reward_accuracy"] >= 0.75
    assert result.losses[-1] < result.losses[0]


def test_instruct_recipe_trains_on_gemma_architecture(tmp_path: Path) -> None:
    tokenizer = byte_bpe_tokenizer()
    base = save_tiny(tiny_gemma3(tokenizer), tokenizer, tmp_path / "gemma")
    settings = TrainSettings(recipe="instruct", steps=8, batch_size=2, learning_rate=2e-2,
                             warmup_steps=1, max_tokens=256,
                             lora=LoRASettings(layers=(1,)))
    result = posttrain(str(base), settings, DataSpec(n_dialogues=16), out_dir=tmp_path / "ad")
    assert result.card.post_training == "instruct" and result.card.n_target_tokens > 100
    assert np.mean(result.card.losses[-3:]) < np.mean(result.card.losses[:3])
    config = json.loads((result.path / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1] and config["base_model_name_or_path"] == str(base)


def test_large_adapters_never_land_in_a_git_tree(tiny_base: Path, human_data: DataSpec,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with pytest.raises(LabError, match="inside the git work tree"):
        check_adapter_destination(repo / "adapters" / "x", 6_000_000)
    check_adapter_destination(repo / "adapters" / "x", 4_000_000)  # small: allowed
    check_adapter_destination(tmp_path / "elsewhere", 60_000_000)  # outside a tree: allowed
    # Through posttrain: refused before anything is written.
    monkeypatch.setattr(adapter_mod, "MAX_REPO_ADAPTER_BYTES", 1000)
    with pytest.raises(LabError, match="regenerate it from its card"):
        posttrain(str(tiny_base), human_settings(steps=1), human_data, out_dir=repo / "ad")
    assert not (repo / "ad").exists()


def test_the_repository_holds_no_adapter_weights() -> None:
    root = Path(__file__).parents[1]
    ignored = {"runs", "out", "build", "dist"}  # git-ignored output folders (.gitignore)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ignored]
        found += [Path(folder) / f for f in files if f == WEIGHTS_FILE]
    assert not [p for p in found if p.stat().st_size > adapter_mod.MAX_REPO_ADAPTER_BYTES]


def test_bad_adapter_folders_are_refused(tiny_base: Path, human_data: DataSpec,
                                        tmp_path: Path) -> None:
    result = posttrain(str(tiny_base), human_settings(steps=1), human_data, out_dir=tmp_path / "a")
    (result.path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(LabError, match="never loads pickles"):
        load_adapter_model(result.path)
    (result.path / "adapter_model.bin").unlink()
    weights = result.path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(LabError, match="SHA-256 differs"):
        load_adapter_model(result.path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("not an adapter")
    with pytest.raises(LabError, match="not an adapter folder"):
        posttrain(str(tiny_base), human_settings(steps=1), human_data, out_dir=tmp_path / "b")


def test_human_recipe_needs_data(tiny_base: Path) -> None:
    with pytest.raises(LabError, match="needs a dataset"):
        posttrain(str(tiny_base), human_settings(), DataSpec())
    with pytest.raises(LabError, match="no module named nope"):
        lora_model(load_model(str(tiny_base)).model, LoRASettings(target_modules=("nope",)),
                   seed=0)


def test_cli_train_show_and_registry(tiny_base: Path, tmp_path: Path) -> None:
    import typer

    from psych201.cli.lab_cmds import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "cli-adapter"
    res = runner.invoke(app, [
        "posttrain", "train", "human", "--base", str(tiny_base), "--data", str(DATA),
        "--studies", STUDY, "--steps", "2", "--batch-size", "1", "--max-tokens", "600",
        "--max-sessions-per-study", "4", "--layers", "0-1", "--out", str(out),
        "--name", "cli-human",
    ])
    assert res.exit_code == 0, res.output
    assert read_card(out).settings["lora"]["layers"] == [0, 1]
    res = runner.invoke(app, ["posttrain", "show", str(out)])
    assert res.exit_code == 0 and "cli-human" in res.output and "recipe: human" in res.output
    res = runner.invoke(app, ["posttrain", "registry", str(out), "--out", str(tmp_path / "r.yaml")])
    assert res.exit_code == 0 and load_registry(tmp_path / "r.yaml").get("cli-human") is not None
    res = runner.invoke(app, ["posttrain", "train", "rlhf", "--base", str(tiny_base)])
    assert res.exit_code == 2 and "unknown recipe" in " ".join(res.output.split())
    res = runner.invoke(app, ["posttrain", "show", str(tmp_path)])
    assert res.exit_code == 2 and "not an adapter folder" in " ".join(res.output.split())


def test_human_examples_never_include_test_participants_of_any_seed() -> None:
    tokenizer = byte_bpe_tokenizer()
    for seed in (0, 7):
        test = {s.key for s in iter_split(DATA / STUDY, "test", seed=seed)}
        data = human_examples(DATA, tokenizer, studies=[STUDY], split_seed=seed, max_tokens=600)
        assert test and not test & {e.session for e in data.examples}


@pytest.mark.slow
def test_gemma_human_adapter_two_steps(tmp_path: Path) -> None:
    """The real base: two LoRA steps on short sequences, then the adapter scores like a model."""
    settings = TrainSettings(recipe="human", steps=2, batch_size=1, learning_rate=1e-3,
                             warmup_steps=1, max_tokens=256, lora=LoRASettings(layers=(17,)))
    spec = DataSpec(data=DATA, studies=(STUDY,), max_sessions_per_study=2)
    result = posttrain("gemma-3-270m", settings, spec, out_dir=tmp_path / "g")
    assert result.card.base == "gemma-3-270m" and len(result.card.losses) == 2
    assert all(np.isfinite(result.card.losses))
    assert (result.path / WEIGHTS_FILE).stat().st_size < adapter_mod.MAX_REPO_ADAPTER_BYTES
    loaded = load_adapter_model(result.path)
    assert loaded.model_id == "gemma-3-270m-lora-human-s0"


def test_experiment_end_to_end_on_a_tiny_base(tiny_base: Path, sim_data: Path,
                                             tmp_path: Path) -> None:
    from psych201.lab.experiment import ExperimentPlan, run_experiment

    small = {"steps": 4, "batch_size": 2, "learning_rate": 2e-2, "warmup_steps": 1,
             "max_tokens": 256}
    plan = ExperimentPlan.model_validate({
        "format": "psych201-posttraining-lab/1", "name": "tiny-lab", "base": str(tiny_base),
        "data": str(sim_data), "studies": ["simulated_bandit"],
        "adapters": [
            {"name": "tiny-instruct", "recipe": "instruct", "settings": small,
             "data": {"n_dialogues": 8}},
            {"name": "tiny-human", "recipe": "human", "settings": small},
        ],
        "evaluation": {"limit": 3, "n_boot": 200,
                       "simulated": {"kinds": ["risky"], "n_participants": 4, "n_trials": 5}},
    })
    out = tmp_path / "lab"
    result = run_experiment(plan, data=sim_data, out_dir=out)
    res = result.results
    test = res["evaluations"]["psych201-test"]
    assert test["n_participants"] == 3  # max_eval(30) = 3 test participants
    assert set(test["comparisons"]) == {"tiny-instruct", "tiny-human"}
    effect = {e["name"]: e for e in test["comparisons"]["tiny-human"]["effects"]}
    diff = effect["mean NLL difference"]
    models = test["models"]
    base_id = res["base_model_id"]
    assert base_id == tiny_base.name and set(models) == {base_id, "tiny-instruct", "tiny-human"}
    assert diff["estimate"] == pytest.approx(
        models["tiny-human"]["mean_nll"] - models[base_id]["mean_nll"])
    assert diff["ci_low"] <= diff["estimate"] <= diff["ci_high"]
    sim = res["evaluations"]["simulated"]
    assert "oracle (generating model)" in sim["models"]
    assert "tiny-human" in (out / "summary.md").read_text()
    registry = load_registry(out / "registry.yaml")
    assert registry.pair_for("tiny-human").base == str(tiny_base)  # type: ignore[union-attr]
    assert registry["tiny-instruct"].post_training == "instruct"
    # Resumable: a second run reuses adapters and score runs and gives the same numbers.
    again = run_experiment(plan, data=sim_data, out_dir=out)
    assert again.results["evaluations"] == res["evaluations"]
    assert again.results["adapters"] == res["adapters"]


def test_an_adapter_plays_in_closed_loop_as_its_merged_model(tiny_base: Path, human_data: DataSpec,
                                                             tmp_path: Path) -> None:
    """`psych201 play --model ADAPTER_FOLDER` plays the base with the adapter merged (the
    post-trained side of a base/post-trained pair in closed loop): the choice table equals
    playing the merged model loaded in-process, and the manifest names the adapter."""
    from psych201.cli import app
    from psych201.pipeline.play import PlaySpec, run_play
    from psych201.pipeline.play_models import language_model_players

    result = posttrain(str(tiny_base), human_settings(steps=2), human_data,
                       out_dir=tmp_path / "ad", name="tiny-human")
    out = tmp_path / "play"
    played = CliRunner().invoke(app, ["play", "--task", "bandit", "--model", str(result.path),
                                      "-n", "3", "--trials", "5", "--out", str(out)])
    assert played.exit_code == 0, played.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["id"] == "tiny-human"
    spec = PlaySpec(task="bandit", model=str(result.path), n_participants=3, n_trials=5)
    loaded = language_model_players(spec, load=lambda: load_adapter_model(result.path))
    again = run_play(spec, tmp_path / "again", make_players=loaded.make_players,
                     engine_info=loaded.engine_info, model_info=loaded.model_info)
    import pandas as pd

    first, second = pd.read_parquet(out / "choices.parquet"), pd.read_parquet(again.choices)
    assert first["choice"].tolist() == second["choice"].tolist()
    np.testing.assert_allclose(np.stack(first["option_logprobs"]),
                               np.stack(second["option_logprobs"]), atol=1e-6)
    batch = CliRunner().invoke(app, ["play", "--task", "bandit", "--model", str(result.path),
                                     "-n", "3", "--mode", "batch", "--out", str(tmp_path / "b")])
    assert batch.exit_code == 2 and "--mode cache" in batch.output, batch.output
