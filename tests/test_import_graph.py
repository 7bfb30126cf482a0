"""The import graph of src/psych201, read from the source (AST): no cycle, no import upwards.

Every ``import`` counts: at module level, inside functions (lazy imports) and under
``if TYPE_CHECKING:``; a lazy import hides a cycle from the interpreter, not from a reader.

The layers, lowest first; a module may import from its own layer or a lower one:

0. foundations, imported from anywhere: ``errors``, ``bounds``, ``yaml_files``, ``strict_json``,
   ``atomic``, ``suggest`` (the error model, input bounds, strict readers/writers, atomic file
   writes, "did you mean")
1. ``data`` (reading and building Psych-201 studies) and ``simulate`` (cognitive models that
   *generate* studies; the oracle and cognitive engines score with their exact probabilities)
2. ``prompts`` (what a model is shown)
3. ``scoring`` (engines and the scorer)
4. ``results`` (run directories, manifests, response tables)
5. ``pipeline`` and ``analysis``
6. ``report``, ``lab``, ``study``, ``plan`` and ``plan_cluster`` (the planner reads scoring,
   pipeline and the model registry of analysis, and study runs read it)
7. ``cli``
8. the package's ``__init__`` (the public API: it re-exports from every layer)
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "psych201"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "bounds", "yaml_files", "strict_json", "suggest", "atomic"}),
    frozenset({"data", "simulate"}),
    frozenset({"prompts"}),
    frozenset({"scoring"}),
    frozenset({"results"}),
    frozenset({"pipeline", "analysis"}),
    frozenset({"report", "lab", "study", "plan", "plan_cluster"}),
    frozenset({"cli"}),
    frozenset({""}),  # psych201/__init__.py
)


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``module`` imports anywhere in its file (a name imported
    from a package counts as its submodule where one has that name, else as the package)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, members in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"{module}: its top-level name {top!r} has no layer in LAYERS; add it "
                         "(and to this module's docstring)")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {module: imported(module, path, known) for module, path in found.items()}


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    for module in graph:
        layer(module)


def test_no_module_imports_from_a_higher_layer(graph: dict[str, set[str]]) -> None:
    upward = sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
                    for a, targets in graph.items() for b in targets if layer(b) > layer(a))
    assert not upward, "\n".join(upward)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each holds a cycle)."""
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    edges = [(index[a], index[b]) for a, targets in graph.items() for b in targets]
    rows, cols = zip(*edges, strict=True) if edges else ((), ())
    matrix = csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(matrix, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles among:\n" + "\n".join(", ".join(c) for c in found)


def test_the_checks_see_a_cycle_a_lazy_import_and_an_upward_import(tmp_path: Path) -> None:
    """The reader on planted code: a function-local import and a TYPE_CHECKING import count."""
    root = tmp_path / PACKAGE
    (root / "data").mkdir(parents=True)
    (root / "cli").mkdir()
    (root / "__init__.py").write_text("")
    (root / "data" / "__init__.py").write_text("")
    (root / "cli" / "__init__.py").write_text("")
    (root / "data" / "a.py").write_text("def f():\n    from psych201.cli.b import g\n")
    (root / "cli" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..data import a\n")
    found = {module_name(p, tmp_path): p for p in root.rglob("*.py")}
    planted = {name: imported(name, p, set(found)) for name, p in found.items()}
    assert planted["psych201.data.a"] == {"psych201.cli.b"}
    assert planted["psych201.cli.b"] == {"psych201.data.a"}
    assert cycles(planted) == [["psych201.cli.b", "psych201.data.a"]]
    assert layer("psych201.data.a") < layer("psych201.cli.b")

