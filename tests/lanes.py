"""Which tests are heavy: decided from what they use, so nobody has to remember to mark them.

A test is *heavy* when it, one of its fixtures (transitively, as pytest resolves them) or a helper
function of its module that it calls

- builds a torch model, trains, loads a packaged model or starts a subprocess (:data:`HEAVY`);
- draws the full report or its figures (:data:`RENDERS`: matplotlib and the HTML page cost
  seconds per call, and the report is drawn whole);
- reads the real shared studies: marked ``needs_data`` (itself or its module), uses the
  ``shared_data`` fixture, or calls ``require_data()`` (:data:`READS_DATA`); or
- is itself a seeded simulation study: it draws datasets from a seeded generator in a loop over a
  replicate count (``for _ in range(n_sims)``, or a literal of at least
  :data:`SIMULATION_REPLICATES`) to measure a coverage, size or power (:func:`simulates`).

Heavy tests get the ``heavy`` marker; every other test that is not ``slow`` gets ``fast``, so
``pytest -m fast`` is the quick lane and ``pytest -m "not slow"`` the middle one (a simulation
study over ~20 s is marked ``slow`` by hand, as the README says). Reading source text is
deliberately coarse: a false "heavy" costs the fast lane one test, a false "fast" costs it
seconds, and the fast lane's time is measured where it is documented (README, Development).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import pytest

#: What makes code heavy: torch and the tiny models built with it, the packaged models, training,
#: subprocesses and the CLI commands that load a model.
HEAVY = re.compile(
    r"\btorch\b|tiny_models|tiny_llama|save_tiny|tiny_dir|byte_bpe|load_model|packaged|"
    r"gemma-3-270m|smollm2|\bsubprocess\b|Popen|sys\.executable|train_adapter|psych201\.lab|"
    r"\"posttrain\"|'posttrain'|\"demo\"|'demo'|run_study|ensure_adapter"
)


#: What makes code heavy besides models: drawing the report or its figures, in-process or through
#: the CLI's ``report`` and ``figures`` commands.
RENDERS = re.compile(
    r"\brender_figures\b|\bsave_figures\b|\bbuild_report\b|\bwrite_report\b|report_from_runs|"
    r"\"report\"|'report'|\"figures\"|'figures'"
)

#: Running a whole simulation or analysis: the seeded generators of participants, players and
#: oracles (``psych201.simulate``, and the CLI's ``simulate`` command) and every analysis of the
#: report at once (``summarize``, what ``compare`` and ``report`` run).
SIMULATES_OR_SUMMARIZES = re.compile(
    r"psych201\.simulate\b|\bsummarize\(|\"simulate\"|'simulate'"
)

#: The same, for names a test module imports: objects defined in these modules.
HEAVY_LIBRARY = ("psych201.simulate", "psych201.analysis.summary")

#: Reading the real shared studies (see paths.py): the guard's call, the session fixture and the
#: folder itself (``DATA``; a module-level constant built from it counts as it, see
#: :func:`heavy_helpers`).
READS_DATA = re.compile(r"\brequire_data\(|\bshared_data\b|\bDATA\b")

#: Every source-text rule; a test, fixture or helper that matches one is heavy.
HEAVY_RULES = (HEAVY, RENDERS, SIMULATES_OR_SUMMARIZES, READS_DATA)

#: The smallest literal replicate count that makes a seeded loop a simulation study.
SIMULATION_REPLICATES = 50

#: Seeded random generators (numpy's, the standard library's).
_SEEDED = re.compile(r"default_rng\(|np\.random\.seed\(|random\.Random\(|RandomState\(")


#: Fixtures every test uses that only look at torch if a test already imported it.
NOT_HEAVY_FIXTURES = frozenset({"_torch_threads_restored"})


def _source(obj: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return ""


def _names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


@cache
def heavy_helpers(module: ModuleType) -> frozenset[str]:
    """The module-level functions and classes of ``module`` that are heavy, to a fixed point.

    Heavy means one of :data:`HEAVY_RULES`, or a name imported from :data:`HEAVY_LIBRARY`;
    module-level constants count as helpers (``STUDY = DATA / "x"``). A simulation study is
    decided from the test's own body (:func:`simulates`), not from its helpers."""
    sources = {
        name: _source(obj)
        for name, obj in vars(module).items()
        if (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    sources.update(_constants(module))
    heavy = {name for name, text in sources.items() if _heavy_text(text)}
    heavy |= {name for name, obj in vars(module).items() if _from_heavy_library(obj)}
    changed = True
    while changed:
        changed = False
        for name, text in sources.items():
            if name not in heavy and _names(text) & heavy:
                heavy.add(name)
                changed = True
    return frozenset(heavy)


def _constants(module: ModuleType) -> dict[str, str]:
    """The module-level assignments of ``module``, name to the source of the value (a constant
    such as ``STUDY = DATA / "x"`` makes the code that uses it read the data)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        constants[name.id] = ast.unparse(node.value)
    return constants


def _heavy_text(text: str) -> bool:
    return any(rule.search(text) for rule in HEAVY_RULES)


def _from_heavy_library(obj: object) -> bool:
    home = obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)
    return isinstance(home, str) and any(
        home == library or home.startswith(library + ".") for library in HEAVY_LIBRARY)


def _replicate_count(node: ast.For) -> bool:
    """Whether ``node`` loops ``range(count)`` over a name or a literal count of replicates."""
    call = node.iter
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "range" and len(call.args) == 1):
        return False
    (count,) = call.args
    if isinstance(count, ast.Constant):
        return isinstance(count.value, int) and count.value >= SIMULATION_REPLICATES
    return isinstance(count, ast.Name | ast.Subscript | ast.Attribute)


def simulates(source: str) -> bool:
    """Whether ``source`` (a test's own body) is a seeded simulation study: a seeded generator
    and a loop over a replicate count."""
    if not _SEEDED.search(source):
        return False
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.For) and _replicate_count(node) for node in ast.walk(tree))


def _is_heavy(obj: Callable[..., Any], module: ModuleType | None) -> bool:
    text = _source(obj)
    if _heavy_text(text):
        return True
    return module is not None and bool(_names(text) & heavy_helpers(module))


def is_heavy(item: pytest.Item) -> bool:
    """Whether ``item`` (a collected test) is heavy: itself, a fixture it uses, or a helper."""
    function = getattr(item, "function", None)
    module = getattr(item, "module", None)
    if function is None:
        return False
    if item.get_closest_marker("needs_data") is not None or simulates(_source(function)):
        return True
    if _is_heavy(function, module):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for name, definitions in (info.name2fixturedefs.items() if info else ()):
        if name in NOT_HEAVY_FIXTURES:
            continue
        for definition in definitions:
            func = getattr(definition, "func", None)
            if func is None:
                continue
            home = inspect.getmodule(func)
            if _is_heavy(func, home):
                return True
    return False


def mark_lanes(items: list[pytest.Item]) -> None:
    """Add ``heavy`` or ``fast`` to every item that is not already ``slow``."""
    for item in items:
        if item.get_closest_marker("slow") is not None:
            continue
        item.add_marker(pytest.mark.heavy if is_heavy(item) else pytest.mark.fast)
