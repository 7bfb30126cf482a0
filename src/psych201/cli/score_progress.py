"""What the score command draws while it runs: a progress bar of participants (a line of counts
when not on a terminal) and a spinner while the model loads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from psych201.pipeline import ScoreConfig, ScoringSetup, SetupLoader


class _ParticipantsColumn(ProgressColumn):
    """``12/40 participants · 1.35/s`` (the bar itself advances by characters)."""

    def render(self, task: Task) -> Text:
        done = int(task.fields.get("participants", 0))
        total = int(task.fields.get("total_participants", 0))
        elapsed = task.elapsed or 0.0
        rate = f"{done / elapsed:.2f}/s" if elapsed > 0 and done else "-/s"
        return Text(f"{done}/{total} participants · {rate}", style="progress.data.speed")


class RichProgress:
    """A :class:`psych201.pipeline.ProgressSink` drawn with rich.

    The bar advances by characters, not participants: sessions differ in length by 100x
    (dezfouli2019), so a character-weighted ETA is far closer to the truth.
    """

    #: Seconds between two progress lines when the console is not a terminal.
    PLAIN_EVERY_S = 10.0

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None
        self._plain: _PlainCounts | None = None

    def start(self, *, sessions: int, chars: int, already_done: int) -> None:
        if not self.enabled:
            return
        if not self.console.is_terminal:  # a log file or a pipe: lines, not a redrawn bar
            self._plain = _PlainCounts(sessions, max(chars, 1), time.monotonic())
            return
        self._progress = Progress(
            TextColumn("[bold]scoring"),
            BarColumn(),
            _ParticipantsColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "scoring", total=max(chars, 1), participants=0, total_participants=sessions
        )

    def advance(self, *, sessions: int, chars: int) -> None:
        if self._plain is not None:
            self._advance_plain(sessions, chars)
        if self._progress is None:
            return
        done = int(self._progress.tasks[0].fields["participants"]) + sessions
        self._progress.update(self._task, advance=chars, participants=done)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[dim]{message}[/dim]")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._plain = None

    def _advance_plain(self, sessions: int, chars: int) -> None:
        plain = self._plain
        assert plain is not None
        plain.sessions_done += sessions
        plain.chars_done += chars
        now = time.monotonic()
        finished = plain.sessions_done >= plain.sessions
        if not finished and now - plain.printed < self.PLAIN_EVERY_S:
            return
        plain.printed = now
        elapsed = now - plain.started
        share = plain.chars_done / plain.chars
        left = elapsed * (1 - share) / share if share > 0 else float("nan")
        eta = f", about {left / 60:.1f} min left" if not finished and left == left else ""
        self.console.print(
            f"scoring: {plain.sessions_done}/{plain.sessions} participants "
            f"({share:.0%} of the text) in {elapsed:.0f} s{eta}", highlight=False)


@dataclass
class _PlainCounts:
    """What plain (non-terminal) progress lines report."""

    sessions: int
    chars: int
    started: float
    sessions_done: int = 0
    chars_done: int = 0
    printed: float = 0.0


def with_spinner(
    config: ScoreConfig, loader: SetupLoader | None, console: Console, *, enabled: bool
) -> SetupLoader:
    """``loader`` (default: the transformers engine) drawn as a spinner while it runs: loading
    a model can take a minute without any other sign of life."""
    from psych201 import pipeline
    from psych201.pipeline import DefaultEngineLoader

    def load() -> ScoringSetup:
        # Looked up when called, so that a test can stand in for the default engine.
        run = loader if loader is not None else (lambda: pipeline.load_hf_setup(config))
        if not enabled:
            return run()
        with console.status(f"loading {config.model} …", spinner="dots"):
            return run()

    return load if loader is not None else DefaultEngineLoader(load)
