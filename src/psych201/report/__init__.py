"""Figures and the self-contained HTML report, drawn from :mod:`psych201.analysis` summaries."""

from psych201.report.figures import render_figures, save_figures
from psych201.report.html import build_report, write_report

__all__ = ["build_report", "render_figures", "save_figures", "write_report"]
