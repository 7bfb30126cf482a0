"""Study → research domain, from the paper's ``categories.csv`` (shipped with the package).

The file is the authors' one-hot table (``experiment`` = study folder, ``dataset``, then one 0/1
column per category; 157 studies, 11 categories). Fig. 4 of the paper drops four categories and
shows the other seven; :data:`PAPER_DOMAINS` lists those, in the order of the paper's text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from psych201.errors import UsageError

CATEGORIES_FILE = Path(__file__).with_name("categories.csv")

#: The seven domains of the paper's Fig. 4 (Intertemporal Choice, Moral Judgment, Psychophysics
#: and Cognitive Control are dropped there).
PAPER_DOMAINS: tuple[str, ...] = (
    "Economic Games",
    "Categorization",
    "Reinforcement Learning",
    "Risky Choice",
    "Memory",
    "Reasoning",
    "Psycholinguistics",
)


class CategoriesError(UsageError):
    """A categories file that does not have the expected shape."""


def load_categories(path: str | Path | None = None) -> pd.DataFrame:
    """Boolean study × category table, indexed by study (folder name).

    Raises :class:`CategoriesError` naming the file and line of a bad row.
    """
    path = Path(path) if path is not None else CATEGORIES_FILE
    try:
        table = pd.read_csv(path, dtype={"experiment": str, "dataset": str})
    except (OSError, pd.errors.ParserError) as exc:
        raise CategoriesError(f"{path}: cannot read categories ({exc})") from exc
    if "experiment" not in table.columns:
        raise CategoriesError(f"{path}: no 'experiment' column (the study folder names)")
    categories = [c for c in table.columns if c not in ("experiment", "dataset")]
    if not categories:
        raise CategoriesError(f"{path}: no category columns")
    values = table[categories]
    bad = ~values.isin([0, 1]).all(axis=1)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        study = table.loc[row, "experiment"]
        raise CategoriesError(f"{path}:{row + 2}: category values must be 0 or 1 (study {study!r})")
    duplicated = table["experiment"].duplicated()
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        study = table.loc[row, "experiment"]
        raise CategoriesError(f"{path}:{row + 2}: study {study!r} listed twice")
    return values.astype(bool).set_axis(table["experiment"].rename("study"), axis=0)


def psych101_studies(path: str | Path | None = None) -> frozenset[str]:
    """Studies the categories table marks as Psych-101 (``dataset`` column) — Centaur's training."""
    table = pd.read_csv(Path(path) if path is not None else CATEGORIES_FILE,
                        dtype={"experiment": str, "dataset": str})
    if "dataset" not in table.columns:
        return frozenset()
    return frozenset(table.loc[table["dataset"] == "Psych-101", "experiment"])
