"""Issue #14, the study runner, report and figures: every row a test that fails without its fix.

Rows: 7 (study paths stay inside ``out``), 9 (names never parsed as math text), 11/11b (an empty
or failing cell never loses the report; exit 4), 12 (``figures`` never writes into the
repository by default), 13 (output paths refused in one line), 14 (``--pair POST=BASE`` hints),
15 (strict JSON), 19 (report consistency), and the readable numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from matplotlib.text import Text

from cli_helpers import cli_output as _invoke
from paths import DATA, needs_data
from psych201.analysis.an_accuracy import AccuracyResult
from psych201.analysis.an_post_training import PostTrainingResult
from psych201.analysis.an_random_baseline import PseudoR2Result
from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import load_registry
from psych201.analysis.summary import summarize
from psych201.analysis.synthetic import STUDIES, SyntheticDesign, synthetic_responses
from psych201.analysis.tables import results_from_frame
from psych201.report.figures import render_figures, save_figures
from psych201.report.html import build_report
from psych201.study import StudyFileError, load_study

REGISTRY = load_registry()
HOSTILE = "m$\\foo{$x"


def _frame(models: tuple[str, ...] = ("Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B"),
           n_studies: int = 4, conditions: tuple[str, ...] = ("raw",), seed: int = 3):
    design = SyntheticDesign(studies={s: STUDIES[s] for s in list(STUDIES)[:n_studies]},
                             n_participants=4, n_responses=6, seed=seed)
    return synthetic_responses([REGISTRY[m] for m in models], design=design,
                               conditions=conditions)


# -- row 7: a study file cannot write outside its output folder ----------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("data.0.name", "../../escape"), ("data.0.name", "/tmp/abs"), ("data.0.name", ".."),
    ("data.0.name", "a/b"), ("report", "../../report.html"), ("report", "/tmp/report.html"),
    ("report", "sub/../../x.html"),
])
def test_study_paths_stay_inside_out(tmp_path: Path, field: str, value: str) -> None:
    spec: dict = {"name": "x", "models": ["m"], "data": [{"name": "d", "path": "p"}]}
    if field == "report":
        spec["report"] = value
    else:
        spec["data"][0]["name"] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyFileError, match=rf"study.yaml: {field}: .*{value!r}"):
        load_study(path)
    code, out = _invoke("run", str(path))
    assert code == 2 and field in out and "Traceback" not in out
    assert not (tmp_path.parent / "escape").exists()


def test_study_names_inside_out_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "models": ["../m"], "report": "out/r.html",
                                    "data": [{"name": "shared.v2", "path": str(tmp_path)}]}))
    study = load_study(path)
    from psych201.study import expand
    (cell,) = expand(study, out=tmp_path / "runs")
    assert cell.out.resolve().is_relative_to((tmp_path / "runs").resolve())


@pytest.mark.parametrize(("entry", "message"), [
    ({"data": [{"name": "d", "path": "no-such-folder"}]}, "data.0.path 'no-such-folder': no such"),
    ({"conditions": ["raw", "nope"]}, "conditions.1: unknown condition 'nope'"),
])
def test_run_refuses_missing_data_and_unknown_conditions_before_any_model(
    tmp_path: Path, entry: dict, message: str
) -> None:
    spec = {"name": "x", "models": ["no-such-model"], "out": str(tmp_path / "runs"),
            "data": [{"name": "d", "path": str(tmp_path)}], **entry}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    for command in ("run", "plan"):
        code, out = _invoke(command, str(path))
        assert code == 2 and message in " ".join(out.split()), out
        assert "no-such-model" not in out  # refused before any model was looked up
    assert not (tmp_path / "runs").exists()


# -- row 9: names are text, never math -----------------------------------------------------------
def test_hostile_names_do_not_break_figures_or_report(tmp_path: Path) -> None:
    frame = _frame(conditions=("raw", "discrete", "chat-template", "persona"))
    frame.loc[frame["model"] == "Qwen/Qwen3-0.6B", "model"] = HOSTILE
    first = frame["study"].iloc[0]
    frame.loc[frame["study"] == first, "study"] = "s$\\frac{$1"
    results = results_from_frame(frame)
    summary = summarize(results, REGISTRY, AnalysisOptions(
        n_boot=100, detail_pairs=1, extra_pairs=_pair(HOSTILE, "Qwen/Qwen3-0.6B-Base")))
    figures = render_figures(summary)
    assert "forest_1" in figures and "leaderboard" in figures
    written = save_figures(figures, tmp_path / "figs", formats=("png", "pdf"))
    assert written
    html = build_report(summary, results, REGISTRY)
    assert "m$\\foo{$x" in html
    # fig_accuracy is left out here: with the hostile name outside the registry it would plot
    # a single dot (issue 22: one-dot figures are not drawn)
    assert {"fig5_persona", "fig_chat_template"} <= set(figures)
    # after drawing, the name is printed as written (not math, "$" kept)
    shown = {t._preprocess_math(t.get_text())  # type: ignore[attr-defined]
             for fig in figures.values() for t in fig.findobj(Text)}
    assert (HOSTILE, False) in shown


def _pair(post: str, base: str) -> tuple:
    from psych201.analysis.registry import ModelPair

    return (ModelPair(post, base, "instruct"),)


# -- rows 12 and 13: figures and report outputs --------------------------------------------------
@pytest.fixture()
def table(tmp_path: Path) -> Path:
    path = tmp_path / "scores.parquet"
    _frame().to_parquet(path)
    return path


def test_figures_default_is_not_the_repository(tmp_path: Path, table: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    docs = Path(__file__).parents[1] / "docs" / "figures"
    before = {p.name: p.stat().st_mtime_ns for p in docs.iterdir()}
    monkeypatch.chdir(tmp_path)
    code, out = _invoke("figures", str(table), "--n-boot", "100", "--formats", "png")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert {p.name: p.stat().st_mtime_ns for p in docs.iterdir()} == before


def test_output_paths_refused_in_one_line(tmp_path: Path, table: Path) -> None:
    existing_dir = tmp_path / "existing"
    existing_dir.mkdir()
    code, out = _invoke("report", str(table), "-o", str(existing_dir), "--n-boot", "100")
    assert code == 2 and "is a directory" in out and "Traceback" not in out
    assert not (tmp_path / "existing.tmp").exists()
    assert list(existing_dir.iterdir()) == []
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep")
    code, out = _invoke("figures", str(table), "-o", str(a_file), "--n-boot", "100")
    assert code == 2 and "is a file" in out and a_file.read_text() == "keep"
    code, out = _invoke("report", str(table), "-o", str(a_file / "r.html"), "--n-boot", "100")
    assert code == 2 and "is a file" in out


# -- rows 14 and 15: the --pair hint and strict JSON ---------------------------------------------
def test_pair_hint_has_the_real_syntax(tmp_path: Path) -> None:
    path = tmp_path / "two.parquet"
    # two models without a registry pair: the note tells how to name one
    frame = _frame(models=("Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-1.7B-Base"))
    frame.to_parquet(path)
    code, out = _invoke("compare", str(path), "--n-boot", "100")
    assert code == 0, out
    assert "--pair POST=BASE" in out and "--pair POST BASE" not in out


def test_compare_json_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "one.parquet"
    _frame(n_studies=1).to_parquet(path)  # one study: no interval over studies
    code, out = _invoke("compare", str(path), "--n-boot", "100", "--format", "json")
    assert code == 0, out

    def refuse(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")

    result = json.loads(out, parse_constant=refuse)
    assert result["leaderboard"]
    code, out = _invoke("compare", str(path), "--n-boot", "100", "--format", "json",
                        "--pair", "Qwen/Qwen3-0.6B=Qwen/Qwen3-0.6B-Base")
    assert code == 0, out
    json.loads(out, parse_constant=refuse)


# -- rows 11 and 11b: an empty cell and an unavailable model never lose the study's report ------


@needs_data
def test_run_notes_empty_and_failed_cells_and_exits_4(tmp_path: Path) -> None:
    from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

    tokenizer = byte_bpe_tokenizer()
    tiny = save_tiny(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    missing = tmp_path / "no-such-model"
    spec = {
        "name": "hard", "out": str(tmp_path / "runs"), "seed": 0,
        "models": [str(missing), str(tiny)],
        # one participant: nobody else's persona to shuffle in, so that cell has no response
        "conditions": ["raw", {"name": "persona-shuffled", "mode": "interview"}],
        "data": [{"name": "shared", "path": str(DATA), "split": "all",
                  "studies": ["guenther2022relational"]}],
        "engine": {"batch_tokens": 4096},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    for attempt in range(2):  # a rerun ends the same way, without scoring again
        code, out = _invoke("run", str(path), "--limit", "1", "--quiet")
        assert code == 4, out
        assert "Traceback" not in out
        assert "[1/4]" in out and "[4/4]" in out and "ETA" in out
        failed = [line for line in out.splitlines() if line.startswith("failed:")]
        assert len(failed) == 2 and all(str(missing) in line for line in failed), out
        html = (tmp_path / "runs" / "report.html").read_text(encoding="utf-8")
        assert "persona-shuffled-mode=interview empty" in html
        assert html.count("could not be loaded") == 1  # one note for the model's two cells
        assert "2 cells failed" in html
        if attempt == 1:
            assert "complete, skipped" in out


def test_eta_counts_only_cells_that_worked() -> None:
    from psych201.study import eta_seconds

    assert eta_seconds(0.0, 0, 5) is None
    assert eta_seconds(60.0, 2, 3) == pytest.approx(90.0)


# -- row 19: the report agrees with itself -------------------------------------------------------
def test_single_study_pair_d_agrees_with_the_detail_table() -> None:
    results = results_from_frame(_frame(n_studies=1))
    summary = summarize(results, REGISTRY, AnalysisOptions(n_boot=100, detail_pairs=1))
    post_training = summary.result("post-training", PostTrainingResult)
    assert post_training is not None
    (row,) = post_training.pairs.to_dict(orient="records")
    detail = post_training.details[0].per_study
    assert row["n_studies"] == 1 and row["d"] != row["d"]  # the paper's rule: undefined
    assert row["d_one_study"] == pytest.approx(float(detail["d_sample"].iloc[0]))
    html = build_report(summary, results, REGISTRY)
    shown = f"{row['d_one_study']:.3f}"
    assert f"<td class=\"\">({shown})</td>" in html and f">{shown}</td>" in html
    assert any("share one study" in note for note in summary.notes)


def test_accuracy_caption_names_what_was_scored() -> None:
    from psych201.report.figures import caption

    raw = summarize(results_from_frame(_frame()), REGISTRY, AnalysisOptions(n_boot=100))
    assert raw.result("accuracy", AccuracyResult) is not None
    assert "Top-1 accuracy on condition raw" in caption("fig_accuracy", raw)
    discrete = summarize(results_from_frame(_frame(conditions=("raw", "discrete"))), REGISTRY,
                         AnalysisOptions(n_boot=100))
    assert "Top-1 accuracy on the discrete variant" in caption("fig_accuracy", discrete)


def test_demo_report_has_the_oracle_column(tmp_path: Path) -> None:
    from psych201.report.demo import demo_summary
    from psych201.simulate.demo import DEMO_DIR
    from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

    tokenizer = byte_bpe_tokenizer()
    tiny = save_tiny(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    run = tmp_path / "demo-run"
    code, out = _invoke("score", "--model", str(tiny), "--data", str(DEMO_DIR), "--out",
                        str(run), "--split", "all", "--limit", "2", "--quiet")
    assert code == 0, out
    report = tmp_path / "demo.html"
    code, out = _invoke("report", str(run), "-o", str(report), "--n-boot", "100")
    assert code == 0, out
    html = report.read_text(encoding="utf-8")
    assert "oracle (generating model)" in html
    for row in demo_summary(run, DEMO_DIR):
        assert row.oracle_nll is not None
        assert f"{row.oracle_nll:.3f}" in html, row.study


# -- numbers a psychologist can read -------------------------------------------------------------
def test_readable_numbers_in_report_and_compare(tmp_path: Path) -> None:
    import math

    from psych201.analysis.readable import PSEUDO_R2_TEXT, READABLE_TEXT, readable_numbers

    frame = _frame(n_studies=5)
    free_text = sorted(frame["study"].unique())[0]
    frame.loc[frame["study"] == free_text, "nll"] *= 40  # a free-text study swamps the mean
    frame.loc[frame["study"] == free_text, "n_tokens"] = 30
    numbers = readable_numbers(frame, condition="raw").set_index("model")
    model = "Qwen/Qwen3-0.6B"
    rows = frame[(frame["model"] == model)]
    study_means = rows.groupby("study")["nll"].mean()
    got = numbers.loc[model]
    assert got["nll_response"] == pytest.approx(study_means.mean())
    assert got["p_response"] == pytest.approx(math.exp(-study_means.mean()))
    sums = rows.groupby("study")[["nll", "n_tokens"]].sum()
    assert got["nll_token"] == pytest.approx((sums["nll"] / sums["n_tokens"]).mean())
    assert got["p_token"] == pytest.approx(math.exp(-got["nll_token"]))
    assert got["dominant"] == free_text
    assert got["nll_response_without"] == pytest.approx(study_means.drop(free_text).mean())

    results = results_from_frame(frame)
    summary = summarize(results, REGISTRY, AnalysisOptions(n_boot=100, detail_pairs=0))
    html = build_report(summary, results, REGISTRY)
    assert 'id="readable"' in html and "P(response), geometric mean" in html
    from psych201.report.html import probability_text

    assert f">{probability_text(got['p_response'])}<" in html and free_text in html
    assert PSEUDO_R2_TEXT in html or summary.result("baselines", PseudoR2Result) is None

    path = tmp_path / "scores.parquet"
    frame.to_parquet(path)
    code, out = _invoke("compare", str(path), "--n-boot", "100", "--format", "json")
    assert code == 0, out
    section = json.loads(out)["sections"]["readable"]
    readable = {r["model"]: r for r in section["tables"]["readable"]}
    assert readable[model]["dominant"] == free_text
    assert readable[model]["p_response"] == pytest.approx(got["p_response"])
    assert section["text"] == READABLE_TEXT
    code, out = _invoke("compare", str(path), "--n-boot", "100")
    assert code == 0 and "Readable numbers" in out and "NLL/token" in out


def test_a_model_is_loaded_once_under_the_spinner_and_fails_its_cells(tmp_path: Path) -> None:
    from contextlib import contextmanager

    from psych201.study import StudyFile, run_study

    study = StudyFile.model_validate({
        "name": "s", "out": str(tmp_path / "runs"), "models": ["m-a", "m-b"],
        "conditions": ["raw", "paper"], "data": [{"name": "d", "path": "demo"}]})
    loaded: list[str] = []
    spinning: list[str] = []

    @contextmanager
    def loading(model: str):  # type: ignore[no-untyped-def]
        spinning.append(model)
        yield

    def load(config):  # type: ignore[no-untyped-def]
        loaded.append(config.model)
        raise RuntimeError(f"CUDA is not available for {config.model}")

    progress: list[str] = []
    outcome = run_study(study, load_setup=load, note=lambda _: None, loading=loading,
                        on_cell=lambda where: progress.append(where.line()))
    assert loaded == spinning == ["m-a", "m-b"]
    assert [o.status for o in outcome.outcomes] == ["failed"] * 4
    assert all("CUDA is not available" in o.message for o in outcome.outcomes)
    assert [p.split("]")[0] for p in progress] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert len(outcome.report_notes()) == 2 and outcome.run_dirs == ()  # one per model
