"""Analyses of response tables: the paper's statistics, paired effects, baselines, the registry.

Public entry points (everything else is an implementation module):

* :func:`read_results` / :func:`results_from_frame` — response tables in, checked;
* :func:`load_registry` — the model registry (packaged ``models.yaml`` + user files);
* :func:`summarize` — every applicable analysis at once (what ``compare`` and ``report`` show);
* :mod:`~psych201.analysis.paper` — the paper's d, type d, generations, domains, persona, accuracy;
* :mod:`~psych201.analysis.paper_mode` — every figure exactly as the authors' plotting scripts
  compute it (``compare/report/figures --paper``, :mod:`.paper_mode`);
* :mod:`~psych201.analysis.effects` — paired differences, bootstrap intervals, mixed model, sign
  test (:func:`compare_pair` for one pair);
* :mod:`~psych201.analysis.baselines` — random baseline / pseudo-R², population baseline.
"""

from psych201.analysis.aggregate import leaderboard, model_scores, study_table
from psych201.analysis.effects import Effect, PairComparison, compare_pair
from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import ModelInfo, ModelPair, ModelRegistry, load_registry
from psych201.analysis.summary import Summary, summarize
from psych201.analysis.tables import Results, read_results, results_from_frame

__all__ = [
    "AnalysisOptions",
    "Effect",
    "ModelInfo",
    "ModelPair",
    "ModelRegistry",
    "PairComparison",
    "Results",
    "Summary",
    "compare_pair",
    "leaderboard",
    "load_registry",
    "model_scores",
    "read_results",
    "results_from_frame",
    "study_table",
    "summarize",
]
