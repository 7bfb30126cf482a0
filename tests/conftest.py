"""Shared test set-up: the real-data guard (see paths.py) and the tiny model tests score with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lanes import mark_lanes
from paths import DATA, require_data


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden", action="store_true",
        help="rewrite tests/golden/ from this tree's output (test_golden_compare.py), on purpose",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_data(path=DATA): reads the shared Psych-201 studies; skipped where they are "
        "missing, failed instead when PSYCH201_REQUIRE_DATA=1",
    )
    config.addinivalue_line(
        "markers", "heavy: builds a torch model, trains or starts a subprocess (set by lanes.py)"
    )
    config.addinivalue_line(
        "markers", "fast: neither slow nor heavy; `pytest -m fast` is the quick lane (lanes.py)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_lanes(items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture runs, so a module-scoped fixture never reads a missing folder first.
    for marker in item.iter_markers("needs_data"):
        require_data(Path(marker.args[0]) if marker.args else DATA)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared studies' folder (skips, or fails under PSYCH201_REQUIRE_DATA, where missing)."""
    return require_data()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random tiny Llama with the byte-level BPE tokenizer, saved as a local HF folder.

    Session-scoped and read-only: a test that changes model files copies the folder first.
    """
    from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

    tokenizer = byte_bpe_tokenizer()
    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    return save_tiny(tiny_llama(tokenizer), tokenizer, folder)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models are all OpenMP barriers: on a busy 2-core machine one thread is 3-10x faster.
    Use as ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """A command run in-process (``posttrain --threads N``, the every-command fuzz) sets torch's
    thread count for the whole process; later tests compare bytes with subprocesses that use the
    default, and float sums differ with the thread count. Put it back after every test."""
    import sys

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
