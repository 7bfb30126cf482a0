"""The error families every layer raises, each with the exit code the CLI maps it to.

This module imports nothing from psych201, so every layer (data … report, cli) may use it without
importing upward. A command turns a :class:`Psych201Error` into one line on stderr and exits with
its ``exit_code``; anything else is an internal error (exit 70, traceback only under ``--debug``).
"""

from __future__ import annotations

#: Exit codes of every psych201 command.
EXIT_OK = 0
EXIT_INVALID_DATA = 1  # the input data breaks the Psych-201 rules (file, line and reason given)
EXIT_USAGE = 2  # bad flags or configuration, refused before anything is loaded or written
EXIT_IO = 3  # the operating system refused: permissions, disk full, read-only, missing file
EXIT_FAILED_SESSIONS = 4  # the run finished but some participants could not be scored
EXIT_INTERNAL = 70  # a bug in psych201 (EX_SOFTWARE): please report it
EXIT_INTERRUPTED = 130  # Ctrl-C; finished work is saved


class Psych201Error(Exception):
    """An expected failure with a message meant for the user (one line, names file/line/reason)."""

    exit_code: int = EXIT_USAGE


class UsageError(Psych201Error, ValueError):
    """A flag, option, configuration file or output location that cannot work."""

    exit_code = EXIT_USAGE


class InvalidDataError(Psych201Error, ValueError):
    """Input data that breaks the rules (names the file, the line and the reason)."""

    exit_code = EXIT_INVALID_DATA


class StorageError(Psych201Error, OSError):
    """The operating system refused a read or write (permissions, disk full, read-only)."""

    exit_code = EXIT_IO


class RunLockedError(UsageError):
    """Another process holds the run directory's lock (the message names its PID)."""


def os_error_line(exc: OSError) -> str:
    """One line naming the path(s) and the operating system's reason, e.g. for exit 3."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason
