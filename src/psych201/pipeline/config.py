"""The validated run configuration: everything ``psych201 score`` is asked to do.

Every option that can be checked without reading data or loading a model is checked when a
:class:`ScoreConfig` is built (the window included), and :func:`validate_run` checks the output
directory and the device; both run before anything loads.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from psych201.bounds import BoundError, check_bound
from psych201.data.records import Session
from psych201.data.split import SPLITS
from psych201.errors import StorageError, UsageError
from psych201.prompts.conditions import CONDITION_NAMES
from psych201.results.shards import Shard
from psych201.scoring.align import ALIGNMENT_MODES
from psych201.scoring.models import DEFAULT_MODEL, DTYPES
from psych201.scoring.scorer import WindowConfig

Split = Literal["test", "train", "all", "seeded"]
OnError = Literal["fail", "skip"]

#: The shortest window (``--max-tokens``) and the room a window keeps beside its overlap for
#: leading special tokens and new targets.
MIN_WINDOW_TOKENS = 8
_WINDOW_SLACK = 4
#: The numeric fields checked against :data:`psych201.bounds.BOUNDS` (same names there).
_BOUNDED_FIELDS = (
    "limit", "seed", "batch_tokens", "max_tokens", "window_overlap", "part_size", "part_chars",
)
_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


class PipelineError(UsageError):
    """A run that cannot start or go on as asked (bad option, unknown study, ...)."""


class SessionScoringError(PipelineError):
    """Scoring one session failed; names its file and line. Finished work is already saved."""

    def __init__(self, session: Session, reason: str) -> None:
        where = session.source or session.study
        super().__init__(
            f"{where}:{session.line}: cannot score participant {session.participant!r} of "
            f"study {session.study!r}: {reason}"
        )
        self.session_key = session.key
        self.reason = reason



@dataclass(frozen=True)
class ScoreConfig:
    """Everything ``psych201 score`` is asked to do."""

    data: Path
    out: Path
    model: str = DEFAULT_MODEL
    model_args: Mapping[str, Any] = field(default_factory=dict)
    split: Split = "test"
    studies: tuple[str, ...] = ()
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    batch_tokens: int = 8192
    condition: str = "raw"
    condition_args: Mapping[str, Any] = field(default_factory=dict)
    alignment: str = "offsets"
    max_tokens: int | None = None
    window_overlap: int | None = None
    shard: Shard | None = None
    #: A part holds at most this many participants and about this many characters, so a crash
    #: loses little; neither changes the numbers.
    part_size: int = 16
    part_chars: int = 300_000
    on_error: OnError = "fail"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise PipelineError(f"--limit must be at least 1, got {self.limit}")
        if self.part_size < 1 or self.part_chars < 1:
            raise PipelineError("part size must be positive")
        if self.batch_tokens < 1:
            raise PipelineError(f"--batch-tokens must be positive, got {self.batch_tokens}")
        if self.split not in SPLITS:
            raise PipelineError(
                f"--split must be test, train or all (or seeded), got {self.split!r}"
            )
        if self.on_error not in ("fail", "skip"):
            raise PipelineError(f"on_error must be fail or skip, got {self.on_error!r}")
        if self.alignment not in ALIGNMENT_MODES:
            raise PipelineError(
                f"--alignment must be one of {', '.join(ALIGNMENT_MODES)}, got {self.alignment!r}"
            )
        if self.dtype not in DTYPES:
            raise PipelineError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.seed < 0:
            raise PipelineError(f"--seed must be 0 or more, got {self.seed}")
        if self.condition not in CONDITION_NAMES:
            raise PipelineError(
                f"--condition must be one of {', '.join(CONDITION_NAMES)}, got {self.condition!r}"
            )
        if not _DEVICE.fullmatch(self.device):
            raise PipelineError(f"--device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        self._check_window()
        self._check_bounds()

    def _check_bounds(self) -> None:
        # The shared ranges of psych201.bounds: a budget of 1e26 tokens or a seed of 1e29 (a
        # study file typo) is refused here, before anything is read or loaded.
        for name in _BOUNDED_FIELDS:
            value = getattr(self, name)
            if value is not None:
                try:
                    check_bound(name, value)
                except BoundError as exc:
                    raise PipelineError(str(exc)) from exc

    def _check_window(self) -> None:
        # The scorer only finds out once the model is loaded; a window must hold the leading
        # special tokens, the overlap and at least two new tokens.
        if self.max_tokens is not None and self.max_tokens < MIN_WINDOW_TOKENS:
            raise PipelineError(
                f"--max-tokens must be at least {MIN_WINDOW_TOKENS}, got {self.max_tokens}"
            )
        if self.window_overlap is not None and self.window_overlap < 0:
            raise PipelineError(f"--window-overlap must be 0 or more, got {self.window_overlap}")
        if (
            self.max_tokens is not None
            and self.window_overlap is not None
            and self.window_overlap > self.max_tokens - _WINDOW_SLACK
        ):
            raise PipelineError(
                f"--window-overlap {self.window_overlap} leaves no room in a window of "
                f"--max-tokens {self.max_tokens} (at most {self.max_tokens - _WINDOW_SLACK})"
            )


def validate_run(config: ScoreConfig) -> None:
    """Refuse, before any data is read or model loaded, what cannot work on this machine.

    Checks the output location (not a file, not under a file, writable) and the device. Raises
    :class:`UsageError` (exit 2) or :class:`StorageError` (exit 3).
    """
    check_output_dir(config.out, flag="--out")
    check_device(config.device)


def check_output_dir(out: Path, *, flag: str = "--out") -> None:
    """``out`` can become a directory we can write in: not a file, not under one, writable."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out}: exists and is not a directory")
    ancestor = out
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {out}: {ancestor} is a file, not a directory")
    # os.access ignores read-only mounts and says yes to root; a real probe does not.
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=".psych201-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StorageError(f"{flag} {out}: cannot write in {ancestor}: {reason}") from exc


def resolve_device(device: str) -> str:
    """``device`` checked without a model (``auto``: the GPU where torch sees one, else cpu)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if not _DEVICE.fullmatch(device):
        raise UsageError(f"--device must be cpu, cuda, cuda:N, mps or auto, got {device!r}")
    check_device(device)
    return device


def check_device(device: str) -> None:
    """A CUDA device needs a CUDA build of torch and a visible GPU (checked without a model)."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: this torch build has no CUDA or sees no GPU "
            f"(torch {torch.__version__}); use --device cpu"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(
            f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )


def window_config(config: ScoreConfig) -> WindowConfig:
    """How ``config`` cuts long sessions (the scorer's ``WindowConfig``)."""
    if config.window_overlap is None:
        return WindowConfig(max_tokens=config.max_tokens)
    return WindowConfig(max_tokens=config.max_tokens, overlap=config.window_overlap)
