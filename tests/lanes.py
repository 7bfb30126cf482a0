"""Which tests are heavy: decided from what they use, so nobody has to remember to mark them.

A test is *heavy* when it, one of its fixtures (transitively, as pytest resolves them) or a helper
function of its module that it calls builds a torch model, trains, loads a packaged model or starts
a subprocess. Heavy tests get the ``heavy`` marker; every other test that is not ``slow`` gets
``fast``, so ``pytest -m fast`` is the quick lane and ``pytest -m "not slow"`` the middle one.
Reading source text is deliberately coarse: a false "heavy" costs the fast lane one test, a false
"fast" costs it seconds, and the fast lane's time is checked where it is documented (README).
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
    """The module-level functions and classes of ``module`` that are heavy, to a fixed point."""
    sources = {
        name: _source(obj)
        for name, obj in vars(module).items()
        if (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    heavy = {name for name, text in sources.items() if HEAVY.search(text)}
    changed = True
    while changed:
        changed = False
        for name, text in sources.items():
            if name not in heavy and _names(text) & heavy:
                heavy.add(name)
                changed = True
    return frozenset(heavy)


def _is_heavy(obj: Callable[..., Any], module: ModuleType | None) -> bool:
    text = _source(obj)
    if HEAVY.search(text):
        return True
    return module is not None and bool(_names(text) & heavy_helpers(module))


def is_heavy(item: pytest.Item) -> bool:
    """Whether ``item`` (a collected test) is heavy: itself, a fixture it uses, or a helper."""
    function = getattr(item, "function", None)
    module = getattr(item, "module", None)
    if function is None:
        return False
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
