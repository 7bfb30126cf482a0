"""Figures: drawn from the analyses, written as PNG + PDF, reproducible, docs/figures current."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import load_registry
from psych201.analysis.summary import Summary, summarize
from psych201.analysis.synthetic import STUDIES, SyntheticDesign, synthetic_responses
from psych201.analysis.tables import results_from_frame
from psych201.cli import app
from psych201.report.figures import render_figures, save_figures

REGISTRY = load_registry()
DOCS = Path(__file__).parents[1] / "docs" / "figures"
MODELS = ("Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-1.7B",
          "Qwen/Qwen3-VL-2B-Instruct", "allenai/Olmo-3-1025-7B", "allenai/Olmo-3-7B-Instruct",
          "Qwen/Qwen2-0.5B", "Qwen/Qwen2-0.5B-Instruct")


def _summary(models: tuple[str, ...], conditions: tuple[str, ...]) -> Summary:
    design = SyntheticDesign(studies={s: STUDIES[s] for s in list(STUDIES)[:8]},
                             n_participants=4, n_responses=8, seed=2)
    frame = synthetic_responses([REGISTRY[m] for m in models], design=design,
                                conditions=conditions)
    results = results_from_frame(frame)
    return summarize(results, REGISTRY, AnalysisOptions(n_boot=200, detail_pairs=1))


@pytest.fixture(scope="module")
def figures() -> dict:
    summary = _summary(MODELS, ("raw", "discrete", "chat-template", "persona",
                                         "persona-shuffled"))
    return render_figures(summary)


def _labels(ax: object) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]  # type: ignore[attr-defined]


def test_every_figure_is_drawn_from_its_analysis(figures: dict) -> None:
    assert set(figures) == {"leaderboard", "fig2_size", "fig3a_generations", "fig4_domains",
                            "fig5_persona", "fig_accuracy", "fig_chat_template", "forest_1",
                            # the per-response diagnostics of the pair shown in full
                            "fig_nll_entropy_1", "fig_participant_diffs_1"}
    size = [ax for ax in figures["fig2_size"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in size] == ["Qwen3", "OLMo 3", "Qwen2"]  # paper panels first
    assert _labels(size[0]) == ["Base", "Reasoning", "Vision (VL)"]
    assert size[0].get_xscale() == "log"
    heat = figures["fig4_domains"].axes[0]
    assert heat.get_yticklabels()[-1].get_text() == "Average"
    forest = figures["forest_1"].axes[0]
    ticks = [t.get_text() for t in forest.get_yticklabels()]
    assert ticks[-1] == "All studies" and len(ticks) == 9  # 8 studies + the overall diamond
    persona = [ax.get_title() for ax in figures["fig5_persona"].axes]
    assert persona == ["Base models", "Post-trained models"]
    generations = figures["fig3a_generations"].axes
    assert _labels(generations[0]) == ["Qwen2", "Qwen3"]
    accuracy = [ax for ax in figures["fig_accuracy"].axes if ax.get_visible()]
    assert accuracy[0].get_ylabel() == "Accuracy (↑)"


def test_figures_are_written_as_png_and_pdf_reproducibly(tmp_path: Path) -> None:
    """Drawing and saving again from the same data gives the same bytes (no timestamps)."""
    summary = _summary(MODELS[:4], ("raw",))
    written = []
    for run in ("a", "b"):
        figures = render_figures(summary)
        written.append(save_figures({k: figures[k] for k in ("forest_1", "fig2_size")},
                                    tmp_path / run))
    first, second = written
    assert sorted(p.name for p in first) == ["fig2_size.pdf", "fig2_size.png", "forest_1.pdf",
                                             "forest_1.png"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.read_bytes()[:4] in (b"%PDF", b"\x89PNG")


def test_figures_without_data_are_left_out() -> None:
    summary = _summary(("Qwen/Qwen3-0.6B-Base", "allenai/Olmo-3-1025-7B"), ("raw",))
    figures = render_figures(summary)
    assert "fig4_domains" not in figures and "forest_1" not in figures
    assert "fig5_persona" not in figures and "fig_chat_template" not in figures
    assert any("no base/post-trained pair" in note for note in summary.notes)


@pytest.mark.slow  # renders every docs figure: 30-90 s
def test_docs_figures_are_regenerated_by_the_documented_command(tmp_path: Path) -> None:
    """`psych201 figures --synthetic --formats png -o docs/figures` reproduces docs/figures."""
    out = tmp_path / "figures"
    result = CliRunner().invoke(app, ["figures", "--synthetic", "--formats", "png", "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in out.glob("*.png"))
    shipped = sorted(p.name for p in DOCS.glob("*.png"))
    assert made == shipped, "docs/figures is stale: run psych201 figures --synthetic " \
                            "--formats png -o docs/figures"
    for name in made:
        new, old = imread(out / name), imread(DOCS / name)
        assert new.shape == old.shape, name
        # identical on one machine; a tolerance for font rasterisation elsewhere
        assert np.abs(new - old).mean() < 0.01, f"{name} differs from docs/figures"
