"""Atomic file writes: the one implementation every layer uses (results, data, report, lab…).

A file is written to a temporary sibling (``NAME.tmp-PID``, so the umask applies and it is on the
same filesystem), flushed to disk and moved over the target with ``os.replace``; then the
directory is synced so the rename survives a power loss. Readers see the old file or the whole
new one, never a part; a crash leaves at most a stray ``*.tmp-*`` that run directories clean up.
It lives below every layer (data and simulate write studies) and imports nothing of psych201.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Marks a temporary file of an atomic write (``NAME.tmp-PID``).
TMP_MARK = ".tmp-"


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a binary handle of a temporary sibling of ``path``, then move it over
    ``path``: ``path`` is either absent/old or whole, never partial."""
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(text.encode("utf-8"), path)


def fsync_dir(directory: Path) -> None:
    # The rename itself must reach the disk too, or a power loss could undo a finished write.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
