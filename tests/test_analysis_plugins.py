"""Pluggable analyses (issue #12 part 1): one registry list, iterated by every output.

A toy analysis written as one separate module and appended to ``ANALYSES`` shows up in the
summary, the HTML report, the figures and ``compare --json`` with no other edit; an analysis that
does not apply leaves a note; and the report and the JSON list the same sections.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from psych201.analysis import sections
from psych201.analysis.plugin import (
    Analysis,
    AnalysisContext,
    AnalysisOptions,
    AnalysisOrderError,
    Section,
    run_order,
)
from psych201.analysis.registry import load_registry
from psych201.analysis.summary import section_json, summarize
from psych201.analysis.synthetic import STUDIES, SyntheticDesign, synthetic_responses
from psych201.analysis.tables import results_from_frame
from psych201.cli import app
from psych201.report.figures import render_figures
from psych201.report.html import build_report

REGISTRY = load_registry()
runner = CliRunner()

#: One file, as a user would write it: nothing else in psych201 is edited.
TOY = '''
from dataclasses import dataclass

from matplotlib.figure import Figure

from psych201.analysis.an_post_training import PostTrainingResult
from psych201.analysis.plugin import Column, Section, SectionFigure, SectionTable


@dataclass(frozen=True)
class ToyResult:
    seen: list
    n_pairs: int
    extra: object


def draw():
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


class Toy:
    name = "toy"
    columns = ("nll",)
    requires = ("post-training",)

    def skip(self, context):
        return None

    def run(self, context):
        table = (context.main.groupby("model", observed=True)["nll"].max()
                 .rename("max_nll").reset_index())
        return Section(
            anchor="toy", title="Toy: largest NLL", text="The largest NLL of each model.",
            tables=(SectionTable("per_model", table, (Column("model", "model", "text"),
                                                      Column("max_nll", "max NLL", "num4"))),),
            figures=(SectionFigure("fig_toy", "A toy figure.", draw),),
            notes=("toy note: read with care",),
            result=ToyResult(
                seen=list(context.earlier),
                n_pairs=len(context.required("post-training", PostTrainingResult).pairs),
                extra=context.inputs.other.get("toy_extra")))


class Never:
    name = "never"
    columns = ("nll",)
    requires = ()

    def skip(self, context):
        return "never applies: toy skip reason"

    def run(self, context):
        raise AssertionError("run must not be called when skip gives a reason")


class NeedsColumn:  # written before requires existed: it requires nothing
    name = "needs-column"
    columns = ("no_such_column",)

    def skip(self, context):
        return None

    def run(self, context):
        raise AssertionError("run must not be called without the columns it reads")


ANALYSIS = Toy()
'''


def _frame(conditions: tuple[str, ...] = ("raw",), n_studies: int = 4):
    design = SyntheticDesign(studies={s: STUDIES[s] for s in list(STUDIES)[:n_studies]},
                             n_participants=4, n_responses=6, seed=5)
    models = ("Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B-Base",
              "Qwen/Qwen3-1.7B")
    return synthetic_responses([REGISTRY[m] for m in models], design=design,
                               conditions=conditions)


@pytest.fixture()
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The toy module, imported from its own file and appended to the registry list."""
    (tmp_path / "psych201_toy_analysis.py").write_text(TOY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("psych201_toy_analysis")
    monkeypatch.delitem(__import__("sys").modules, "psych201_toy_analysis")
    assert isinstance(module.ANALYSIS, Analysis)  # the protocol is runtime-checkable
    monkeypatch.setattr(sections, "ANALYSES", [*sections.ANALYSES, module.Never(),
                                               module.NeedsColumn(), module.ANALYSIS])
    return module


def test_a_toy_analysis_in_one_file_shows_everywhere(toy: ModuleType, tmp_path: Path) -> None:
    frame = _frame()
    results = results_from_frame(frame)
    summary = summarize(results, REGISTRY, AnalysisOptions(n_boot=100, detail_pairs=0),
                        extras={"toy_extra": 1})
    section = summary.section("toy")
    assert section is not None and summary.sections[-1] is section
    expected = frame.groupby("model")["nll"].max()
    got = section.table("per_model").set_index("model")["max_nll"]
    assert got.to_dict() == pytest.approx(expected.to_dict())
    # it saw the one section it declared, with that section's typed result
    assert section.result.seen == ["post-training"]  # type: ignore[attr-defined]
    assert section.result.n_pairs == 2  # type: ignore[attr-defined]
    assert section.result.extra == 1  # type: ignore[attr-defined]  # what the caller passed
    assert "toy note: read with care" in summary.notes
    assert "never applies: toy skip reason" in summary.notes
    assert any("needs-column skipped" in n and "no_such_column" in n for n in summary.notes)
    assert summary.section("never") is None and summary.section("needs-column") is None

    html = build_report(summary, results, REGISTRY)
    assert '<section class="analysis" id="toy">' in html and "Toy: largest NLL" in html
    for model, value in expected.items():
        assert f">{value:.4f}</td>" in html, model  # the num4 format
    assert 'id="fig-fig_toy"' in html and "A toy figure." in html
    assert "toy note: read with care" in html and "never applies: toy skip reason" in html
    assert "fig_toy" in render_figures(summary)

    path = tmp_path / "scores.parquet"
    frame.to_parquet(path)
    result = runner.invoke(app, ["compare", str(path), "--n-boot", "100", "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    records = payload["sections"]["toy"]["tables"]["per_model"]
    assert {r["model"]: r["max_nll"] for r in records} == pytest.approx(expected.to_dict())
    assert payload["sections"]["toy"]["notes"] == ["toy note: read with care"]
    assert payload["sections"]["toy"]["figures"] == [{"name": "fig_toy",
                                                      "caption": "A toy figure."}]
    result = runner.invoke(app, ["compare", str(path), "--n-boot", "100"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Toy: largest NLL" in result.output and "max NLL" in result.output


def test_without_the_toy_nothing_of_it_shows() -> None:
    """The control of the test above: the toy's output comes from the toy alone."""
    results = results_from_frame(_frame())
    summary = summarize(results, REGISTRY, AnalysisOptions(n_boot=100, detail_pairs=0))
    assert summary.section("toy") is None
    assert "Toy: largest NLL" not in build_report(summary, results, REGISTRY)


def test_report_and_json_list_the_same_sections(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    _frame(conditions=("raw", "discrete", "chat-template", "persona")).to_parquet(path)
    result = runner.invoke(app, ["compare", str(path), "--n-boot", "100", "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(path), "-o", str(out), "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    anchors = re.findall(r'<section class="analysis" id="([^"]+)">', html)
    assert anchors == list(payload["sections"])
    assert {"readable", "post-training", "generations", "scaling", "accuracy", "chat-template",
            "persona", "baselines"} <= set(anchors)
    # version 2: the sections only, no flat copies of their tables beside them
    assert payload["schema_version"] == 2
    assert set(payload) == {"schema_version", "condition", "studies", "options", "leaderboard",
                            "notes", "sections"}


def _sections(summary: object) -> dict[str, object]:
    return {s.anchor: section_json(s) for s in summary.sections}  # type: ignore[attr-defined]


def test_registering_the_analyses_in_reverse_gives_the_same_report(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run order comes from ``requires`` (generations and meta-analysis couple to the
    post-training bootstrap), not from the list: reversed, every section is the same."""
    results = results_from_frame(_frame(conditions=("raw", "persona"), n_studies=5))
    options = AnalysisOptions(n_boot=100, detail_pairs=1)
    forward = summarize(results, REGISTRY, options)
    generations = forward.section("generations")
    assert generations is not None  # the coupled intervals exist, so the order matters
    assert generations.table("generations")["ci_low"].notna().all()
    monkeypatch.setattr(sections, "ANALYSES", list(reversed(sections.ANALYSES)))
    backward = summarize(results, REGISTRY, options)
    assert _sections(backward) == _sections(forward)
    assert [s.anchor for s in backward.sections] == [s.anchor for s in forward.sections][::-1]
    assert sorted(backward.notes) == sorted(forward.notes)


class _Needs:
    """An analysis that only declares what it needs."""

    columns = ("nll",)

    def __init__(self, name: str, *requires: str) -> None:
        self.name, self.requires = name, requires

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        return Section(anchor=self.name, title=self.name, text="", result=dict(context.earlier))


def test_the_run_order_follows_the_declared_requirements() -> None:
    a, b, c = _Needs("a", "c"), _Needs("b"), _Needs("c", "b")
    assert [x.name for x in run_order([a, b, c])] == ["b", "c", "a"]
    assert [x.name for x in run_order([b, c, a])] == ["b", "c", "a"]
    assert isinstance(a, Analysis)


def test_a_cycle_or_a_missing_requirement_names_the_analyses() -> None:
    with pytest.raises(AnalysisOrderError, match=r"cycle: .*'first'.*'second'|"
                                                 r"cycle: .*'second'.*'first'"):
        run_order([_Needs("first", "second"), _Needs("second", "first"), _Needs("free")])
    with pytest.raises(AnalysisOrderError,
                       match=r"analysis 'lonely' requires 'absent', which no registered"):
        run_order([_Needs("lonely", "absent")])


def test_an_analysis_reads_only_what_it_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """An undeclared result is a KeyError, not a silent dependency on the list's order."""

    class Sneaky(_Needs):
        def run(self, context: AnalysisContext) -> Section | None:
            context.required("post-training", object)
            return None

    monkeypatch.setattr(sections, "ANALYSES", [*sections.ANALYSES, Sneaky("sneaky")])
    with pytest.raises(KeyError, match="'post-training' read without declaring it"):
        summarize(results_from_frame(_frame()), REGISTRY, AnalysisOptions(n_boot=50,
                                                                         detail_pairs=0))


def test_each_analysis_declares_its_result_type_and_summarize_holds_it_to_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(hasattr(a, "result_type") for a in sections.ANALYSES)

    class Liar(_Needs):
        result_type = int  # but its section holds a dict

    monkeypatch.setattr(sections, "ANALYSES", [*sections.ANALYSES, Liar("liar")])
    with pytest.raises(TypeError, match="analysis 'liar' declares results of type int, its "
                                        "section holds a dict"):
        summarize(results_from_frame(_frame()), REGISTRY, AnalysisOptions(n_boot=50,
                                                                         detail_pairs=0))
