"""Study plans that train an adapter (``adapters:``) and score it beside its base.

The adapter is trained once, the first time one of its cells runs, into
``<out>/adapters/<name>``; its registry fragment pairs it with its base, so the study's report
has a real base/post-trained pair for the post-training analyses. A rerun trains and scores
nothing; a study file whose adapter settings changed is refused before any work, naming the
folder; two processes asking for the same adapter train it once.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from paths import DATA, needs_data
from psych201.cli import app
from psych201.lab.adapter import CARD_FILE, is_adapter_dir, read_card
from psych201.lab.adapter_plan import AdapterPlan, ensure_adapter
from psych201.results import read_responses
from psych201.study import StudyFileError, adapter_folder, expand, load_study

runner = CliRunner()

ADAPTER = "tiny-lora-instruct"
SETTINGS = {"steps": 3, "batch_size": 2, "learning_rate": 2.0e-2, "warmup_steps": 1,
            "max_tokens": 128, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _study(tmp_path: Path, base: Path, **adapter: Any) -> Path:
    entry = {"name": ADAPTER, "base": str(base), "recipe": "instruct",
             "settings": dict(SETTINGS), "data": {"n_dialogues": 8}} | adapter
    spec: dict[str, Any] = {
        "name": "tiny-pair",
        "out": str(tmp_path / "runs"),
        "models": [str(base), ADAPTER],
        "adapters": [entry],
        "conditions": ["raw", "chat-template"],  # no chat template: a skipped cell each
        "data": [{"name": "shared", "path": str(DATA), "split": "test",
                  "studies": ["franke2024bayesian"]},
                 {"name": "demo", "path": "demo", "split": "all",
                  "studies": ["simulated_bandit"]}],
        "engine": {"batch_tokens": 4096, "engine_args": {"temperatures": "on"}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@needs_data
def test_a_study_trains_its_adapter_once_and_reports_the_pair(
    tmp_path: Path, tiny_dir: Path
) -> None:
    study_path = _study(tmp_path, tiny_dir)
    result = runner.invoke(app, ["run", str(study_path), "--limit", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    study = load_study(study_path)
    folder = adapter_folder(study, ADAPTER)
    assert is_adapter_dir(folder) and read_card(folder).base == str(tiny_dir)
    assert f"{ADAPTER}: training" in result.output

    raw = {(c.data.name, c.model == ADAPTER): c for c in expand(study, limit=6)
           if c.condition.name == "raw"}
    keys = ["participant", "line", "response_index"]
    for data in ("shared", "demo"):  # a real study and a simulated one
        base_cell, adapter_cell = raw[(data, False)], raw[(data, True)]
        assert adapter_cell.source == str(folder)
        base_rows, adapter_rows = read_responses(base_cell.out), read_responses(adapter_cell.out)
        assert set(adapter_rows["model"]) == {ADAPTER} and len(base_rows) > 0
        assert base_rows[keys].equals(adapter_rows[keys])  # the very same responses
        assert (base_rows["nll"].to_numpy() != adapter_rows["nll"].to_numpy()).any()

    # The report pairs the adapter with its base: the post-training sections have content.
    html = (tmp_path / "runs" / "report.html").read_text(encoding="utf-8")
    anchors = re.findall(r'<section class="analysis" id="([^"]+)">', html)
    assert {"post-training", "diagnostics"} <= set(anchors), anchors
    # With 6 participants a study cannot give calibration its two folds of 5: the report says
    # so in its "Not shown" list instead of fitting a temperature on one or two people.
    if "calibration" not in anchors:
        not_shown = html[html.index('<section id="not-shown">'):]
        assert "Calibration" in not_shown and "fold" in not_shown, not_shown[:2000]
    diagnostics = html[html.index('id="diagnostics"'):]
    assert ADAPTER in diagnostics[: diagnostics.index("</section>")]

    # By hand, as the run's last line says: the skipped cells are left out with a word, and
    # the page has the sections the run's own report has.
    assert "--registry" in result.output
    fragment = folder / "registry.yaml"
    # the glob also picks up the adapter's files: left out too
    runs = sorted(str(p) for p in (tmp_path / "runs").glob("*/*/*"))
    again_html = tmp_path / "again.html"
    by_hand_report = runner.invoke(app, ["report", *runs, "--data", str(DATA), "--data", "demo",
                                         "--registry",
                                         str(fragment), "-o", str(again_html), "--n-boot", "200"])
    assert by_hand_report.exit_code == 0, by_hand_report.output
    assert by_hand_report.output.count("a skipped study cell") == 4
    assert "a study's adapter (or a file in it), not a run" in by_hand_report.output
    again_anchors = re.findall(r'<section class="analysis" id="([^"]+)">',
                               again_html.read_text(encoding="utf-8"))
    assert again_anchors == anchors
    missing = runner.invoke(app, ["report", *runs, "--data", str(tmp_path / "nope"),
                                  "-o", str(tmp_path / "x.html")])
    assert missing.exit_code == 2 and "nope: no such file or directory" in missing.output

    # The same adapter folder scored by `psych201 score`: the same numbers, the same model id.
    from psych201.simulate.demo import DEMO_DIR

    scored = tmp_path / "scored-by-hand"
    by_hand = runner.invoke(app, ["score", "--model", str(folder), "--data",
                                  str(DEMO_DIR / "simulated_bandit.jsonl"), "--split", "all",
                                  "--limit", "6", "--batch-tokens", "4096", "--out", str(scored),
                                  "-q"])
    assert by_hand.exit_code == 0, by_hand.output
    hand_rows = read_responses(scored)
    assert set(hand_rows["model"]) == {ADAPTER}
    in_study = read_responses(raw[("demo", True)].out)
    assert hand_rows["nll"].to_numpy() == pytest.approx(in_study["nll"].to_numpy(), abs=1e-5)
    other = runner.invoke(app, ["score", "--model", str(folder), "--data", str(DEMO_DIR),
                               "--engine", "oracle", "--out", str(tmp_path / "o"), "-q"])
    assert other.exit_code == 2 and "LoRA adapter: score it with --engine hf" in other.output

    # Rerun: nothing trained, nothing scored, the adapter folder untouched.
    card_mtime = (folder / CARD_FILE).stat().st_mtime_ns
    again = runner.invoke(app, ["run", str(study_path), "--limit", "6", "--quiet"])
    assert again.exit_code == 0, again.output
    assert "training" not in again.output and "complete, skipped" in again.output
    assert (folder / CARD_FILE).stat().st_mtime_ns == card_mtime

    # Other settings under the same name: refused before any work, nothing deleted.
    changed = _study(tmp_path, tiny_dir, settings={**SETTINGS, "steps": 4})
    refused = runner.invoke(app, ["run", str(changed), "--limit", "6", "--quiet"])
    assert refused.exit_code == 2, refused.output
    assert "trained otherwise" in refused.output and str(folder) in refused.output
    other_data = _study(tmp_path, tiny_dir, data={"n_dialogues": 9})
    refused = runner.invoke(app, ["run", str(other_data), "--limit", "6", "--quiet"])
    assert refused.exit_code == 2 and "trained otherwise" in refused.output, refused.output
    assert is_adapter_dir(folder) and raw[("demo", True)].out.exists()


def test_two_processes_asking_for_one_adapter_train_it_once(
    tmp_path: Path, tiny_dir: Path
) -> None:
    plan = AdapterPlan(name=ADAPTER, recipe="instruct", settings=SETTINGS,
                       data={"n_dialogues": 8})
    folder = tmp_path / "adapters" / ADAPTER
    notes: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            ensure_adapter(str(tiny_dir), plan, plan.data_spec(None), folder,
                           note=notes.append)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(n.startswith(f"{ADAPTER}: training") for n in notes) == 1, notes
    assert sum(n.startswith(f"{ADAPTER}: reusing") for n in notes) == 1, notes


@pytest.mark.parametrize(
    ("adapter", "models", "message"),
    [
        ({}, ["m"], "never scored: list it under models"),
        ({"recipe": "human"}, ["m", ADAPTER], r"adapters.0.recipe"),
        ({"data": {"n_dialogues": 8, "colour": 1}}, ["m", ADAPTER], "unknown data option.*colour"),
        ({"data": {"use_dataset": True}}, ["m", ADAPTER], "no dataset is given"),
        ({"settings": {"steps": 0}}, ["m", ADAPTER], r"adapters.0 \(tiny-lora-instruct\)"),
        ({"name": "../x"}, ["m", "../x"], r"adapters.0.name"),
        ({"base": ADAPTER}, ["m", ADAPTER], "cannot be its own base"),
        ({"name": "smollm2-135m-instruct"}, ["m", "smollm2-135m-instruct"],
         "registry already has"),
        ({"dataset": "adapters"}, ["m", ADAPTER], "share its folder"),
        # found by trying it as an attacker: each failed only minutes into a run, or never
        ({"settings": {"steps": 2.5}}, ["m", ADAPTER], "steps must be an integer"),
        ({"settings": {"steps": True}}, ["m", ADAPTER], "steps must be an integer"),
        ({"settings": {"learning_rate": float("nan")}}, ["m", ADAPTER], "finite number"),
        ({"settings": {"bogus": 1}}, ["m", ADAPTER], "unknown training setting.*bogus"),
        ({"settings": {"batch_size": 10**12}}, ["m", ADAPTER], "batch_size must be at most"),
        ({"settings": {"lora": {"r": 2.5}}}, ["m", ADAPTER], "LoRA r must be an integer"),
        ({"data": {"n_dialogues": -5}}, ["m", ADAPTER], "n_dialogues must be an integer"),
        ({"data": {"n_dialogues": 10**15}}, ["m", ADAPTER], "n_dialogues must be an integer"),
        ({"name": "."}, ["m", "."], "is no name"),
        ({"name": ".."}, ["m", ".."], "is no name"),
        ({"base": "/nonexistent/base"}, ["m", ADAPTER], "no such file or directory"),
    ],
)
def test_bad_adapter_entries_name_the_file_and_the_entry(
    tmp_path: Path, adapter: dict[str, Any], models: list[str], message: str
) -> None:
    adapter = dict(adapter)
    data = adapter.pop("dataset", "d")  # the dataset's name, not an adapter key
    entry = {"name": ADAPTER, "base": "m", "recipe": "instruct"} | adapter
    spec = {"name": "x", "models": models, "adapters": [entry],
            "data": [{"name": data, "path": "demo"}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyFileError, match=message) as info:
        load_study(path)
    assert "bad.yaml" in str(info.value)


@needs_data
def test_plan_costs_an_untrained_adapter_as_its_base(tmp_path: Path, tiny_dir: Path) -> None:
    import json

    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", str(_study(tmp_path, tiny_dir)), "--limit", "4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    plans = {p["model"]: p for p in json.loads(out.read_text())["plans"]}
    assert set(plans) == {str(tiny_dir), ADAPTER}
    assert not (tmp_path / "runs" / "adapters").exists()  # planning trains nothing
    base, adapter = plans[str(tiny_dir)], plans[ADAPTER]
    assert adapter["tokens"] == base["tokens"] > 0 and adapter["exact"] and base["exact"]
    assert adapter["flops"] == base["flops"]


def test_a_cell_another_process_is_scoring_is_skipped_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two `psych201 run` on one study share its cells: the second skips a busy one (exit 0).
    import psych201.study.run as study_module
    from constant_setup import constant_setup
    from psych201.results.lock import RunDirLockedError
    from psych201.study import run_study

    def busy(*_args: Any, **_kw: Any) -> Any:
        raise RunDirLockedError("cell is in use by another psych201 process (pid 1)")

    monkeypatch.setattr(study_module, "score_run", busy)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "out": str(tmp_path / "runs"), "models": ["m"],
                                    "data": [{"name": "d", "path": "demo", "split": "all"}]}))
    outcome = run_study(load_study(path), load_setup=lambda _config: constant_setup(),
                        note=lambda _m: None)
    (cell,) = outcome.outcomes
    assert cell.status == "skipped" and "another psych201 process" in cell.message
    assert not outcome.failed


def test_models_that_would_share_a_score_folder_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "models": ["/tmp/a b", "tmp_a_b"],
                                    "data": [{"name": "d", "path": "demo"}]}))
    with pytest.raises(StudyFileError, match="would share the score folder 'tmp_a_b'"):
        load_study(path)


def test_an_adapter_trained_on_another_study_adapter_is_refused(tmp_path: Path) -> None:
    first = {"name": "a1", "base": "m", "recipe": "instruct"}
    second = {"name": "a2", "base": "a1", "recipe": "instruct"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "models": ["m", "a1", "a2"],
                                    "adapters": [first, second],
                                    "data": [{"name": "d", "path": "demo"}]}))
    with pytest.raises(StudyFileError, match=r"adapters.1 \(a2\): its base is another adapter"):
        load_study(path)


def test_the_analysis_commands_know_what_a_study_writes_beside_its_runs() -> None:
    # analysis_opts spells these names out rather than import the lab (torch) or the study
    # runner into every compare/report: they must stay the ones those modules write.
    from psych201.cli import analysis_opts
    from psych201.study import SKIP_FILE

    assert analysis_opts._ADAPTER_CARD == CARD_FILE
    assert analysis_opts._SKIPPED_CELL == SKIP_FILE
